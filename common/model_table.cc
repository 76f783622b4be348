#include "common/model_table.h"

namespace gradlab {
namespace {

ModelTraits Convolutional(std::string name) {
  ModelTraits model;
  model.name = std::move(name);
  return model;
}

}  // namespace

const std::vector<ModelTraits>& ModelTable() {
  static const auto* const kTable = [] {
    // simple_cnn and deep_cnn pool twice by 2, resnet strides twice by 2: at least 4 pixels.
    ModelTraits resnet = Convolutional("resnet");
    resnet.batch_norm_by_default = true;
    resnet.has_skip_connections = true;
    // He et al. 2016's CIFAR-10 ResNets: 3 stages, the last two stride by 2.
    ModelTraits cifar_resnet = Convolutional("cifar_resnet");
    cifar_resnet.batch_norm_by_default = true;
    cifar_resnet.has_skip_connections = true;
    cifar_resnet.default_depth = 20;
    // A flattening MLP, described at MNIST's 28x28 grey images as in the reference table.
    ModelTraits mlp = Convolutional("mlp");
    mlp.convolutional = false;
    mlp.min_side = 1;
    mlp.batch_norm_by_default = true;
    mlp.reference_channels = 1;
    mlp.reference_side = 28;
    return new std::vector<ModelTraits>{Convolutional("simple_cnn"), Convolutional("deep_cnn"),
                                        resnet, cifar_resnet, mlp};
  }();
  return *kTable;
}

const ModelTraits* FindModel(absl::string_view name) {
  for (const ModelTraits& model : ModelTable()) {
    if (model.name == name) return &model;
  }
  return nullptr;
}

}  // namespace gradlab
