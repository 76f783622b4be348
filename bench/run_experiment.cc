// run_experiment: trains one experiment with the engine directly (no server) and prints
// its epochs in the reference's format, its step-1 gradient norms and a summary line.
// Used for docs/RESULTS.md and docs/PERFORMANCE.md; users run experiments through
// gradlabd and the gradlab CLI instead.
//
//   build/bench/run_experiment --model=deep_cnn --dataset=fashion_mnist
//       --max_train_samples=2000 --max_test_samples=2000 --epochs=2
//   build/bench/run_experiment --model_file=mynet.pt --dataset=fashion_mnist --epochs=1
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/experiment_spec.h"
#include "server/engine/datasets.h"
#include "server/engine/models.h"
#include "server/engine/trainer.h"

ABSL_FLAG(std::string, model, "simple_cnn", "simple_cnn, deep_cnn, resnet, cifar_resnet or mlp");
ABSL_FLAG(std::string, dataset, "cifar10", "cifar10, fashion_mnist, mnist or synthetic");
ABSL_FLAG(std::string, data_dir, "", "dataset folder; empty: the dataset's default");
ABSL_FLAG(int, epochs, 20, "epochs");
ABSL_FLAG(int, batch_size, 128, "batch size");
ABSL_FLAG(double, learning_rate, 0.001, "SGD learning rate");
ABSL_FLAG(double, momentum, 0.9, "SGD momentum");
ABSL_FLAG(double, weight_decay, 0, "weight decay");
ABSL_FLAG(int, lr_step_size, 0, "StepLR step in epochs; 0: constant rate");
ABSL_FLAG(double, lr_gamma, 0.1, "StepLR factor");
ABSL_FLAG(uint64_t, seed, 42, "seed");
ABSL_FLAG(std::string, augment, "", "true or false; empty: the dataset's default");
ABSL_FLAG(std::string, batch_norm, "", "true or false; empty: the model's default");
ABSL_FLAG(std::string, skip_connections, "", "true or false (resnet); empty: default");
ABSL_FLAG(std::string, init, "pytorch_default", "pytorch_default or kaiming_normal");
ABSL_FLAG(int, depth, 0, "cifar_resnet: 6n+2 layers; 0: the default (20)");
ABSL_FLAG(std::string, shortcut, "", "cifar_resnet: zero_pad or projection; empty: default");
ABSL_FLAG(int64_t, max_train_samples, 0, "first N training samples; 0: all");
ABSL_FLAG(int64_t, max_test_samples, 0, "first N test samples; 0: all");
ABSL_FLAG(int, gradient_every_n_steps, 50, "gradient snapshot cadence");
ABSL_FLAG(int, threads, 0, "intra-op threads; 0: the usable CPUs");
ABSL_FLAG(std::string, precision, "fp32", "fp32 or bf16");
ABSL_FLAG(bool, channels_last, true, "conv models on channels-last tensors");
ABSL_FLAG(bool, prefetch_batches, true, "prepare the next batch on a background thread");
ABSL_FLAG(std::string, model_file, "",
          "train this TorchScript file as an uploaded model would be (instead of --model)");

namespace gradlab {
namespace {

std::optional<bool> OptionalBool(const std::string& text) {
  if (text.empty()) return std::nullopt;
  return text == "true" || text == "1";
}

// Prints what the reference prints, plus the step-1 gradient norms.
class ConsoleSink : public TrainingEventSink {
 public:
  void OnBatchProgress(const BatchProgress&) override {}
  void OnEpochMetrics(const EpochMetrics& m) override {
    std::printf(
        "[Epoch %02d] train %.4f/%.2f%% | val %.4f/%.2f%% (best %.2f%%)  %.1fs %.1f img/s\n",
        m.epoch, m.train_loss, 100 * m.train_accuracy, m.test_loss, 100 * m.test_accuracy,
        100 * m.best_test_accuracy, m.epoch_seconds, m.images_per_second);
    std::fflush(stdout);
    last = m;
    seconds += m.epoch_seconds;
    images_per_second_sum += m.images_per_second;
    ++epochs;
  }
  // The mean softmax and the predicted classes' counts, as the article reports them.
  void OnPredictions(const Predictions& p) override {
    std::printf("predictions epoch %d: mean softmax [", p.epoch);
    for (size_t c = 0; c < p.mean_softmax.size(); ++c) {
      std::printf("%s%.4f", c ? ", " : "", p.mean_softmax[c]);
    }
    std::printf("], predicted [");
    const size_t classes = p.mean_softmax.size();
    for (size_t c = 0; c < classes; ++c) {
      int64_t count = 0;
      for (size_t t = 0; t < classes; ++t) count += p.confusion[t * classes + c];
      std::printf("%s%lld", c ? ", " : "", static_cast<long long>(count));
    }
    std::printf("], evaluated in %.2f s\n", p.evaluation_seconds);
    std::fflush(stdout);
  }
  void OnGradientSnapshot(const GradientSnapshot& s) override {
    if (s.step != 1) return;
    std::printf("step 1 gradient norms (weights only):\n");
    for (const LayerGradient& g : s.gradients) {
      if (g.name.find("weight") == std::string::npos) continue;
      std::printf("  %-28s grad %.3e  weight %.3e  ratio %.3e\n", g.name.c_str(), g.grad_norm,
                  g.weight_norm, g.ratio);
      if (first_grad == 0) first_grad = g.grad_norm;
      last_grad = g.grad_norm;
    }
    std::fflush(stdout);
  }

  EpochMetrics last;
  double seconds = 0;
  double images_per_second_sum = 0;
  int epochs = 0;
  double first_grad = 0;
  double last_grad = 0;
};

// Floating-point operations of one training step per image: 2 per multiply-add of every
// conv and linear layer's forward pass, times 3 (the backward pass computes the gradients
// of both the input and the weights, each as costly as the forward pass). The usual
// convention; BatchNorm, activations and pooling are not counted.
absl::StatusOr<double> TrainingFlopsPerImage(const ExperimentSpec& spec, const Dataset& dataset) {
  const ModelOptions options = ModelOptionsFor(spec, dataset);
  // A model of its own, in eval mode: the pass must not move any BatchNorm statistics, and
  // BatchNorm1d cannot normalise a batch of one in train mode.
  absl::StatusOr<std::shared_ptr<ClassifierImpl>> model = BuildModel(options, spec.seed);
  if (!model.ok()) return model.status();
  (*model)->eval();
  torch::NoGradGuard no_grad;
  ActivationRecorder recorder;
  (*model)->forward(torch::zeros({1, options.in_channels, options.height, options.width}),
                    &recorder);
  const auto parameters = (*model)->named_parameters();
  double macs = 0;
  for (size_t i = 0; i < recorder.stds().size(); ++i) {
    const torch::Tensor& weight = parameters[recorder.stds()[i].first + ".weight"];
    // Each output element sums over in_channels x kernel (conv) or in_features (linear).
    macs += static_cast<double>(recorder.elements_per_sample()[i]) *
            static_cast<double>(weight.numel() / weight.size(0));
  }
  return 3 * 2 * macs;
}

int Run() {
  ExperimentSpec spec;
  spec.model = absl::GetFlag(FLAGS_model);
  spec.dataset = absl::GetFlag(FLAGS_dataset);
  spec.data_dir = absl::GetFlag(FLAGS_data_dir);
  spec.epochs = absl::GetFlag(FLAGS_epochs);
  spec.batch_size = absl::GetFlag(FLAGS_batch_size);
  spec.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  spec.momentum = absl::GetFlag(FLAGS_momentum);
  spec.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  spec.lr_step_size = absl::GetFlag(FLAGS_lr_step_size);
  spec.lr_gamma = absl::GetFlag(FLAGS_lr_gamma);
  spec.seed = absl::GetFlag(FLAGS_seed);
  spec.augment = OptionalBool(absl::GetFlag(FLAGS_augment));
  spec.batch_norm = OptionalBool(absl::GetFlag(FLAGS_batch_norm));
  spec.skip_connections = OptionalBool(absl::GetFlag(FLAGS_skip_connections));
  spec.init = absl::GetFlag(FLAGS_init);
  if (absl::GetFlag(FLAGS_depth) != 0) spec.depth = absl::GetFlag(FLAGS_depth);
  spec.shortcut = absl::GetFlag(FLAGS_shortcut);
  spec.max_train_samples = absl::GetFlag(FLAGS_max_train_samples);
  spec.max_test_samples = absl::GetFlag(FLAGS_max_test_samples);
  spec.gradient_every_n_steps = absl::GetFlag(FLAGS_gradient_every_n_steps);
  spec.threads = absl::GetFlag(FLAGS_threads);
  spec.precision = absl::GetFlag(FLAGS_precision);
  const std::string model_file = absl::GetFlag(FLAGS_model_file);
  if (!model_file.empty()) {
    spec.model =
        absl::StrCat(kUploadedModelPrefix, std::filesystem::path(model_file).stem().string());
    spec.batch_norm.reset();
    spec.skip_connections.reset();
  }
  absl::StatusOr<ExperimentSpec> resolved = ResolveSpec(spec);
  if (!resolved.ok()) {
    std::cerr << resolved.status().message() << "\n";
    return 2;
  }
  DatasetRequest request;
  request.name = resolved->dataset;
  request.data_dir = resolved->data_dir;
  request.max_train_samples = resolved->max_train_samples;
  request.max_test_samples = resolved->max_test_samples;
  request.seed = resolved->seed;
  absl::StatusOr<Dataset> dataset = LoadDataset(request);
  if (!dataset.ok()) {
    std::cerr << dataset.status().message() << "\n";
    return 1;
  }
  TrainingControl control;
  control.channels_last = absl::GetFlag(FLAGS_channels_last);
  control.prefetch_batches = absl::GetFlag(FLAGS_prefetch_batches);
  control.model_file = model_file;
  std::printf(
      "%s on %s (%lld train, %lld test), batch_norm=%d skip=%d init=%s augment=%d precision=%s "
      "channels_last=%d prefetch_batches=%d\n",
      resolved->model.c_str(), resolved->dataset.c_str(),
      static_cast<long long>(dataset->train.size()), static_cast<long long>(dataset->test.size()),
      *resolved->batch_norm, *resolved->skip_connections, resolved->init.c_str(),
      *resolved->augment, resolved->precision.c_str(), control.channels_last,
      control.prefetch_batches);
  ConsoleSink sink;
  absl::Status status = Train(*resolved, *dataset, control, sink);
  if (!status.ok()) {
    std::cerr << status.message() << "\n";
    return 1;
  }
  const double images_per_second = sink.images_per_second_sum / sink.epochs;
  std::printf(
      "summary model=%s final_test_accuracy=%.4f best_test_accuracy=%.4f final_train_loss=%.4f "
      "final_test_loss=%.4f mean_epoch_seconds=%.2f mean_images_per_second=%.1f "
      "step1_first_to_last_grad_ratio=%.3e",
      resolved->model.c_str(), sink.last.test_accuracy, sink.last.best_test_accuracy,
      sink.last.train_loss, sink.last.test_loss, sink.seconds / sink.epochs, images_per_second,
      sink.last_grad > 0 ? sink.first_grad / sink.last_grad : 0.0);
  // Counted from the layers' recorded outputs, which an uploaded module does not record.
  if (model_file.empty()) {
    absl::StatusOr<double> flops = TrainingFlopsPerImage(*resolved, *dataset);
    if (!flops.ok()) {
      std::cerr << flops.status().message() << "\n";
      return 1;
    }
    std::printf(" training_gflop_per_image=%.4f achieved_gflop_per_second=%.1f", *flops / 1e9,
                *flops * images_per_second / 1e9);
  }
  std::printf("\n");
  return 0;
}

}  // namespace
}  // namespace gradlab

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Trains one experiment with gradlab's engine, without a server.");
  absl::ParseCommandLine(argc, argv);
  return gradlab::Run();
}
