#include "server/engine/models.h"

#include <ATen/Parallel.h>
#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/model_table.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

absl::StatusOr<std::shared_ptr<ClassifierImpl>> Build(
    const std::string& model, int64_t c, int64_t h, int64_t w, std::optional<bool> batch_norm = {},
    std::optional<bool> skip = {}, const std::string& init = "pytorch_default", int depth = 20,
    const std::string& shortcut = "zero_pad") {
  ModelOptions options;
  options.model = model;
  options.in_channels = c;
  options.height = h;
  options.width = w;
  options.batch_norm = batch_norm.value_or(model != "simple_cnn" && model != "deep_cnn");
  options.skip_connections = skip.value_or(true);
  options.init = init;
  options.depth = depth;
  options.shortcut = shortcut;
  return BuildModel(options, /*seed=*/42);
}

int64_t ParameterCount(const torch::nn::Module& model) {
  int64_t count = 0;
  for (const auto& p : model.parameters()) count += p.numel();
  return count;
}

TEST(ModelsTest, CountParametersAgreesWithTheBuiltModel) {
  ModelOptions options;
  options.model = "deep_cnn";
  EXPECT_EQ(*CountParameters(options), 1'406'346);
  options.model = "vgg";
  EXPECT_FALSE(CountParameters(options).ok());
}

TEST(ModelsTest, ParameterCountsMatchTheReference) {
  EXPECT_EQ(ParameterCount(**Build("simple_cnn", 3, 32, 32)), 175'178);
  EXPECT_EQ(ParameterCount(**Build("deep_cnn", 3, 32, 32)), 1'406'346);
  EXPECT_EQ(ParameterCount(**Build("resnet", 3, 32, 32)), 2'777'674);
  EXPECT_EQ(ParameterCount(**Build("mlp", 1, 28, 28)), 235'402);
  // He et al. 2016's Table 6 (0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M) and what the
  // PyTorch reference (tests/reference/models.py) counts, with option A shortcuts.
  const std::map<int, int64_t> cifar_resnets = {{20, 269'722},    {32, 464'154},
                                                {44, 658'586},    {56, 853'018},
                                                {110, 1'727'962}, {1202, 19'421'274}};
  for (const auto& [depth, count] : cifar_resnets) {
    EXPECT_EQ(ParameterCount(**Build("cifar_resnet", 3, 32, 32, {}, {}, "pytorch_default", depth)),
              count)
        << "depth " << depth;
  }
  // Option A adds no parameter, option B a 1x1 conv and BN at each of the two doublings;
  // the plain twin has the same convs.
  EXPECT_EQ(ParameterCount(**Build("cifar_resnet", 3, 32, 32, {}, false)), 269'722);
  EXPECT_EQ(ParameterCount(
                **Build("cifar_resnet", 3, 32, 32, {}, {}, "pytorch_default", 20, "projection")),
            272'474);
}

TEST(ModelsTest, CifarResNetHasSixNPlusTwoWeightedLayersInThreeStages) {
  for (int depth : {8, 20, 56}) {
    auto net = Build("cifar_resnet", 3, 32, 32, {}, {}, "pytorch_default", depth);
    ASSERT_TRUE(net.ok()) << net.status();
    int weighted = 0;
    for (const auto& [name, tensor] : StateDict(**net)) {
      if (tensor.dim() >= 2) ++weighted;  // conv and linear weights
    }
    EXPECT_EQ(weighted, depth);
    ActivationRecorder recorder;
    torch::NoGradGuard no_grad;
    (*net)->eval();
    torch::Tensor out = (*net)->forward(torch::randn({2, 3, 32, 32}), &recorder);
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 10}));
    ASSERT_EQ(recorder.stds().size(), static_cast<size_t>(depth));
    EXPECT_EQ(recorder.stds().front().first, "conv1");
    EXPECT_EQ(recorder.stds().back().first, "fc");
    // 16 channels on 32x32, then 32 on 16x16 and 64 on 8x8.
    EXPECT_EQ(recorder.elements_per_sample().front(), 16 * 32 * 32);
    EXPECT_EQ(recorder.elements_per_sample()[depth - 2], 64 * 8 * 8);
  }
  // What the zero-padded shortcuts add is checked by the fixture's logits, below.
}

TEST(ModelsTest, OutputShapeIsBatchByClassesForEveryModelAndInput) {
  for (const std::string model : {"simple_cnn", "deep_cnn", "resnet", "cifar_resnet", "mlp"}) {
    for (const auto& [c, h, w] : {std::tuple{3, 32, 32}, std::tuple{1, 28, 28}}) {
      auto net = Build(model, c, h, w);
      ASSERT_TRUE(net.ok()) << net.status();
      (*net)->eval();
      torch::Tensor out = (*net)->forward(torch::randn({5, c, h, w}));
      EXPECT_EQ(out.sizes(), (std::vector<int64_t>{5, 10})) << model << " " << h;
    }
  }
}

TEST(ModelsTest, ResNetNamesFollowPyTorchStateDict) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : StateDict(**Build("resnet", 3, 32, 32))) {
    names.push_back(name);
  }
  EXPECT_EQ(names.front(), "conv1.0.weight");
  EXPECT_THAT(names, ::testing::Contains("conv1.1.running_mean"));
  EXPECT_THAT(names, ::testing::Contains("layer2.0.conv1.weight"));
  EXPECT_THAT(names, ::testing::Contains("layer2.0.shortcut.0.weight"));
  EXPECT_THAT(names, ::testing::Contains("layer3.1.bn2.num_batches_tracked"));
  EXPECT_EQ(names.back(), "fc.bias");
}

TEST(ModelsTest, ResNetWithoutSkipConnectionsDropsOnlyTheShortcuts) {
  auto plain = Build("resnet", 3, 32, 32, true, false);
  ASSERT_TRUE(plain.ok());
  for (const auto& [name, tensor] : StateDict(**plain)) {
    EXPECT_EQ(name.find("shortcut"), std::string::npos) << name;
  }
  // The two projection shortcuts: conv1x1 64->128 and 128->256, each with BatchNorm.
  EXPECT_EQ(ParameterCount(**plain), 2'777'674 - (64 * 128 + 256) - (128 * 256 + 512));
}

TEST(ModelsTest, ActivationRecorderSeesEveryConvAndLinearLayer) {
  auto net = Build("resnet", 3, 32, 32);
  ASSERT_TRUE(net.ok());
  ActivationRecorder recorder;
  (*net)->forward(torch::randn({4, 3, 32, 32}), &recorder);
  std::vector<std::string> layers;
  for (const auto& [name, std] : recorder.stds()) {
    layers.push_back(name);
    EXPECT_GT(std, 0) << name;
  }
  // 1 stem conv + 12 block convs + 2 projection shortcuts + fc.
  EXPECT_EQ(layers.size(), 16u);
  EXPECT_EQ(layers.front(), "conv1.0");
  EXPECT_THAT(layers, ::testing::Contains("layer3.0.shortcut.0"));
  EXPECT_EQ(layers.back(), "fc");
  const std::vector<int64_t>& elements = recorder.elements_per_sample();
  ASSERT_EQ(elements.size(), layers.size());
  EXPECT_EQ(elements.front(), 64 * 32 * 32);  // the stem's output
  const auto shortcut = std::find(layers.begin(), layers.end(), "layer3.0.shortcut.0");
  EXPECT_EQ(elements[shortcut - layers.begin()], 256 * 8 * 8);
  EXPECT_EQ(elements.back(), 10);
}

// The model table in common/ says what the rest of gradlab knows of each model; the
// factory is what builds it. Every row builds, at its smallest side and at its reference
// input; a row is convolutional exactly when its model has a Conv2d; and nothing else
// builds.
TEST(ModelsTest, TheModelTableMatchesTheFactory) {
  for (const ModelTraits& traits : ModelTable()) {
    SCOPED_TRACE(traits.name);
    ModelOptions options;
    options.model = traits.name;
    options.in_channels = traits.reference_channels;
    options.height = options.width = traits.reference_side;
    absl::StatusOr<std::shared_ptr<ClassifierImpl>> model = BuildModel(options, 42);
    ASSERT_TRUE(model.ok()) << model.status();
    bool has_conv = false;
    for (const auto& module : (*model)->modules()) {
      has_conv = has_conv || module->as<torch::nn::Conv2dImpl>() != nullptr;
    }
    EXPECT_EQ(has_conv, traits.convolutional);
    options.height = options.width = traits.min_side;
    EXPECT_TRUE(BuildModel(options, 42).ok()) << "at its smallest side, " << traits.min_side;
    options.height = options.width = traits.min_side - 1;
    EXPECT_FALSE(BuildModel(options, 42).ok()) << "below its smallest side";
  }
  ModelOptions unknown;
  unknown.model = "vgg";
  EXPECT_EQ(BuildModel(unknown, 42).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelsTest, RejectsInputsTooSmallForPooling) {
  auto net = Build("deep_cnn", 3, 2, 2);
  ASSERT_FALSE(net.ok());
  EXPECT_THAT(std::string(net.status().message()),
              ::testing::HasSubstr("needs inputs of at least 4x4 pixels, got 2x2"));
}

// One tensor line of tests/reference/init_fixture.txt or step_fixture.txt, written by
// make_fixture.py.
struct FixtureTensor {
  std::string name;
  std::vector<int64_t> shape;
  uint32_t crc32 = 0;
  double sum = 0;
  std::vector<double> head;
};

struct FixtureConfig {
  std::vector<FixtureTensor> tensors;
  std::vector<double> logits;
  double loss = 0;
};

double ParseHexDouble(const std::string& text) { return std::strtod(text.c_str(), nullptr); }

std::map<std::string, FixtureConfig> ReadFixture(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "run the test from the repository root";
  std::map<std::string, FixtureConfig> configs;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    FixtureConfig& config = configs[fields[0]];
    if (fields[1] == "@logits") {
      for (size_t i = 2; i < fields.size(); ++i) config.logits.push_back(ParseHexDouble(fields[i]));
      continue;
    }
    if (fields[1] == "@loss") {
      config.loss = ParseHexDouble(fields[2]);
      continue;
    }
    FixtureTensor tensor;
    tensor.name = fields[1];
    if (fields[3] != "scalar") {
      for (absl::string_view dim : absl::StrSplit(fields[3], ',')) {
        int64_t value = 0;
        EXPECT_TRUE(absl::SimpleAtoi(dim, &value));
        tensor.shape.push_back(value);
      }
    }
    EXPECT_TRUE(absl::SimpleAtoi(fields[4], &tensor.crc32));
    tensor.sum = ParseHexDouble(fields[5]);
    for (size_t i = 6; i < fields.size(); ++i) tensor.head.push_back(ParseHexDouble(fields[i]));
    config.tensors.push_back(tensor);
  }
  return configs;
}

std::optional<bool> ParseOptionalBool(const std::string& field) {
  const std::string value = field.substr(field.find('=') + 1);
  if (value == "None") return std::nullopt;
  return value == "True";
}

// The model a fixture's configuration names, e.g.
// "resnet/3x32x32/bn=False/skip=False/pytorch_default", and for cifar_resnet
// "/depth=20/zero_pad" after it; its input's size in `input_size`.
std::shared_ptr<ClassifierImpl> BuildConfig(const std::string& config_name,
                                            std::vector<int64_t>& input_size) {
  std::vector<std::string> parts = absl::StrSplit(config_name, '/');
  std::vector<std::string> dims = absl::StrSplit(parts[1], 'x');
  const int64_t c = std::stoll(dims[0]), h = std::stoll(dims[1]), w = std::stoll(dims[2]);
  input_size = {2, c, h, w};
  const int depth = parts.size() > 5 ? std::stoi(parts[5].substr(parts[5].find('=') + 1)) : 20;
  auto net = Build(parts[0], c, h, w, ParseOptionalBool(parts[2]), ParseOptionalBool(parts[3]),
                   parts[4], depth, parts.size() > 6 ? parts[6] : "zero_pad");
  EXPECT_TRUE(net.ok()) << net.status();
  return net.ok() ? *net : nullptr;
}

// The same fixed input as make_fixture.py: linspace(-2, 2) over a batch of 2.
torch::Tensor FixedInput(const std::vector<int64_t>& size) {
  int64_t count = 1;
  for (int64_t dim : size) count *= dim;
  return torch::linspace(-2.0, 2.0, count).reshape(size);
}

void ExpectSameTensor(const std::string& name, const torch::Tensor& value,
                      const FixtureTensor& want) {
  ASSERT_EQ(name, want.name);
  EXPECT_EQ(value.sizes().vec(), want.shape) << name;
  const torch::Tensor t = value.contiguous();
  const uint32_t crc =
      crc32(0L, static_cast<const Bytef*>(t.data_ptr()), static_cast<uInt>(t.nbytes()));
  EXPECT_EQ(crc, want.crc32) << name << ": bytes differ from PyTorch's";
  const torch::Tensor flat = t.reshape(-1).to(torch::kFloat64);
  EXPECT_DOUBLE_EQ(flat.sum().item<double>(), want.sum) << name;
  for (size_t k = 0; k < want.head.size(); ++k) {
    EXPECT_EQ(flat[k].item<double>(), want.head[k]) << name << "[" << k << "]";
  }
}

TEST(ModelsTest, DefaultInitialisationEqualsPyTorchBitForBit) {
  const std::map<std::string, FixtureConfig> fixture =
      ReadFixture("tests/reference/init_fixture.txt");
  ASSERT_EQ(fixture.size(), 14u);
  for (const auto& [config_name, expected] : fixture) {
    SCOPED_TRACE(config_name);
    std::vector<int64_t> input_size;
    std::shared_ptr<ClassifierImpl> net = BuildConfig(config_name, input_size);
    ASSERT_NE(net, nullptr);
    const auto state = StateDict(*net);
    ASSERT_EQ(state.size(), expected.tensors.size());
    for (size_t i = 0; i < state.size(); ++i) {
      ExpectSameTensor(state[i].first, state[i].second, expected.tensors[i]);
    }

    net->eval();
    torch::NoGradGuard no_grad;
    torch::Tensor logits = net->forward(FixedInput(input_size)).reshape(-1).to(torch::kFloat64);
    ASSERT_EQ(logits.numel(), static_cast<int64_t>(expected.logits.size()));
    for (size_t k = 0; k < expected.logits.size(); ++k) {
      EXPECT_NEAR(logits[k].item<double>(), expected.logits[k], 1e-5) << "logit " << k;
    }
  }
}

// One SGD step (lr 0.1, momentum 0.9, weight decay 1e-4: He et al. 2016's) in train mode
// from the same initialisation gives PyTorch's loss, gradients, weights and BatchNorm
// statistics bit for bit: the ResNets' forward and backward passes are PyTorch's, option
// A shortcuts included. Both run on one thread, as make_fixture.py does.
TEST(ModelsTest, OneTrainingStepEqualsPyTorchBitForBit) {
  const std::map<std::string, FixtureConfig> fixture =
      ReadFixture("tests/reference/step_fixture.txt");
  ASSERT_EQ(fixture.size(), 3u);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  for (const auto& [config_name, expected] : fixture) {
    SCOPED_TRACE(config_name);
    std::vector<int64_t> input_size;
    std::shared_ptr<ClassifierImpl> net = BuildConfig(config_name, input_size);
    ASSERT_NE(net, nullptr);
    torch::optim::SGD optimizer(net->parameters(),
                                torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-4));
    net->train();
    optimizer.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(
        net->forward(FixedInput(input_size)), torch::tensor({3, 7}, torch::kInt64));
    loss.backward();
    EXPECT_EQ(loss.item<double>(), expected.loss);

    const auto parameters = net->named_parameters();
    const auto state = StateDict(*net);
    ASSERT_EQ(parameters.size() + state.size(), expected.tensors.size());
    size_t i = 0;
    for (const auto& parameter : parameters) {
      ExpectSameTensor("grad:" + parameter.key(), parameter.value().grad(), expected.tensors[i++]);
    }
    optimizer.step();
    for (const auto& [name, value] : StateDict(*net)) {
      ExpectSameTensor(name, value, expected.tensors[i++]);
    }
  }
  at::set_num_threads(threads);
}

}  // namespace
}  // namespace gradlab
