#include "server/engine/checkpoint.h"

#include <torch/script.h>

#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/engine/checkpoint_dict.h"
#include "server/engine/torch_errors.h"

namespace gradlab {

CheckpointDict UnpickleCheckpoint(absl::string_view state) {
  const torch::IValue value = torch::pickle_load(std::vector<char>(state.begin(), state.end()));
  TORCH_CHECK(value.isGenericDict(), "not a gradlab checkpoint: the pickle holds no dict");
  CheckpointDict dict = c10::impl::toTypedDict<std::string, at::Tensor>(value.toGenericDict());
  for (const char* key : {kMetricsKey, kProgressKey, kOptimizerKey, kDataGeneratorKey}) {
    TORCH_CHECK(dict.contains(key), "not a gradlab checkpoint: it has no \"", key, "\"");
  }
  return dict;
}

std::string PickleCheckpoint(const CheckpointDict& dict) {
  const std::vector<char> bytes = torch::pickle_save(dict);
  return std::string(bytes.begin(), bytes.end());
}

torch::Tensor MetricsToTensor(const EpochMetrics& m) {
  return torch::tensor(
      {static_cast<double>(m.epoch), m.train_loss, m.train_accuracy, m.test_loss, m.test_accuracy,
       m.best_test_accuracy, m.learning_rate, m.epoch_seconds, m.images_per_second},
      torch::kFloat64);
}

EpochMetrics MetricsFromTensor(const torch::Tensor& tensor) {
  TORCH_CHECK(tensor.scalar_type() == torch::kFloat64 && tensor.numel() == 9,
              "checkpoint metrics: expected 9 float64 values");
  const torch::Tensor t = tensor.contiguous();
  const double* v = t.data_ptr<double>();
  EpochMetrics m;
  m.epoch = static_cast<int>(v[0]);
  m.train_loss = v[1];
  m.train_accuracy = v[2];
  m.test_loss = v[3];
  m.test_accuracy = v[4];
  m.best_test_accuracy = v[5];
  m.learning_rate = v[6];
  m.epoch_seconds = v[7];
  m.images_per_second = v[8];
  return m;
}

torch::Tensor BytesToTensor(absl::string_view bytes) {
  return torch::from_blob(const_cast<char*>(bytes.data()), {static_cast<int64_t>(bytes.size())},
                          torch::kUInt8)
      .clone();
}

std::string TensorToBytes(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.contiguous();
  TORCH_CHECK(t.scalar_type() == torch::kUInt8, "expected a uint8 tensor of bytes");
  return std::string(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()),
                     static_cast<size_t>(t.numel()));
}

absl::StatusOr<EpochMetrics> CheckpointMetrics(absl::string_view state) {
  return CatchTorchErrors([&]() -> absl::StatusOr<EpochMetrics> {
    return MetricsFromTensor(UnpickleCheckpoint(state).at(kMetricsKey));
  });
}

absl::StatusOr<std::string> ExportStateDict(absl::string_view state) {
  return CatchTorchErrors([&]() -> absl::StatusOr<std::string> {
    const CheckpointDict checkpoint = UnpickleCheckpoint(state);
    CheckpointDict model;
    for (const auto& entry : checkpoint) {
      if (absl::StartsWith(entry.key(), kModelPrefix)) {
        model.insert(entry.key().substr(std::string(kModelPrefix).size()), entry.value());
      }
    }
    return PickleCheckpoint(model);
  });
}

absl::StatusOr<std::string> ExportTorchScript(const std::string& script_file,
                                              absl::string_view state) {
  return CatchTorchErrors([&]() -> absl::StatusOr<std::string> {
    const CheckpointDict checkpoint = UnpickleCheckpoint(state);
    torch::jit::Module module = torch::jit::load(script_file);
    torch::NoGradGuard no_grad;
    const auto restore = [&](const std::string& name, at::Tensor tensor) {
      const std::string key = kModelPrefix + name;
      TORCH_CHECK(checkpoint.contains(key), "the checkpoint has no \"", name,
                  "\" for the uploaded module");
      tensor.copy_(checkpoint.at(key));
    };
    for (const auto& parameter : module.named_parameters()) {
      restore(parameter.name, parameter.value);
    }
    for (const auto& buffer : module.named_buffers()) restore(buffer.name, buffer.value);
    std::ostringstream out;
    module.save(out);
    return std::move(out).str();
  });
}

}  // namespace gradlab
