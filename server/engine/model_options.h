// Which model to build and for what input, without LibTorch: the job queue describes
// models with it (their parameter counts in GetServerInfo); server/engine/models.h builds
// them.
#ifndef GRADLAB_SERVER_ENGINE_MODEL_OPTIONS_H_
#define GRADLAB_SERVER_ENGINE_MODEL_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/experiment_spec.h"

namespace gradlab {

struct ModelOptions {
  std::string model = "simple_cnn";  // one of ModelNames(), or an uploaded model
  int64_t in_channels = 3;
  int64_t height = 32;
  int64_t width = 32;
  int64_t num_classes = 10;
  bool batch_norm = false;
  bool skip_connections = true;          // resnets only
  std::string init = "pytorch_default";  // one of InitNames()
  int depth = 20;                        // cifar_resnet only: 6n+2 weighted layers
  std::string shortcut = "zero_pad";     // cifar_resnet only: one of ShortcutNames()
  // An uploaded model (IsUploadedModel): its TorchScript file, which the server keeps
  // (ModelRegistry::FileOf). Its own code decides the rest; the knobs above do not apply.
  std::string script_file;
};

// The model a resolved spec trains, for inputs of that shape and classes.
ModelOptions ModelOptionsFor(const ExperimentSpec& spec, int64_t channels, int64_t height,
                             int64_t width, int64_t num_classes);

// The number of trainable parameters of the model `options` describe.
absl::StatusOr<int64_t> CountParameters(const ModelOptions& options);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_MODEL_OPTIONS_H_
