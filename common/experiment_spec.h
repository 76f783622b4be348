// What a user asks gradlab to train, with the reference experiment's defaults, and the
// one place that checks a spec and fills in the defaults that depend on the model or the
// dataset. Shared by the server and the CLI; knows nothing of LibTorch or gRPC.
#ifndef GRADLAB_COMMON_EXPERIMENT_SPEC_H_
#define GRADLAB_COMMON_EXPERIMENT_SPEC_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradlab {

// The reference experiment: SGD momentum 0.9, lr 0.001, no weight decay, no LR schedule,
// batch 128, 20 epochs, seed 42, PyTorch's default initialisation. In-class defaults are
// those values; fields whose default depends on the model or the dataset are optional
// until ResolveSpec fills them in.
struct ExperimentSpec {
  // One of ModelNames(), or a model a user uploaded (IsUploadedModel).
  std::string model = "simple_cnn";
  std::string dataset = "cifar10";
  // Where the dataset's files are; empty means the dataset's default location.
  std::string data_dir;
  int epochs = 20;
  int batch_size = 128;
  double learning_rate = 0.001;
  double momentum = 0.9;
  double weight_decay = 0.0;
  // StepLR: multiply the learning rate by lr_gamma every lr_step_size epochs; 0 = never.
  int lr_step_size = 0;
  double lr_gamma = 0.1;
  uint64_t seed = 42;
  // RandomCrop(pad 4) + horizontal flip on the train split. Default: on for cifar10 only.
  std::optional<bool> augment;
  // Default: on for resnet and mlp, off for simple_cnn and deep_cnn.
  std::optional<bool> batch_norm;
  // resnet and cifar_resnet only (default on); off keeps every layer and drops the
  // shortcut addition.
  std::optional<bool> skip_connections;
  std::string init = "pytorch_default";
  // 0 = the whole split; otherwise the first N samples. For `synthetic`, the split's size.
  int64_t max_train_samples = 0;
  int64_t max_test_samples = 0;
  // A gradient snapshot every N optimizer steps, besides step 1 and every epoch's last
  // step; 0 = only those.
  int gradient_every_n_steps = 50;
  // Intra-op threads for this run; 0 = the CPUs this process may use.
  int threads = 0;
  std::string precision = "fp32";
  std::string name;
  std::map<std::string, std::string> labels;
  // Processes training it together, data-parallel: the server and world_size - 1 workers.
  int world_size = 1;
  // cifar_resnet only: weighted layers, 6n+2 (default 20), and how a shortcut meets a
  // stage that doubles the channels (ShortcutNames(), default "zero_pad").
  std::optional<int> depth;
  std::string shortcut;
  // MultiStepLR: times lr_gamma at each milestone, counted in lr_milestone_unit
  // (LrMilestoneUnitNames(): epochs or iterations). Not with lr_step_size.
  std::vector<int> lr_milestones;
  std::string lr_milestone_unit = "epochs";
  // The first warmup_iterations optimizer steps train at warmup_learning_rate (default
  // learning_rate / 10).
  int warmup_iterations = 0;
  std::optional<double> warmup_learning_rate;
  // Evaluate the untrained model on the test split before the first step (epoch 0's
  // predictions).
  bool evaluate_at_init = true;
  // The named recipe (PresetNames()) the spec was filled in from; SpecFromProto applies
  // it, ResolveSpec checks the name.
  std::string preset;
};

// spec.model for a TorchScript module a user uploaded (UploadModel): this prefix and the
// model's id (its sha256) or name. The server pins a name to its id when it accepts the
// spec, since a name can be uploaded again.
inline constexpr absl::string_view kUploadedModelPrefix = "uploaded:";
bool IsUploadedModel(absl::string_view model);
// What follows the prefix; `model` must be an uploaded one.
absl::string_view UploadedModelReference(absl::string_view model);

// The most epochs a spec may ask for.
inline constexpr int kMaxEpochs = 1000;

// The names a spec may use, in the order they are listed to users.
const std::vector<std::string>& ModelNames();
const std::vector<std::string>& DatasetNames();
const std::vector<std::string>& InitNames();
const std::vector<std::string>& PrecisionNames();
const std::vector<std::string>& ShortcutNames();
const std::vector<std::string>& LrMilestoneUnitNames();
const std::vector<std::string>& PresetNames();

// Checks every field and returns the spec with every default filled in (augment,
// batch_norm, skip_connections; depth and shortcut for cifar_resnet), so that a run can be
// repeated from its record. Errors are INVALID_ARGUMENT and name the field, the value and
// what is allowed, e.g. "spec.epochs: 0 is out of range [1, 1000]". A spec that cannot
// train on its dataset's standard split (see CheckBatchesTrainable) is refused too. An
// uploaded model's reference is only checked for its form here (the server looks it up),
// and the knobs of the built-in models (batch_norm, skip_connections, depth, shortcut,
// an init other than the weights it was saved with) are refused for it.
absl::StatusOr<ExperimentSpec> ResolveSpec(const ExperimentSpec& spec);

// The training and test samples a resolved spec uses of its dataset's standard files (a
// user's folder may hold fewer).
int64_t ExpectedTrainSamples(const ExperimentSpec& spec);
int64_t ExpectedTestSamples(const ExperimentSpec& spec);

// Optimizer steps per epoch (the last partial batch counts) and in the whole run.
int64_t IterationsPerEpoch(const ExperimentSpec& spec);
int64_t TotalIterations(const ExperimentSpec& spec);

// Whether every batch of an epoch of `train_samples` samples, split over world_size ranks,
// can be trained on: each rank needs at least one sample of every batch (the last,
// partial one too), and an mlp with batch_norm at least two (BatchNorm1d cannot normalise
// a single sample in training). INVALID_ARGUMENT saying which batch and what to change.
absl::Status CheckBatchesTrainable(const ExperimentSpec& spec, int64_t train_samples);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_EXPERIMENT_SPEC_H_
