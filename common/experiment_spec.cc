#include "common/experiment_spec.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/model_table.h"

namespace gradlab {
namespace {

constexpr int kMaxEpochs = 1000;
constexpr int kMaxBatchSize = 4096;
constexpr int64_t kMaxSamples = 100'000'000;
constexpr int kMaxThreads = 1024;
constexpr int kMaxWorldSize = 64;
constexpr size_t kMaxNameLength = 200;
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxLabelLength = 200;

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
  return absl::InvalidArgumentError(
      absl::StrCat("spec.", field, ": unknown value \"", value,
                   "\"; valid values: ", absl::StrJoin(allowed, ", ")));
}

}  // namespace

const std::vector<std::string>& ModelNames() {
  static const auto* const kNames = [] {
    auto* names = new std::vector<std::string>;
    for (const ModelTraits& model : ModelTable()) names->push_back(model.name);
    return names;
  }();
  return *kNames;
}

const std::vector<std::string>& DatasetNames() {
  static const auto* const kNames =
      new std::vector<std::string>{"cifar10", "fashion_mnist", "mnist", "synthetic"};
  return *kNames;
}

const std::vector<std::string>& InitNames() {
  static const auto* const kNames =
      new std::vector<std::string>{"pytorch_default", "kaiming_normal"};
  return *kNames;
}

const std::vector<std::string>& PrecisionNames() {
  static const auto* const kNames = new std::vector<std::string>{"fp32", "bf16"};
  return *kNames;
}

absl::StatusOr<ExperimentSpec> ResolveSpec(const ExperimentSpec& spec) {
  ExperimentSpec resolved = spec;
  for (absl::Status status : {
           CheckOneOf("model", spec.model, ModelNames()),
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
           CheckRange<int64_t>("max_train_samples", spec.max_train_samples, 0, kMaxSamples),
           CheckRange<int64_t>("max_test_samples", spec.max_test_samples, 0, kMaxSamples),
           CheckRange("gradient_every_n_steps", spec.gradient_every_n_steps, 0, 1'000'000),
           CheckRange("threads", spec.threads, 0, kMaxThreads),
           CheckRange("world_size", spec.world_size, 1, kMaxWorldSize),
       }) {
    if (!status.ok()) return status;
  }
  if (spec.name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat("spec.name: ", spec.name.size(),
                                                   " characters is longer than the limit of ",
                                                   kMaxNameLength));
  }
  if (spec.labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.labels: ", spec.labels.size(), " labels is more than the limit of ", kMaxLabels));
  }
  for (const auto& [key, value] : spec.labels) {
    if (key.empty() || key.size() > kMaxLabelLength || value.size() > kMaxLabelLength) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.labels: key \"", key.substr(0, 40), "\" must be 1 to ",
                       kMaxLabelLength, " characters and its value at most ", kMaxLabelLength));
    }
  }

  const ModelTraits& model = *FindModel(spec.model);  // checked above
  if (spec.skip_connections.value_or(false) && !model.has_skip_connections) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.skip_connections: true is not allowed for model \"", spec.model,
                     "\"; only resnet has skip connections"));
  }
  resolved.skip_connections = spec.skip_connections.value_or(model.has_skip_connections);
  resolved.batch_norm = spec.batch_norm.value_or(model.batch_norm_by_default);
  resolved.augment = spec.augment.value_or(spec.dataset == "cifar10");
  return resolved;
}

}  // namespace gradlab
