#include "server/engine/torchscript_check.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dataset_table.h"

namespace gradlab {
namespace {

// Tensor operations, arithmetic on scalars and lists, and control flow: what the convolutional
// networks of torchvision (ResNet, VGG, DenseNet, MobileNet, EfficientNet, ConvNeXt, ...)
// and hand-written CNNs call once scripted, and nothing that reads or writes files, prints,
// sleeps, forks or reaches another process; traced modules' operators too. Sorted (std::string's order), for a binary search.
constexpr std::array kAllowedOperators = {
    "aten::Bool",
    "aten::Float",
    "aten::FloatImplicit",
    "aten::Int",
    "aten::IntImplicit",
    "aten::ScalarImplicit",
    "aten::__and__",
    "aten::__contains__",
    "aten::__derive_index",
    "aten::__getitem__",
    "aten::__is__",
    "aten::__isnot__",
    "aten::__not__",
    "aten::__or__",
    "aten::__range_length",
    "aten::_convolution",  // what a traced (torch.jit.trace) convolution calls
    "aten::_set_item",
    "aten::abs",
    "aten::adaptive_avg_pool1d",
    "aten::adaptive_avg_pool2d",
    "aten::adaptive_avg_pool3d",
    "aten::adaptive_max_pool2d",
    "aten::add",
    "aten::add_",
    "aten::addmm",
    "aten::all",
    "aten::alpha_dropout",
    "aten::amax",
    "aten::amin",
    "aten::any",
    "aten::append",
    "aten::arange",
    "aten::argmax",
    "aten::avg_pool1d",
    "aten::avg_pool2d",
    "aten::avg_pool3d",
    "aten::batch_norm",
    "aten::bernoulli",
    "aten::bernoulli_",
    "aten::bmm",
    "aten::cat",
    "aten::ceil",
    "aten::celu",
    "aten::chunk",
    "aten::clamp",
    "aten::clamp_",
    "aten::clamp_max",
    "aten::clamp_min",
    "aten::clone",
    "aten::constant_pad_nd",
    "aten::contiguous",
    "aten::conv1d",
    "aten::conv2d",
    "aten::conv3d",
    "aten::conv_transpose1d",
    "aten::conv_transpose2d",
    "aten::cos",
    "aten::cumsum",
    "aten::detach",
    "aten::dim",
    "aten::div",
    "aten::div_",
    "aten::dropout",
    "aten::dropout_",
    "aten::einsum",
    "aten::elu",
    "aten::elu_",
    "aten::empty",
    "aten::empty_like",
    "aten::eq",
    "aten::exp",
    "aten::expand",
    "aten::expand_as",
    "aten::extend",
    "aten::feature_alpha_dropout",
    "aten::feature_dropout",
    "aten::fill_",
    "aten::flatten",
    "aten::flip",
    "aten::floor",
    "aten::floordiv",
    "aten::format",
    "aten::full",
    "aten::full_like",
    "aten::gather",
    "aten::ge",
    "aten::gelu",
    "aten::group_norm",
    "aten::gt",
    "aten::hardsigmoid",
    "aten::hardsigmoid_",
    "aten::hardswish",
    "aten::hardswish_",
    "aten::hardtanh",
    "aten::hardtanh_",
    "aten::index",
    "aten::index_select",
    "aten::instance_norm",
    "aten::is_floating_point",
    "aten::item",
    "aten::layer_norm",
    "aten::le",
    "aten::leaky_relu",
    "aten::leaky_relu_",
    "aten::len",
    "aten::linear",
    "aten::log",
    "aten::log_softmax",
    "aten::logsumexp",
    "aten::lt",
    "aten::masked_fill",
    "aten::matmul",
    "aten::max",
    "aten::max_pool1d",
    "aten::max_pool2d",
    "aten::max_pool3d",
    "aten::maximum",
    "aten::mean",
    "aten::min",
    "aten::minimum",
    "aten::mish",
    "aten::mm",
    "aten::mul",
    "aten::mul_",
    "aten::narrow",
    "aten::ne",
    "aten::neg",
    "aten::new_full",
    "aten::new_ones",
    "aten::new_zeros",
    "aten::norm",
    "aten::numel",
    "aten::ones",
    "aten::ones_like",
    "aten::pad",
    "aten::permute",
    "aten::pixel_shuffle",
    "aten::pow",
    "aten::prod",
    "aten::rand",
    "aten::rand_like",
    "aten::randn",
    "aten::randn_like",
    "aten::reciprocal",
    "aten::reflection_pad2d",
    "aten::relu",
    "aten::relu6",
    "aten::relu_",
    "aten::remainder",
    "aten::repeat",
    "aten::replication_pad2d",
    "aten::reshape",
    "aten::roll",
    "aten::round",
    "aten::rsqrt",
    "aten::select",
    "aten::selu",
    "aten::sigmoid",
    "aten::sigmoid_",
    "aten::sign",
    "aten::silu",
    "aten::silu_",
    "aten::sin",
    "aten::size",
    "aten::slice",
    "aten::softmax",
    "aten::softplus",
    "aten::split",
    "aten::sqrt",
    "aten::squeeze",
    "aten::stack",
    "aten::std",
    "aten::str",
    "aten::sub",
    "aten::sub_",
    "aten::sum",
    "aten::t",
    "aten::tanh",
    "aten::tanh_",
    "aten::to",
    "aten::topk",
    "aten::transpose",
    "aten::type_as",
    "aten::unflatten",
    "aten::unsqueeze",
    "aten::upsample_bilinear2d",
    "aten::upsample_nearest2d",
    "aten::var",
    "aten::view",
    "aten::view_as",
    "aten::warn",
    "aten::where",
    "aten::zero_",
    "aten::zeros",
    "aten::zeros_like",
    "prim::CallFunction",
    "prim::CallMethod",
    "prim::Constant",
    "prim::DictConstruct",
    "prim::GetAttr",
    "prim::If",
    "prim::ListConstruct",
    "prim::ListUnpack",
    "prim::Loop",
    "prim::NumToTensor",
    "prim::RaiseException",
    "prim::SetAttr",
    "prim::TupleConstruct",
    "prim::TupleIndex",
    "prim::TupleUnpack",
    "prim::Uninitialized",
    "prim::device",
    "prim::dtype",
    "prim::is_cuda",
    "prim::isinstance",
    "prim::layout",
    "prim::max",
    "prim::min",
    "prim::requires_grad",
    "prim::unchecked_cast",
};

// What went wrong, in a line: the first of an exception's message (LibTorch's stack trace
// follows it), or, when the TorchScript interpreter reports an operation that failed, the
// last (its tracebacks come first, the error itself last).
std::string ErrorLine(const std::string& text) {
  constexpr absl::string_view kInterpreter = "The following operation failed in the TorchScript";
  if (!absl::StartsWith(text, kInterpreter)) return text.substr(0, text.find('\n'));
  const absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(text);
  return std::string(trimmed.substr(trimmed.rfind('\n') + 1));
}

// Every operator `block` and the blocks inside it call, with the function it is in, into
// `ops` (operator -> first function seen).
void CollectOperators(const torch::jit::Block& block, const std::string& function,
                      std::map<std::string, std::string>& ops) {
  for (const torch::jit::Node* node : block.nodes()) {
    ops.try_emplace(node->kind().toQualString(), function);
    for (const torch::jit::Block* inner : node->blocks()) CollectOperators(*inner, function, ops);
  }
}

std::string ShapeText(const at::IntArrayRef& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// One forward and backward pass of `module` in training mode on a batch of two random
// float images of the dataset's shape. (BatchNorm's statistics move: the module is the
// check's own.)
DatasetFit TryDataset(torch::jit::Module& module, const DatasetTraits& dataset) {
  DatasetFit fit;
  fit.dataset = dataset.name;
  const int64_t classes = static_cast<int64_t>(dataset.class_names.size());
  try {
    for (const auto& parameter : module.named_parameters(/*recurse=*/true)) {
      parameter.value.mutable_grad().reset();
    }
    module.train();
    const torch::Tensor images = torch::randn({2, dataset.channels, dataset.side, dataset.side});
    const torch::IValue output = module.forward({images});
    if (!output.isTensor()) {
      fit.reason = absl::StrCat("forward returned a ", output.tagKind(), ", not a tensor");
      return fit;
    }
    const torch::Tensor logits = output.toTensor();
    if (logits.dim() != 2 || logits.size(0) != 2 || logits.size(1) != classes) {
      fit.reason =
          absl::StrCat("forward returned ", ShapeText(logits.sizes()), "; ", dataset.name, " has ",
                       classes, " classes: [2, ", classes, "] expected for a batch of 2");
      return fit;
    }
    if (!logits.is_floating_point()) {
      fit.reason =
          absl::StrCat("forward returned ", c10::toString(logits.scalar_type()), ", not floats");
      return fit;
    }
    torch::nn::functional::cross_entropy(logits, torch::zeros({2}, torch::kLong)).backward();
    for (const auto& parameter : module.named_parameters(/*recurse=*/true)) {
      if (parameter.value.requires_grad() && !parameter.value.grad().defined()) {
        fit.reason = absl::StrCat("parameter ", parameter.name,
                                  " gets no gradient from the loss (unused in forward?)");
        return fit;
      }
    }
  } catch (const std::exception& e) {
    fit.reason =
        absl::StrCat("forward or backward failed on a batch of shape [2, ", dataset.channels, ", ",
                     dataset.side, ", ", dataset.side, "]: ", ErrorLine(e.what()));
    return fit;
  }
  fit.fits = true;
  return fit;
}

}  // namespace

bool IsAllowedOperator(absl::string_view op) {
  return std::binary_search(kAllowedOperators.begin(), kAllowedOperators.end(),
                            std::string_view(op.data(), op.size()));
}

absl::StatusOr<TorchScriptReport> CheckTorchScript(const std::string& path) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(path);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a TorchScript module (torch.jit.script(model).save(...) writes "
                     "one): ",
                     ErrorLine(e.what())));
  }
  if (!module.find_method("forward").has_value()) {
    return absl::InvalidArgumentError("the module has no forward method");
  }
  // Every function of the file's code: each module's methods, and the functions they call.
  std::map<std::string, std::string> ops;
  for (const torch::jit::Function* function :
       module._ivalue()->compilation_unit()->get_functions()) {
    if (!function->isGraphFunction()) continue;
    const torch::jit::GraphFunction& graph_function = torch::jit::toGraphFunction(*function);
    CollectOperators(*graph_function.graph()->block(), function->qualname().qualifiedName(), ops);
  }
  // forward with every call inlined (the calls resolve to the functions above; this also
  // covers a builtin function that forward reaches by another name).
  std::shared_ptr<torch::jit::Graph> forward = module.get_method("forward").graph()->copy();
  torch::jit::Inline(*forward);
  CollectOperators(*forward->block(), "forward", ops);
  for (const auto& [op, function] : ops) {
    if (!IsAllowedOperator(op)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "operator ", op, " (in ", function,
          ") is not allowed: uploaded modules may call tensor operations only, none that "
          "touch files, print or start threads (the list: server/engine/torchscript_check.cc)"));
    }
  }

  TorchScriptReport report;
  for (const auto& parameter : module.named_parameters(/*recurse=*/true)) {
    report.parameters.push_back(
        {parameter.name,
         std::vector<int64_t>(parameter.value.sizes().begin(), parameter.value.sizes().end())});
    report.parameter_count += parameter.value.numel();
  }
  if (report.parameters.empty()) {
    return absl::InvalidArgumentError("the module has no parameters: there is nothing to train");
  }
  for (const DatasetTraits& dataset : DatasetTable()) {
    report.datasets.push_back(TryDataset(module, dataset));
  }
  return report;
}

}  // namespace gradlab
