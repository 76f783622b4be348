#include "common/experiment_spec.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/client_text.h"
#include "common/dataset_table.h"
#include "common/model_table.h"

namespace gradlab {
namespace {

constexpr int kMaxBatchSize = 4096;
constexpr int64_t kMaxSamples = 100'000'000;
constexpr int kMaxThreads = 1024;
constexpr int kMaxWorldSize = 64;
// cifar_resnet's depths, 6n+2: one block per stage up to the paper's deepest, 1202.
constexpr int kMinDepth = 8;
constexpr int kMaxDepth = 1202;
constexpr int kMaxMilestones = 16;
constexpr int kMaxWarmupIterations = 10'000'000;
constexpr size_t kMaxNameLength = 200;
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxLabelLength = 200;
// An uploaded model's id, a sha256 in hex, and its name are at most 64 characters.
constexpr size_t kMaxUploadedReferenceLength = 64;

absl::Status OutOfRange(const std::string& field, const std::string& value,
                        const std::string& allowed) {
  return absl::InvalidArgumentError(
      absl::StrCat("spec.", field, ": ", value, " is out of range ", allowed));
}

// Closed range [low, high].
template <typename T>
absl::Status CheckRange(const std::string& field, T value, T low, T high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return OutOfRange(field, absl::StrCat(value), absl::StrCat("[", low, ", ", high, "]"));
}

// Checks a real-valued field against [low, high], or (low, high] when low is exclusive.
absl::Status CheckReal(const std::string& field, double value, double low, bool low_exclusive,
                       double high, bool high_exclusive) {
  const bool ok = std::isfinite(value) && (low_exclusive ? value > low : value >= low) &&
                  (high_exclusive ? value < high : value <= high);
  if (ok) return absl::OkStatus();
  return OutOfRange(
      field, absl::StrCat(value),
      absl::StrCat(low_exclusive ? "(" : "[", low, ", ", high, high_exclusive ? ")" : "]"));
}

absl::Status CheckOneOf(const std::string& field, const std::string& value,
                        const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": unknown value ",
                                                 QuoteClientText(value),
                                                 "; valid values: ", absl::StrJoin(allowed, ", ")));
}

// `limit` samples (0: all) of a split of `standard_size`; the synthetic dataset is
// generated at the size asked for.
int64_t ExpectedSamples(const ExperimentSpec& spec, int64_t limit, int64_t standard_size) {
  if (limit == 0) return standard_size;
  if (spec.dataset == "synthetic") return limit;
  return std::min(limit, standard_size);
}

// Strictly increasing, within the run, and not besides StepLR.
absl::Status CheckMilestones(const ExperimentSpec& spec) {
  const std::vector<int>& milestones = spec.lr_milestones;
  if (milestones.empty()) return absl::OkStatus();
  if (spec.lr_step_size > 0) {
    return absl::InvalidArgumentError(
        "spec.lr_milestones: not allowed with lr_step_size; use one schedule or the other");
  }
  if (milestones.size() > kMaxMilestones) {
    return absl::InvalidArgumentError(absl::StrCat("spec.lr_milestones: ", milestones.size(),
                                                   " milestones is more than the limit of ",
                                                   kMaxMilestones));
  }
  const bool in_epochs = spec.lr_milestone_unit == "epochs";
  const int64_t last = in_epochs ? spec.epochs : TotalIterations(spec);
  for (size_t i = 0; i < milestones.size(); ++i) {
    if (milestones[i] < 1 || milestones[i] > last) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.lr_milestones: ", milestones[i], " is out of range [1, ", last,
                       "]: the run has ", last, in_epochs ? " epochs" : " iterations",
                       " (lr_milestone_unit \"", spec.lr_milestone_unit, "\")"));
    }
    if (i > 0 && milestones[i] <= milestones[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat("spec.lr_milestones: ", milestones[i],
                                                     " follows ", milestones[i - 1],
                                                     "; milestones must be strictly increasing"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckModelName(const std::string& model) {
  if (IsUploadedModel(model)) return absl::OkStatus();  // ResolveUploadedModel checks it
  absl::Status status = CheckOneOf("model", model, ModelNames());
  if (status.ok()) return status;
  return absl::InvalidArgumentError(absl::StrCat(
      status.message(), "; or \"", kUploadedModelPrefix, "\" and an uploaded model's id or name"));
}

// The checks of ResolveSpec that differ for an uploaded model: its reference's form, and
// none of the knobs that build a built-in model. Fills in batch_norm and skip_connections
// (false: its own code decides what it has).
absl::Status ResolveUploadedModel(const ExperimentSpec& spec, ExperimentSpec& resolved) {
  const absl::string_view reference = UploadedModelReference(spec.model);
  if (reference.empty() || reference.size() > kMaxUploadedReferenceLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.model: ", QuoteClientText(spec.model), " names no uploaded model; write \"",
        kUploadedModelPrefix, "\" and the model's id or name (1 to ",
        kMaxUploadedReferenceLength, " characters), as `gradlab models list` shows them"));
  }
  const auto refuse = [&](absl::string_view field) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.", field, ": not allowed for an uploaded model (",
                     QuoteClientText(spec.model),
                     "); its own code decides its layers, and it starts from the weights "
                     "it was saved with"));
  };
  // false is what a resolved spec holds: a record's spec resolves again as it is.
  if (spec.batch_norm.value_or(false)) return refuse("batch_norm");
  if (spec.skip_connections.value_or(false)) return refuse("skip_connections");
  if (spec.depth.has_value()) return refuse("depth");
  if (!spec.shortcut.empty()) return refuse("shortcut");
  if (spec.init != InitNames().front()) return refuse("init");
  resolved.batch_norm = false;
  resolved.skip_connections = false;
  return absl::OkStatus();
}

// Fills in the architecture knobs of a built-in model, refusing those it does not have.
absl::Status ResolveBuiltInModel(const ExperimentSpec& spec, ExperimentSpec& resolved) {
  const ModelTraits& model = *FindModel(spec.model);  // checked by the caller
  if (spec.skip_connections.value_or(false) && !model.has_skip_connections) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.skip_connections: true is not allowed for model \"", spec.model,
                     "\"; only resnet and cifar_resnet have skip connections"));
  }
  resolved.skip_connections = spec.skip_connections.value_or(model.has_skip_connections);
  if (model.default_depth == 0) {
    if (spec.depth.has_value() || !spec.shortcut.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.", spec.depth.has_value() ? "depth" : "shortcut", ": not allowed for model \"",
          spec.model, "\"; only cifar_resnet has a depth and a shortcut choice"));
    }
  } else {
    resolved.depth = spec.depth.value_or(model.default_depth);
    if (*resolved.depth < kMinDepth || *resolved.depth > kMaxDepth ||
        (*resolved.depth - 2) % 6 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.depth: ", *resolved.depth, " is not 6n+2 for n blocks per stage in [",
                       kMinDepth, ", ", kMaxDepth, "] (20, 32, 44, 56, 110, ...)"));
    }
    resolved.shortcut = spec.shortcut.empty() ? ShortcutNames().front() : spec.shortcut;
    if (absl::Status status = CheckOneOf("shortcut", resolved.shortcut, ShortcutNames());
        !status.ok()) {
      return status;
    }
  }
  resolved.batch_norm = spec.batch_norm.value_or(model.batch_norm_by_default);
  return absl::OkStatus();
}

}  // namespace

bool IsUploadedModel(absl::string_view model) {
  return absl::StartsWith(model, kUploadedModelPrefix);
}

absl::string_view UploadedModelReference(absl::string_view model) {
  return model.substr(kUploadedModelPrefix.size());
}

const std::vector<std::string>& ModelNames() {
  static const auto* const kNames = [] {
    auto* names = new std::vector<std::string>;
    for (const ModelTraits& model : ModelTable()) names->push_back(model.name);
    return names;
  }();
  return *kNames;
}

const std::vector<std::string>& DatasetNames() {
  static const auto* const kNames = [] {
    auto* names = new std::vector<std::string>;
    for (const DatasetTraits& dataset : DatasetTable()) names->push_back(dataset.name);
    return names;
  }();
  return *kNames;
}

const std::vector<std::string>& InitNames() {
  static const auto* const kNames =
      new std::vector<std::string>{"pytorch_default", "kaiming_normal", "kaiming_normal_fan_in"};
  return *kNames;
}

const std::vector<std::string>& ShortcutNames() {
  static const auto* const kNames = new std::vector<std::string>{"zero_pad", "projection"};
  return *kNames;
}

const std::vector<std::string>& LrMilestoneUnitNames() {
  static const auto* const kNames = new std::vector<std::string>{"epochs", "iterations"};
  return *kNames;
}

const std::vector<std::string>& PresetNames() {
  static const auto* const kNames = new std::vector<std::string>{"he2016"};
  return *kNames;
}

const std::vector<std::string>& PrecisionNames() {
  static const auto* const kNames = new std::vector<std::string>{"fp32", "bf16"};
  return *kNames;
}

absl::StatusOr<ExperimentSpec> ResolveSpec(const ExperimentSpec& spec) {
  ExperimentSpec resolved = spec;
  for (absl::Status status : {
           CheckModelName(spec.model),
           CheckOneOf("dataset", spec.dataset, DatasetNames()),
           CheckOneOf("init", spec.init, InitNames()),
           CheckOneOf("precision", spec.precision, PrecisionNames()),
           CheckRange("epochs", spec.epochs, 1, kMaxEpochs),
           CheckRange("batch_size", spec.batch_size, 1, kMaxBatchSize),
           CheckReal("learning_rate", spec.learning_rate, 0, true, 10, false),
           CheckReal("momentum", spec.momentum, 0, false, 1, true),
           CheckReal("weight_decay", spec.weight_decay, 0, false, 1, false),
           CheckRange("lr_step_size", spec.lr_step_size, 0, kMaxEpochs),
           CheckReal("lr_gamma", spec.lr_gamma, 0, true, 1, false),
           CheckOneOf("lr_milestone_unit", spec.lr_milestone_unit, LrMilestoneUnitNames()),
           CheckRange("warmup_iterations", spec.warmup_iterations, 0, kMaxWarmupIterations),
           CheckReal("warmup_learning_rate", spec.warmup_learning_rate.value_or(1), 0, true, 10,
                     false),
           CheckRange<int64_t>("max_train_samples", spec.max_train_samples, 0, kMaxSamples),
           CheckRange<int64_t>("max_test_samples", spec.max_test_samples, 0, kMaxSamples),
           CheckRange("gradient_every_n_steps", spec.gradient_every_n_steps, 0, 1'000'000),
           CheckRange("threads", spec.threads, 0, kMaxThreads),
           CheckRange("world_size", spec.world_size, 1, kMaxWorldSize),
       }) {
    if (!status.ok()) return status;
  }
  if (CharacterCount(spec.name) > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("spec.name: ", CharacterCount(spec.name),
                                                   " characters is longer than the limit of ",
                                                   kMaxNameLength));
  }
  if (spec.labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.labels: ", spec.labels.size(), " labels is more than the limit of ", kMaxLabels));
  }
  for (const auto& [key, value] : spec.labels) {
    if (key.empty() || CharacterCount(key) > kMaxLabelLength ||
        CharacterCount(value) > kMaxLabelLength) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.labels: key ", QuoteClientText(key), " must be 1 to ", kMaxLabelLength,
                       " characters and its value at most ", kMaxLabelLength));
    }
  }

  if (absl::Status status = IsUploadedModel(spec.model) ? ResolveUploadedModel(spec, resolved)
                                                       : ResolveBuiltInModel(spec, resolved);
      !status.ok()) {
    return status;
  }
  resolved.augment = spec.augment.value_or(spec.dataset == "cifar10");
  resolved.warmup_learning_rate = spec.warmup_learning_rate.value_or(spec.learning_rate / 10);
  if (!spec.preset.empty()) {
    if (absl::Status status = CheckOneOf("preset", spec.preset, PresetNames()); !status.ok()) {
      return status;
    }
  }
  if (absl::Status status = CheckBatchesTrainable(resolved, ExpectedTrainSamples(resolved));
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckMilestones(resolved); !status.ok()) return status;
  return resolved;
}

int64_t ExpectedTrainSamples(const ExperimentSpec& spec) {
  return ExpectedSamples(spec, spec.max_train_samples, FindDataset(spec.dataset)->train_size);
}

int64_t ExpectedTestSamples(const ExperimentSpec& spec) {
  return ExpectedSamples(spec, spec.max_test_samples, FindDataset(spec.dataset)->test_size);
}

int64_t IterationsPerEpoch(const ExperimentSpec& spec) {
  return (ExpectedTrainSamples(spec) + spec.batch_size - 1) / spec.batch_size;
}

int64_t TotalIterations(const ExperimentSpec& spec) {
  return IterationsPerEpoch(spec) * spec.epochs;
}

absl::Status CheckBatchesTrainable(const ExperimentSpec& spec, int64_t train_samples) {
  const ModelTraits* model = FindModel(spec.model);  // null for an uploaded model
  const bool batch_norm_1d =
      model != nullptr && !model->convolutional && spec.batch_norm.value_or(false);
  const int64_t min_per_rank = batch_norm_1d ? 2 : 1;
  const int64_t needed = min_per_rank * spec.world_size;
  const std::string rule = absl::StrCat(
      spec.world_size > 1
          ? absl::StrCat("every batch is split over world_size ", spec.world_size,
                         " ranks, each needing at least ")
          : std::string("a batch needs at least "), min_per_rank, min_per_rank == 1 ? " sample" : " samples",
      batch_norm_1d ? absl::StrCat(" (", spec.model,
                                   " with batch_norm: BatchNorm1d cannot normalise a single "
                                   "sample in training)")
                    : "");
  if (spec.batch_size < needed) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.batch_size: ", spec.batch_size, " is too small: ", rule,
                     "; use batch_size ", needed, " or more",
                     batch_norm_1d ? " or batch_norm false" : ""));
  }
  const int64_t last_batch = train_samples % spec.batch_size;
  if (last_batch != 0 && last_batch < needed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.batch_size: ", train_samples, " training samples in batches of ", spec.batch_size,
        " leave a last batch of ", last_batch, ", but ", rule,
        "; change batch_size or max_train_samples"));
  }
  return absl::OkStatus();
}

}  // namespace gradlab
