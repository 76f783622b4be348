#include "server/engine/batch_transform.h"

namespace gradlab {
namespace {

torch::Tensor ChannelVector(const std::vector<double>& values) {
  return torch::tensor(values, torch::kFloat64)
      .to(torch::kFloat32)
      .view({1, static_cast<int64_t>(values.size()), 1, 1});
}

}  // namespace

BatchTransform::BatchTransform(const std::vector<double>& mean, const std::vector<double>& std)
    : mean_(ChannelVector(mean)), std_(ChannelVector(std)) {}

torch::Tensor BatchTransform::ToUnitFloat(const torch::Tensor& images) const {
  return images.to(torch::kFloat32).div_(255.0f);
}

torch::Tensor BatchTransform::Normalize(const torch::Tensor& images) const {
  return ToUnitFloat(images).sub_(mean_).div_(std_);
}

torch::Tensor BatchTransform::Augment(const torch::Tensor& images, at::Generator& generator) const {
  const CropFlipDraw draw = Draw(images.size(0), generator);
  return CropAndFlip(ToUnitFloat(images), draw).sub_(mean_).div_(std_);
}

CropFlipDraw BatchTransform::Draw(int64_t batch, at::Generator& generator) {
  CropFlipDraw draw;
  draw.top = torch::randint(0, 2 * kCropPadding + 1, {batch}, generator, torch::kInt64);
  draw.left = torch::randint(0, 2 * kCropPadding + 1, {batch}, generator, torch::kInt64);
  draw.flip = torch::rand({batch}, generator) < 0.5;
  return draw;
}

torch::Tensor BatchTransform::CropAndFlip(const torch::Tensor& images, const CropFlipDraw& draw) {
  using torch::indexing::Slice;
  const int64_t batch = images.size(0);
  const int64_t height = images.size(2);
  const int64_t width = images.size(3);
  const int64_t p = kCropPadding;
  torch::Tensor padded = torch::constant_pad_nd(images, {p, p, p, p}, 0.0);
  // Gather every image's window in one indexing op: rows [B, H, 1] and columns [B, 1, W]
  // broadcast against the batch index [B, 1, 1]; the result is [B, H, W, C].
  torch::Tensor rows = draw.top.view({batch, 1}) + torch::arange(height, torch::kInt64);
  torch::Tensor columns = draw.left.view({batch, 1}) + torch::arange(width, torch::kInt64);
  // A flipped image reads its window's columns right to left.
  columns = torch::where(draw.flip.view({batch, 1}), columns.flip(1), columns);
  torch::Tensor crops =
      padded.index({torch::arange(batch, torch::kInt64).view({batch, 1, 1}), Slice(),
                    rows.view({batch, height, 1}), columns.view({batch, 1, width})});
  return crops.permute({0, 3, 1, 2}).contiguous();
}

}  // namespace gradlab
