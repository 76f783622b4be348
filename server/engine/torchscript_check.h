// What gradlab checks of a TorchScript module a user uploads before it will train it: that
// the file is one (torch::jit::load reads it), that every operator its code can call is a
// tensor operation on the allowlist (no file, I/O or process operators such as
// aten::from_file), and, per dataset, that one forward and backward pass on a float batch
// of the dataset's shape gives [batch, classes] logits and gradients for every parameter.
//
// Loading a hostile file can crash or hang the process that loads it, and a module's code
// can loop or allocate without end: the server runs this in a helper process of its own
// under memory and CPU-time limits (model_check_process.h), never in itself.
//
// The header does not include LibTorch.
#ifndef GRADLAB_SERVER_ENGINE_TORCHSCRIPT_CHECK_H_
#define GRADLAB_SERVER_ENGINE_TORCHSCRIPT_CHECK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradlab {

struct TorchScriptParameter {
  std::string name;  // as named_parameters() names it, e.g. "features.0.weight"
  std::vector<int64_t> shape;
};

// Whether the module trains on a dataset, and if not, why.
struct DatasetFit {
  std::string dataset;
  bool fits = false;
  // Empty when it fits; else what went wrong, e.g. "forward returned [2, 100]; cifar10 has
  // 10 classes".
  std::string reason;
};

struct TorchScriptReport {
  std::vector<TorchScriptParameter> parameters;
  int64_t parameter_count = 0;       // elements over every parameter
  std::vector<DatasetFit> datasets;  // every dataset of DatasetTable(), in its order
};

// Checks the TorchScript file at `path` (see above). INVALID_ARGUMENT, saying what is wrong,
// when it is not a TorchScript module, calls an operator outside the allowlist, has no
// parameters or no forward method; a module that fits no dataset is not an error (the
// report says why for each).
absl::StatusOr<TorchScriptReport> CheckTorchScript(const std::string& path);

// Whether an uploaded module may call `op` ("aten::conv2d", "prim::If", ...).
bool IsAllowedOperator(absl::string_view op);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_TORCHSCRIPT_CHECK_H_
