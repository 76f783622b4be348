// A user's TorchScript module (torch.jit.script(model).save(...)) as one of gradlab's
// classifiers, so that the trainer, the optimizer, checkpoints, gradient snapshots and
// exports treat it as they treat the built-in models. Its parameters and buffers are the
// scripted module's own tensors, registered under the same names in a mirror of its module
// tree: what the optimizer steps is what the script's forward reads, and StateDict() gives
// the keys and order of the module's state_dict() in Python.
//
// Load only files that CheckTorchScript (in the helper process) accepted.
#ifndef GRADLAB_SERVER_ENGINE_TORCHSCRIPT_MODEL_H_
#define GRADLAB_SERVER_ENGINE_TORCHSCRIPT_MODEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/engine/models.h"

namespace gradlab {

// INVALID_ARGUMENT when the file cannot be loaded.
absl::StatusOr<std::shared_ptr<ClassifierImpl>> LoadTorchScriptModel(const std::string& path);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_TORCHSCRIPT_MODEL_H_
