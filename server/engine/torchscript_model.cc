#include "server/engine/torchscript_model.h"

#include <torch/script.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace gradlab {
namespace {

// Registers `scripted`'s own parameters and buffers on `mirror`, then a mirror of each of
// its children, recursively.
void Mirror(const torch::jit::Module& scripted, torch::nn::Module& mirror) {
  for (const auto& parameter : scripted.named_parameters(/*recurse=*/false)) {
    mirror.register_parameter(parameter.name, parameter.value, parameter.value.requires_grad());
  }
  for (const auto& buffer : scripted.named_buffers(/*recurse=*/false)) {
    mirror.register_buffer(buffer.name, buffer.value);
  }
  for (const auto& child : scripted.named_children()) {
    auto child_mirror = std::make_shared<torch::nn::Module>(child.name);
    Mirror(child.value, *child_mirror);
    mirror.register_module(child.name, std::move(child_mirror));
  }
}

class TorchScriptClassifierImpl : public ClassifierImpl {
 public:
  explicit TorchScriptClassifierImpl(torch::jit::Module scripted) : scripted_(std::move(scripted)) {
    Mirror(scripted_, *this);
    train(true);
  }

  // The script's own activations are not recorded: it has no hooks to record them with.
  torch::Tensor forward(torch::Tensor x, ActivationRecorder* /*recorder*/) override {
    return scripted_.forward({std::move(x)}).toTensor();
  }

  // The mirror's mode and the script's (its `training` attributes: BatchNorm, dropout).
  void train(bool on = true) override {
    torch::nn::Module::train(on);
    scripted_.train(on);
  }

 private:
  torch::jit::Module scripted_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<ClassifierImpl>> LoadTorchScriptModel(const std::string& path) {
  torch::jit::Module scripted;
  try {
    scripted = torch::jit::load(path);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    return absl::InvalidArgumentError(absl::StrCat("cannot load the TorchScript module ", path,
                                                   ": ", what.substr(0, what.find('\n'))));
  }
  return std::make_shared<TorchScriptClassifierImpl>(std::move(scripted));
}

}  // namespace gradlab
