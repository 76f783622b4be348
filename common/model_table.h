// Every model gradlab trains, and what the rest of the code needs to know of each: adding
// a model is a row here and its class in server/engine/models.cc (models_test checks that
// the two agree).
#ifndef GRADLAB_COMMON_MODEL_TABLE_H_
#define GRADLAB_COMMON_MODEL_TABLE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace gradlab {

struct ModelTraits {
  std::string name;
  // Convolutional: its inputs are images of at least min_side pixels a side, and it can
  // run in channels-last memory format; otherwise a flattening MLP (any side, 1 up).
  bool convolutional = true;
  int min_side = 4;
  // What a spec gets when it leaves them unset.
  bool batch_norm_by_default = false;
  bool has_skip_connections = false;  // resnets: skip_connections may be set, default on
  // cifar_resnet: the depth a spec gets when it sets none; 0 for models without a depth.
  int default_depth = 0;
  // The input ServerInfo describes it at (channels x height x width), the reference's.
  int reference_channels = 3;
  int reference_side = 32;
};

// In the order ServerInfo lists them.
const std::vector<ModelTraits>& ModelTable();
// The row of `name`, or null.
const ModelTraits* FindModel(absl::string_view name);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_MODEL_TABLE_H_
