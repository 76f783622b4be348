// gradlab's models: the reference experiment's simple_cnn, deep_cnn and resnet, He et al.
// 2016's CIFAR-10 ResNets (cifar_resnet) and an mlp, built so that their parameter names
// equal the PyTorch reference's state_dict keys (tests/reference/models.py) and their
// default initialisation equals PyTorch's, bit for bit, after the same seed.
#ifndef GRADLAB_SERVER_ENGINE_MODELS_H_
#define GRADLAB_SERVER_ENGINE_MODELS_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/model_options.h"

namespace gradlab {

// Collects the standard deviation of every conv and linear layer's output during one
// forward pass, in the order the layers ran. Only passed to forward() on the steps that
// take a gradient snapshot, so that other steps pay nothing. Not thread-safe; one per
// forward pass.
class ActivationRecorder {
 public:
  void Record(const std::string& layer, const torch::Tensor& output);
  const std::vector<std::pair<std::string, double>>& stds() const { return stds_; }
  // Each recorded output's number of elements per sample (C*H*W for a conv), in the same
  // order as stds(): with the layer's weight shape, what its multiply-adds are.
  const std::vector<int64_t>& elements_per_sample() const { return elements_per_sample_; }

 private:
  std::vector<std::pair<std::string, double>> stds_;
  std::vector<int64_t> elements_per_sample_;
};

// An image classifier: [N, C, H, W] float in, [N, classes] logits out.
class ClassifierImpl : public torch::nn::Module {
 public:
  // `recorder` may be null; when it is not, every conv and linear output is recorded.
  virtual torch::Tensor forward(torch::Tensor x, ActivationRecorder* recorder) = 0;
  torch::Tensor forward(torch::Tensor x) { return forward(std::move(x), nullptr); }
};

// Builds a model whose initial parameters equal those of the PyTorch reference module
// built after torch.manual_seed(seed). Thread-safe. INVALID_ARGUMENT for an unknown
// model or init, or an input too small for the model's pooling.
absl::StatusOr<std::shared_ptr<ClassifierImpl>> BuildModel(const ModelOptions& options,
                                                           uint64_t seed);

// Seeds LibTorch's process-wide default generator, from which the default initialisation
// and an uploaded module's random operators (dropout) draw. Thread-safe with BuildModel.
void SeedDefaultGenerator(uint64_t seed);

// Every parameter and buffer under the keys and in the order of PyTorch's state_dict():
// a module's own parameters, then its own buffers, then each child's, depth first.
std::vector<std::pair<std::string, torch::Tensor>> StateDict(const torch::nn::Module& module);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_MODELS_H_
