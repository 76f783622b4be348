#include "common/experiment_spec.h"

#include <functional>
#include <limits>
#include <ostream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

TEST(ResolveSpecTest, DefaultsAreTheReferenceExperiment) {
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(ExperimentSpec{});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model, "simple_cnn");
  EXPECT_EQ(spec->dataset, "cifar10");
  EXPECT_EQ(spec->epochs, 20);
  EXPECT_EQ(spec->batch_size, 128);
  EXPECT_DOUBLE_EQ(spec->learning_rate, 0.001);
  EXPECT_DOUBLE_EQ(spec->momentum, 0.9);
  EXPECT_DOUBLE_EQ(spec->weight_decay, 0.0);
  EXPECT_EQ(spec->lr_step_size, 0);
  EXPECT_EQ(spec->seed, 42u);
  EXPECT_EQ(spec->init, "pytorch_default");
  EXPECT_EQ(spec->precision, "fp32");
  EXPECT_EQ(spec->augment, true);
  EXPECT_EQ(spec->batch_norm, false);
  EXPECT_EQ(spec->skip_connections, false);
}

TEST(ResolveSpecTest, ModelAndDatasetDependentDefaults) {
  ExperimentSpec spec;
  spec.model = "resnet";
  spec.dataset = "fashion_mnist";
  absl::StatusOr<ExperimentSpec> resnet = ResolveSpec(spec);
  ASSERT_TRUE(resnet.ok()) << resnet.status();
  EXPECT_EQ(resnet->batch_norm, true);
  EXPECT_EQ(resnet->skip_connections, true);
  EXPECT_EQ(resnet->augment, false);

  spec.model = "mlp";
  EXPECT_EQ(ResolveSpec(spec)->batch_norm, true);
  EXPECT_FALSE(ResolveSpec(spec)->depth.has_value());
  spec.model = "deep_cnn";
  EXPECT_EQ(ResolveSpec(spec)->batch_norm, false);

  // He et al.'s CIFAR ResNets: 20 layers, option A shortcuts, BatchNorm and skips.
  spec.model = "cifar_resnet";
  absl::StatusOr<ExperimentSpec> cifar = ResolveSpec(spec);
  ASSERT_TRUE(cifar.ok()) << cifar.status();
  EXPECT_EQ(cifar->depth, 20);
  EXPECT_EQ(cifar->shortcut, "zero_pad");
  EXPECT_EQ(cifar->batch_norm, true);
  EXPECT_EQ(cifar->skip_connections, true);
  spec.depth = 110;
  spec.shortcut = "projection";
  spec.skip_connections = false;
  cifar = ResolveSpec(spec);
  ASSERT_TRUE(cifar.ok()) << cifar.status();
  EXPECT_EQ(cifar->depth, 110);
  EXPECT_EQ(cifar->shortcut, "projection");
  EXPECT_EQ(cifar->skip_connections, false);
}

TEST(ResolveSpecTest, ExplicitValuesWin) {
  ExperimentSpec spec;
  spec.model = "resnet";
  spec.batch_norm = false;
  spec.skip_connections = false;
  spec.augment = false;
  absl::StatusOr<ExperimentSpec> resolved = ResolveSpec(spec);
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(resolved->batch_norm, false);
  EXPECT_EQ(resolved->skip_connections, false);
  EXPECT_EQ(resolved->augment, false);
}

struct InvalidCase {
  std::string label;
  std::function<void(ExperimentSpec&)> mutate;
  std::string message;
};
// Names the case in test listings and ctest's test names, which would otherwise show its
// bytes (pointers among them, different in every build).
void PrintTo(const InvalidCase& c, std::ostream* os) { *os << c.label; }

class InvalidSpecTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidSpecTest, IsRejectedWithMessageNamingFieldAndAllowedValues) {
  ExperimentSpec spec;
  GetParam().mutate(spec);
  absl::StatusOr<ExperimentSpec> resolved = ResolveSpec(spec);
  ASSERT_FALSE(resolved.ok());
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(resolved.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Table, InvalidSpecTest,
    ::testing::Values(
        InvalidCase{"model", [](ExperimentSpec& s) { s.model = "vgg"; },
                    "spec.model: unknown value \"vgg\"; valid values: simple_cnn, deep_cnn, "
                    "resnet, cifar_resnet, mlp"},
        InvalidCase{"dataset", [](ExperimentSpec& s) { s.dataset = "imagenet"; },
                    "spec.dataset: unknown value \"imagenet\"; valid values: cifar10, "
                    "fashion_mnist, mnist, synthetic"},
        InvalidCase{"init", [](ExperimentSpec& s) { s.init = "xavier"; },
                    "valid values: pytorch_default, kaiming_normal"},
        InvalidCase{"precision", [](ExperimentSpec& s) { s.precision = "fp16"; },
                    "spec.precision: unknown value \"fp16\"; valid values: fp32, bf16"},
        InvalidCase{"epochs", [](ExperimentSpec& s) { s.epochs = 0; },
                    "spec.epochs: 0 is out of range [1, 1000]"},
        InvalidCase{"batch", [](ExperimentSpec& s) { s.batch_size = 5000; },
                    "spec.batch_size: 5000 is out of range [1, 4096]"},
        InvalidCase{"lr0", [](ExperimentSpec& s) { s.learning_rate = 0; },
                    "spec.learning_rate: 0 is out of range (0, 10]"},
        InvalidCase{
            "lrnan",
            [](ExperimentSpec& s) { s.learning_rate = std::numeric_limits<double>::quiet_NaN(); },
            "spec.learning_rate: nan is out of range (0, 10]"},
        InvalidCase{"momentum", [](ExperimentSpec& s) { s.momentum = 1; },
                    "spec.momentum: 1 is out of range [0, 1)"},
        InvalidCase{"wd", [](ExperimentSpec& s) { s.weight_decay = -0.1; },
                    "spec.weight_decay: -0.1 is out of range [0, 1]"},
        InvalidCase{"step", [](ExperimentSpec& s) { s.lr_step_size = -1; },
                    "spec.lr_step_size: -1 is out of range [0, 1000]"},
        InvalidCase{"gamma", [](ExperimentSpec& s) { s.lr_gamma = 0; },
                    "spec.lr_gamma: 0 is out of range (0, 1]"},
        InvalidCase{"milestone_unit", [](ExperimentSpec& s) { s.lr_milestone_unit = "steps"; },
                    "spec.lr_milestone_unit: unknown value \"steps\"; valid values: epochs, "
                    "iterations"},
        InvalidCase{"milestone_past_end",
                    [](ExperimentSpec& s) {
                      s.lr_milestones = {5, 21};
                    },
                    "spec.lr_milestones: 21 is out of range [1, 20]: the run has 20 epochs "
                    "(lr_milestone_unit \"epochs\")"},
        InvalidCase{"milestone_iterations",
                    [](ExperimentSpec& s) {
                      s.epochs = 2;
                      s.lr_milestone_unit = "iterations";
                      s.lr_milestones = {783};
                    },
                    "spec.lr_milestones: 783 is out of range [1, 782]: the run has 782 "
                    "iterations"},
        InvalidCase{"milestones_order",
                    [](ExperimentSpec& s) {
                      s.lr_milestones = {5, 5};
                    },
                    "spec.lr_milestones: 5 follows 5; milestones must be strictly increasing"},
        InvalidCase{"milestones_and_step",
                    [](ExperimentSpec& s) {
                      s.lr_milestones = {5};
                      s.lr_step_size = 2;
                    },
                    "spec.lr_milestones: not allowed with lr_step_size"},
        InvalidCase{"warmup", [](ExperimentSpec& s) { s.warmup_iterations = -1; },
                    "spec.warmup_iterations: -1 is out of range [0, 10000000]"},
        InvalidCase{"warmup_rate", [](ExperimentSpec& s) { s.warmup_learning_rate = 0; },
                    "spec.warmup_learning_rate: 0 is out of range (0, 10]"},
        InvalidCase{"train", [](ExperimentSpec& s) { s.max_train_samples = -5; },
                    "spec.max_train_samples: -5 is out of range [0, 100000000]"},
        InvalidCase{"test", [](ExperimentSpec& s) { s.max_test_samples = -1; },
                    "spec.max_test_samples: -1 is out of range"},
        InvalidCase{"every", [](ExperimentSpec& s) { s.gradient_every_n_steps = -1; },
                    "spec.gradient_every_n_steps: -1 is out of range [0, 1000000]"},
        InvalidCase{"threads", [](ExperimentSpec& s) { s.threads = 5000; },
                    "spec.threads: 5000 is out of range [0, 1024]"},
        InvalidCase{"world_size", [](ExperimentSpec& s) { s.world_size = 0; },
                    "spec.world_size: 0 is out of range [1, 64]"},
        InvalidCase{"skip", [](ExperimentSpec& s) { s.skip_connections = true; },
                    "spec.skip_connections: true is not allowed for model \"simple_cnn\""},
        InvalidCase{"depth_not_6n2",
                    [](ExperimentSpec& s) {
                      s.model = "cifar_resnet";
                      s.depth = 21;
                    },
                    "spec.depth: 21 is not 6n+2 for n blocks per stage in [8, 1202] (20, 32, 44, "
                    "56, 110, ...)"},
        InvalidCase{"depth_too_deep",
                    [](ExperimentSpec& s) {
                      s.model = "cifar_resnet";
                      s.depth = 1208;
                    },
                    "spec.depth: 1208 is not 6n+2 for n blocks per stage in [8, 1202]"},
        InvalidCase{"depth_elsewhere", [](ExperimentSpec& s) { s.depth = 20; },
                    "spec.depth: not allowed for model \"simple_cnn\"; only cifar_resnet has a "
                    "depth and a shortcut choice"},
        InvalidCase{"shortcut",
                    [](ExperimentSpec& s) {
                      s.model = "cifar_resnet";
                      s.shortcut = "option_c";
                    },
                    "spec.shortcut: unknown value \"option_c\"; valid values: zero_pad, "
                    "projection"},
        InvalidCase{"name", [](ExperimentSpec& s) { s.name = std::string(201, 'x'); },
                    "spec.name: 201 characters is longer than the limit of 200"},
        InvalidCase{"label", [](ExperimentSpec& s) { s.labels[""] = "x"; },
                    "spec.labels: key \"\" must be 1 to 200 characters"},
        InvalidCase{"uploaded_empty", [](ExperimentSpec& s) { s.model = "uploaded:"; },
                    "spec.model: \"uploaded:\" names no uploaded model; write \"uploaded:\" "
                    "and the model's id or name (1 to 64 characters)"},
        InvalidCase{"uploaded_long",
                    [](ExperimentSpec& s) { s.model = "uploaded:" + std::string(65, 'a'); },
                    "names no uploaded model"},
        InvalidCase{"uploaded_batch_norm",
                    [](ExperimentSpec& s) {
                      s.model = "uploaded:mynet";
                      s.batch_norm = true;
                    },
                    "spec.batch_norm: not allowed for an uploaded model (\"uploaded:mynet\"); "
                    "its own code decides its layers"},
        InvalidCase{"uploaded_skip",
                    [](ExperimentSpec& s) {
                      s.model = "uploaded:mynet";
                      s.skip_connections = true;
                    },
                    "spec.skip_connections: not allowed for an uploaded model"},
        InvalidCase{"uploaded_depth",
                    [](ExperimentSpec& s) {
                      s.model = "uploaded:mynet";
                      s.depth = 20;
                    },
                    "spec.depth: not allowed for an uploaded model"},
        InvalidCase{"uploaded_init",
                    [](ExperimentSpec& s) {
                      s.model = "uploaded:mynet";
                      s.init = "kaiming_normal";
                    },
                    "spec.init: not allowed for an uploaded model (\"uploaded:mynet\"); its "
                    "own code decides its layers, and it starts from the weights it was saved "
                    "with"}),
    [](const ::testing::TestParamInfo<InvalidCase>& info) { return info.param.label; });

TEST(ResolveSpecTest, AnUploadedModelKeepsItsReferenceAndHasNoBuiltInKnobs) {
  ExperimentSpec spec;
  spec.model = "uploaded:mynet";
  spec.dataset = "fashion_mnist";
  absl::StatusOr<ExperimentSpec> resolved = ResolveSpec(spec);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->model, "uploaded:mynet");
  EXPECT_EQ(resolved->batch_norm, false);
  EXPECT_EQ(resolved->skip_connections, false);
  EXPECT_FALSE(resolved->depth.has_value());
  EXPECT_EQ(resolved->shortcut, "");
  EXPECT_EQ(resolved->augment, false);
  EXPECT_TRUE(IsUploadedModel(resolved->model));
  EXPECT_EQ(UploadedModelReference(resolved->model), "mynet");
  EXPECT_FALSE(IsUploadedModel("simple_cnn"));
  // A record's spec (what a worker is given, what a restart reads) resolves as it is.
  absl::StatusOr<ExperimentSpec> again = ResolveSpec(*resolved);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->batch_norm, false);
}

// Limits on what people write count characters, not bytes; values quoted in errors are cut.
TEST(ResolveSpecTest, NamesCountCharactersAndErrorsQuoteAtMostAHundred) {
  ExperimentSpec spec;
  spec.model = "simple_cnn";
  spec.dataset = "synthetic";
  for (int i = 0; i < 200; ++i) spec.name += "字";  // 600 bytes
  EXPECT_TRUE(ResolveSpec(spec).ok());
  spec.name += "字";
  EXPECT_EQ(ResolveSpec(spec).status().message(),
            "spec.name: 201 characters is longer than the limit of 200");
  spec.name = "";
  spec.model = std::string(10000, 'm');
  const std::string message(ResolveSpec(spec).status().message());
  EXPECT_THAT(message, HasSubstr("spec.model: unknown value \"" + std::string(100, 'm') +
                                 "…\" (10000 bytes); valid values: "));
  EXPECT_LT(message.size(), 400u);
}

// Specs that would be accepted and then fail with LibTorch's words are refused at submit.
TEST(ResolveSpecTest, SpecsThatCannotTrainAreRefused) {
  ExperimentSpec spec;
  spec.model = "mlp";
  spec.dataset = "fashion_mnist";
  spec.batch_size = 1;
  absl::StatusOr<ExperimentSpec> resolved = ResolveSpec(spec);
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(resolved.status().message()),
              HasSubstr("spec.batch_size: 1 is too small: a batch needs at least 2 samples (mlp "
                        "with batch_norm: BatchNorm1d cannot normalise a single sample in "
                        "training); use batch_size 2 or more or batch_norm false"));
  spec.batch_norm = false;
  EXPECT_TRUE(ResolveSpec(spec).ok());  // without BatchNorm a batch of one trains

  // The last batch: 1001 = 7 * 143 + 0; 1001 % 125 = 1.
  spec.batch_norm = true;
  spec.batch_size = 125;
  spec.max_train_samples = 1001;
  EXPECT_THAT(std::string(ResolveSpec(spec).status().message()),
              HasSubstr("1001 training samples in batches of 125 leave a last batch of 1"));
  spec.max_train_samples = 1002;
  EXPECT_TRUE(ResolveSpec(spec).ok());

  // Data-parallel: every rank needs its share of every batch.
  spec.model = "simple_cnn";
  spec.max_train_samples = 1000;
  spec.batch_size = 2;
  spec.world_size = 4;
  EXPECT_THAT(std::string(ResolveSpec(spec).status().message()),
              HasSubstr("spec.batch_size: 2 is too small: every batch is split over world_size "
                        "4 ranks, each needing at least 1 sample; use batch_size 4 or more"));
  spec.batch_size = 8;
  EXPECT_TRUE(ResolveSpec(spec).ok());
  spec.max_train_samples = 1002;  // a last batch of 2 for 4 ranks
  EXPECT_THAT(std::string(ResolveSpec(spec).status().message()),
              HasSubstr("leave a last batch of 2, but every batch is split over world_size 4"));

  // Convolutional models with BatchNorm train on single samples (BatchNorm2d normalises
  // over the pixels too).
  spec.model = "resnet";
  spec.world_size = 1;
  spec.batch_size = 1;
  EXPECT_TRUE(ResolveSpec(spec).ok());
}

TEST(ExpectedTrainSamplesTest, TheStandardSplitOrTheLimit) {
  ExperimentSpec spec;
  EXPECT_EQ(ExpectedTrainSamples(spec), 50'000);
  spec.max_train_samples = 70'000;
  EXPECT_EQ(ExpectedTrainSamples(spec), 50'000);
  spec.dataset = "synthetic";
  EXPECT_EQ(ExpectedTrainSamples(spec), 70'000);
  spec.max_train_samples = 0;
  EXPECT_EQ(ExpectedTrainSamples(spec), 2'000);
}

TEST(ExpectedTestSamplesTest, TheStandardSplitOrTheLimit) {
  ExperimentSpec spec;
  spec.dataset = "fashion_mnist";
  EXPECT_EQ(ExpectedTestSamples(spec), 10'000);
  spec.max_test_samples = 20'000;
  EXPECT_EQ(ExpectedTestSamples(spec), 10'000);
  spec.max_test_samples = 300;
  EXPECT_EQ(ExpectedTestSamples(spec), 300);
  spec.dataset = "synthetic";
  spec.max_test_samples = 20'000;
  EXPECT_EQ(ExpectedTestSamples(spec), 20'000);
  spec.max_test_samples = 0;
  EXPECT_EQ(ExpectedTestSamples(spec), 500);
}

}  // namespace
}  // namespace gradlab
