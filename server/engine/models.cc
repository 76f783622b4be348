#include "server/engine/models.h"

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/model_table.h"
#include "server/engine/torch_errors.h"
#include "server/engine/torchscript_model.h"

namespace gradlab {
namespace {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

nn::Conv2d Conv3x3(int64_t in, int64_t out, int64_t stride, bool bias) {
  return nn::Conv2d(
      nn::Conv2dOptions(in, out, /*kernel_size=*/3).stride(stride).padding(1).bias(bias));
}

torch::Tensor Recorded(ActivationRecorder* recorder, const std::string& layer,
                       torch::Tensor output) {
  if (recorder != nullptr) recorder->Record(layer, output);
  return output;
}

// conv -> [bn] -> relu, the unit that simple_cnn and deep_cnn are stacked from. With
// BatchNorm the conv has no bias: BN's shift makes it redundant.
class ConvStack {
 public:
  void Add(nn::Module& owner, int64_t index, int64_t in, int64_t out, bool batch_norm) {
    const std::string suffix = std::to_string(index);
    convs_.push_back(owner.register_module("conv" + suffix, Conv3x3(in, out, 1, !batch_norm)));
    if (batch_norm) bns_.push_back(owner.register_module("bn" + suffix, nn::BatchNorm2d(out)));
  }
  // Applies layer `i` (0-based) of the stack.
  torch::Tensor Apply(size_t i, torch::Tensor x, ActivationRecorder* recorder) {
    x = Recorded(recorder, "conv" + std::to_string(i + 1), convs_[i]->forward(x));
    if (!bns_.empty()) x = bns_[i]->forward(x);
    return torch::relu(x);
  }
  size_t size() const { return convs_.size(); }

 private:
  std::vector<nn::Conv2d> convs_;
  std::vector<nn::BatchNorm2d> bns_;
};

class SimpleCnnImpl : public ClassifierImpl {
 public:
  explicit SimpleCnnImpl(const ModelOptions& o) {
    const int64_t widths[] = {o.in_channels, 32, 64, 128};
    for (int i = 0; i < 3; ++i) stack_.Add(*this, i + 1, widths[i], widths[i + 1], o.batch_norm);
    // Two 2x2 max pools: flattened size follows the input's height and width.
    fc_ = register_module("fc", nn::Linear(128 * (o.height / 4) * (o.width / 4), o.num_classes));
  }
  torch::Tensor forward(torch::Tensor x, ActivationRecorder* recorder) override {
    x = F::max_pool2d(stack_.Apply(0, x, recorder), F::MaxPool2dFuncOptions(2));
    x = F::max_pool2d(stack_.Apply(1, x, recorder), F::MaxPool2dFuncOptions(2));
    x = stack_.Apply(2, x, recorder);
    return Recorded(recorder, "fc", fc_->forward(x.flatten(1)));
  }

 private:
  ConvStack stack_;
  nn::Linear fc_{nullptr};
};

// Ten 3x3 convs; a 2x2 max pool after the 5th and the 8th.
constexpr int64_t kDeepCnnChannels[] = {64, 64, 64, 64, 64, 128, 128, 128, 256, 256};

class DeepCnnImpl : public ClassifierImpl {
 public:
  explicit DeepCnnImpl(const ModelOptions& o) {
    int64_t in = o.in_channels;
    int64_t index = 1;
    for (int64_t out : kDeepCnnChannels) {
      stack_.Add(*this, index++, in, out, o.batch_norm);
      in = out;
    }
    fc_ = register_module("fc", nn::Linear(in, o.num_classes));
  }
  torch::Tensor forward(torch::Tensor x, ActivationRecorder* recorder) override {
    for (size_t i = 0; i < stack_.size(); ++i) {
      x = stack_.Apply(i, x, recorder);
      if (i == 4 || i == 7) x = F::max_pool2d(x, F::MaxPool2dFuncOptions(2));
    }
    x = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions(1)).flatten(1);
    return Recorded(recorder, "fc", fc_->forward(x));
  }

 private:
  ConvStack stack_;
  nn::Linear fc_{nullptr};
};

// How a block's shortcut meets a change of shape (a stride, more channels).
enum class Shortcut {
  kProjection,  // a strided 1x1 conv (+ BN): option B of He et al. 2016
  kZeroPad,     // every stride-th pixel, the new channels zeros: option A, no parameters
};

// conv3x3(stride) + BN + ReLU, conv3x3 + BN, + shortcut, ReLU. Without skip connections
// the block keeps both convs but neither adds the input nor has a projection shortcut.
class BasicBlockImpl : public nn::Module {
 public:
  BasicBlockImpl(std::string name, int64_t in, int64_t out, int64_t stride, bool batch_norm,
                 bool skip, Shortcut shortcut)
      : name_(std::move(name)), skip_(skip), stride_(stride), pad_channels_(out - in) {
    conv1_ = register_module("conv1", Conv3x3(in, out, stride, !batch_norm));
    if (batch_norm) bn1_ = register_module("bn1", nn::BatchNorm2d(out));
    conv2_ = register_module("conv2", Conv3x3(out, out, 1, !batch_norm));
    if (batch_norm) bn2_ = register_module("bn2", nn::BatchNorm2d(out));
    if (skip && shortcut == Shortcut::kProjection && (stride != 1 || in != out)) {
      shortcut_conv_ = nn::Conv2d(
          nn::Conv2dOptions(in, out, /*kernel_size=*/1).stride(stride).bias(!batch_norm));
      nn::ModuleList shortcut(shortcut_conv_);
      if (batch_norm) {
        shortcut_bn_ = nn::BatchNorm2d(out);
        shortcut->push_back(shortcut_bn_);
      }
      register_module("shortcut", shortcut);
    }
  }

  torch::Tensor forward(const torch::Tensor& x, ActivationRecorder* recorder) {
    torch::Tensor out = Recorded(recorder, name_ + ".conv1", conv1_->forward(x));
    if (bn1_) out = bn1_->forward(out);
    out = torch::relu(out);
    out = Recorded(recorder, name_ + ".conv2", conv2_->forward(out));
    if (bn2_) out = bn2_->forward(out);
    if (skip_) {
      torch::Tensor shortcut = x;
      if (shortcut_conv_) {
        shortcut = Recorded(recorder, name_ + ".shortcut.0", shortcut_conv_->forward(x));
        if (shortcut_bn_) shortcut = shortcut_bn_->forward(shortcut);
      } else if (stride_ != 1 || pad_channels_ != 0) {
        // As the CIFAR reference code: x[:, :, ::2, ::2], zero channels half before, half
        // after.
        using torch::indexing::None;
        using torch::indexing::Slice;
        shortcut =
            x.index({Slice(), Slice(), Slice(None, None, stride_), Slice(None, None, stride_)});
        shortcut = F::pad(shortcut, F::PadFuncOptions({0, 0, 0, 0, pad_channels_ / 2,
                                                       pad_channels_ - pad_channels_ / 2}));
      }
      out = out + shortcut;
    }
    return torch::relu(out);
  }

 private:
  std::string name_;
  bool skip_;
  int64_t stride_;
  int64_t pad_channels_;  // the zero-padded shortcut's new channels
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, shortcut_conv_{nullptr};
  nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, shortcut_bn_{nullptr};
};
TORCH_MODULE(BasicBlock);

// What both ResNets share: a stem conv (+ BN) and ReLU, stages of BasicBlocks, global
// average pooling and a linear head. The subclasses register the stem and call AddStage
// and AddHead in the order PyTorch's reference builds them (initialisation draws in it).
class ResNetBaseImpl : public ClassifierImpl {
 public:
  torch::Tensor forward(torch::Tensor x, ActivationRecorder* recorder) override {
    x = Recorded(recorder, stem_name_, stem_conv_->forward(x));
    if (stem_bn_) x = stem_bn_->forward(x);
    x = torch::relu(x);
    for (BasicBlock& block : blocks_) x = block->forward(x, recorder);
    x = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions(1)).flatten(1);
    return Recorded(recorder, "fc", fc_->forward(x));
  }

 protected:
  // `stem_name`: what the stem conv's activations are recorded as.
  explicit ResNetBaseImpl(std::string stem_name) : stem_name_(std::move(stem_name)) {}

  // Stage `index` (layer1, layer2, ...): `blocks` blocks from `in` to `out` channels, the
  // first with `stride`.
  void AddStage(int index, int64_t blocks, int64_t in, int64_t out, int64_t stride,
                const ModelOptions& o, Shortcut shortcut) {
    const std::string name = "layer" + std::to_string(index);
    nn::ModuleList stage;
    for (int64_t b = 0; b < blocks; ++b) {
      BasicBlock block(absl::StrCat(name, ".", b), b == 0 ? in : out, out, b == 0 ? stride : 1,
                       o.batch_norm, o.skip_connections, shortcut);
      stage->push_back(block);
      blocks_.push_back(block);
    }
    register_module(name, stage);
  }
  void AddHead(int64_t in, int64_t classes) {
    fc_ = register_module("fc", nn::Linear(in, classes));
  }

  nn::Conv2d stem_conv_{nullptr};
  nn::BatchNorm2d stem_bn_{nullptr};

 private:
  const std::string stem_name_;
  std::vector<BasicBlock> blocks_;
  nn::Linear fc_{nullptr};
};

// The reference experiment's ResNet: a 64-filter stem, three stages of two blocks with 64,
// 128 and 256 filters, projection shortcuts.
class ResNetImpl : public ResNetBaseImpl {
 public:
  explicit ResNetImpl(const ModelOptions& o) : ResNetBaseImpl("conv1.0") {
    // The stem is a list (a Sequential in PyTorch) so that its names are conv1.0 (conv)
    // and conv1.1 (BN).
    stem_conv_ = nn::Conv2d(
        nn::Conv2dOptions(o.in_channels, 64, /*kernel_size=*/3).padding(1).bias(!o.batch_norm));
    nn::ModuleList stem(stem_conv_);
    if (o.batch_norm) {
      stem_bn_ = nn::BatchNorm2d(64);
      stem->push_back(stem_bn_);
    }
    stem->push_back(nn::ReLU(nn::ReLUOptions(/*inplace=*/true)));
    register_module("conv1", stem);
    AddStage(1, 2, 64, 64, 1, o, Shortcut::kProjection);
    AddStage(2, 2, 64, 128, 2, o, Shortcut::kProjection);
    AddStage(3, 2, 128, 256, 2, o, Shortcut::kProjection);
    AddHead(256, o.num_classes);
  }
};

// He et al. 2016, section 4.2: the CIFAR-10 ResNets of 6n+2 weighted layers. A 3x3 conv
// with 16 filters, three stages of n blocks on 32x32, 16x16 and 8x8 maps with 16, 32 and
// 64 filters (the first conv of the second and third stride 2), global average pooling,
// a linear layer. Names as the CIFAR reference code's (conv1, bn1, layer1.0.conv1, ...),
// with the head named fc as in gradlab's other models.
class CifarResNetImpl : public ResNetBaseImpl {
 public:
  explicit CifarResNetImpl(const ModelOptions& o) : ResNetBaseImpl("conv1") {
    stem_conv_ = register_module("conv1", Conv3x3(o.in_channels, 16, 1, !o.batch_norm));
    if (o.batch_norm) stem_bn_ = register_module("bn1", nn::BatchNorm2d(16));
    const int64_t n = (o.depth - 2) / 6;
    const Shortcut shortcut =
        o.shortcut == "projection" ? Shortcut::kProjection : Shortcut::kZeroPad;
    AddStage(1, n, 16, 16, 1, o, shortcut);
    AddStage(2, n, 16, 32, 2, o, shortcut);
    AddStage(3, n, 32, 64, 2, o, shortcut);
    AddHead(64, o.num_classes);
  }
};

class MlpImpl : public ClassifierImpl {
 public:
  explicit MlpImpl(const ModelOptions& o) {
    fc1_ = register_module("fc1", nn::Linear(o.in_channels * o.height * o.width, 256));
    fc2_ = register_module("fc2", nn::Linear(256, 128));
    if (o.batch_norm) bn2_ = register_module("bn2", nn::BatchNorm1d(128));
    fc3_ = register_module("fc3", nn::Linear(128, o.num_classes));
  }
  torch::Tensor forward(torch::Tensor x, ActivationRecorder* recorder) override {
    x = torch::relu(Recorded(recorder, "fc1", fc1_->forward(x.flatten(1))));
    x = Recorded(recorder, "fc2", fc2_->forward(x));
    if (bn2_) x = bn2_->forward(x);
    return Recorded(recorder, "fc3", fc3_->forward(torch::relu(x)));
  }

 private:
  nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
  nn::BatchNorm1d bn2_{nullptr};
};

// He initialisation as torchvision's ResNet does it: conv weights from a normal with
// std sqrt(2 / fan_out), conv biases 0, BatchNorm weight 1 and bias 0; linear layers
// keep their default initialisation. Visits modules in the order PyTorch's modules() does.
void ApplyKaimingNormal(nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (const auto& module : model.modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanOut, torch::kReLU);
      if (conv->bias.defined()) nn::init::zeros_(conv->bias);
    } else if (auto* bn2d = module->as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn2d->weight);
      nn::init::zeros_(bn2d->bias);
    } else if (auto* bn1d = module->as<nn::BatchNorm1d>()) {
      nn::init::ones_(bn1d->weight);
      nn::init::zeros_(bn1d->bias);
    }
  }
}

// He et al. 2016's initialisation as the paper (Caffe's MSRA filler) and the usual CIFAR
// ResNet code do it: every conv and linear weight from a normal with std sqrt(2 / fan_in);
// biases and BatchNorm keep their defaults. Visits modules in PyTorch's modules() order.
void ApplyKaimingNormalFanIn(nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (const auto& module : model.modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanIn, torch::kReLU);
    } else if (auto* linear = module->as<nn::Linear>()) {
      nn::init::kaiming_normal_(linear->weight, /*a=*/0, torch::kFanIn, torch::kReLU);
    }
  }
}

// LibTorch's default generator, from which the default initialisation draws, is
// process-wide: no other thread may draw from it between our seeding and our last
// parameter, or the initialisation would differ from PyTorch's.
ABSL_CONST_INIT absl::Mutex default_generator_mutex(absl::kConstInit);

}  // namespace

void ActivationRecorder::Record(const std::string& layer, const torch::Tensor& output) {
  torch::NoGradGuard no_grad;
  // In fp32 also when the layer ran in bf16 (autocast): the spread, not its rounding.
  stds_.emplace_back(layer, output.detach().to(torch::kFloat).std().item<double>());
  elements_per_sample_.push_back(output.size(0) > 0 ? output.numel() / output.size(0) : 0);
}

namespace {

void AppendStateDict(const torch::nn::Module& module, const std::string& prefix,
                     std::vector<std::pair<std::string, torch::Tensor>>& out) {
  for (const auto& item : module.named_parameters(/*recurse=*/false)) {
    out.emplace_back(prefix + item.key(), item.value());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/false)) {
    out.emplace_back(prefix + item.key(), item.value());
  }
  for (const auto& child : module.named_children()) {
    AppendStateDict(*child.value(), prefix + child.key() + ".", out);
  }
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> StateDict(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  AppendStateDict(module, "", out);
  return out;
}

void SeedDefaultGenerator(uint64_t seed) {
  absl::MutexLock lock(&default_generator_mutex);
  torch::manual_seed(seed);
}

absl::StatusOr<std::shared_ptr<ClassifierImpl>> BuildModel(const ModelOptions& options,
                                                           uint64_t seed) {
  if (options.in_channels < 1 || options.num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("model needs at least 1 input channel and 2 classes, got ",
                     options.in_channels, " and ", options.num_classes));
  }
  if (IsUploadedModel(options.model)) {
    if (options.script_file.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("no TorchScript file given for model \"", options.model, "\""));
    }
    return LoadTorchScriptModel(options.script_file);
  }
  const ModelTraits* traits = FindModel(options.model);
  if (traits == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown model \"", options.model, "\""));
  }
  const int64_t min_side = traits->min_side;
  if (options.height < min_side || options.width < min_side) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", options.model, " needs inputs of at least ", min_side, "x", min_side,
                     " pixels, got ", options.height, "x", options.width));
  }
  return CatchTorchErrors([&]() -> absl::StatusOr<std::shared_ptr<ClassifierImpl>> {
    std::shared_ptr<ClassifierImpl> model;
    absl::MutexLock lock(&default_generator_mutex);
    torch::manual_seed(seed);
    if (options.model == "simple_cnn") {
      model = std::make_shared<SimpleCnnImpl>(options);
    } else if (options.model == "deep_cnn") {
      model = std::make_shared<DeepCnnImpl>(options);
    } else if (options.model == "resnet") {
      model = std::make_shared<ResNetImpl>(options);
    } else if (options.model == "cifar_resnet") {
      if (options.depth < 8 || (options.depth - 2) % 6 != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("cifar_resnet's depth must be 6n+2, at least 8; got ", options.depth));
      }
      model = std::make_shared<CifarResNetImpl>(options);
    } else if (options.model == "mlp") {
      model = std::make_shared<MlpImpl>(options);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown model \"", options.model, "\""));
    }
    if (options.init == "kaiming_normal") {
      ApplyKaimingNormal(*model);
    } else if (options.init == "kaiming_normal_fan_in") {
      ApplyKaimingNormalFanIn(*model);
    } else if (options.init != "pytorch_default") {
      return absl::InvalidArgumentError(absl::StrCat("unknown init \"", options.init, "\""));
    }
    return model;
  });
}

ModelOptions ModelOptionsFor(const ExperimentSpec& spec, int64_t channels, int64_t height,
                             int64_t width, int64_t num_classes) {
  ModelOptions options;
  options.model = spec.model;
  options.in_channels = channels;
  options.height = height;
  options.width = width;
  options.num_classes = num_classes;
  options.batch_norm = spec.batch_norm.value_or(false);
  options.skip_connections = spec.skip_connections.value_or(false);
  options.init = spec.init;
  if (spec.depth.has_value()) options.depth = *spec.depth;
  if (!spec.shortcut.empty()) options.shortcut = spec.shortcut;
  return options;
}

absl::StatusOr<int64_t> CountParameters(const ModelOptions& options) {
  absl::StatusOr<std::shared_ptr<ClassifierImpl>> model = BuildModel(options, /*seed=*/0);
  if (!model.ok()) return model.status();
  int64_t count = 0;
  for (const torch::Tensor& parameter : (*model)->parameters()) count += parameter.numel();
  return count;
}

}  // namespace gradlab
