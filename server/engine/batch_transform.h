// Turns a batch of uint8 images into the model's input: for the train split with
// augmentation on, RandomCrop(side, padding 4, zero fill) and RandomHorizontalFlip(0.5)
// as torchvision applies them per image, then Normalize. Whole batches at once, as
// tensor ops, with randomness drawn from the caller's seeded generator.
#ifndef GRADLAB_SERVER_ENGINE_BATCH_TRANSFORM_H_
#define GRADLAB_SERVER_ENGINE_BATCH_TRANSFORM_H_

#include <torch/torch.h>

#include <vector>

namespace gradlab {

// The random choices for one batch: each image's crop offset into the padded image
// (0..2*kCropPadding on each axis; kCropPadding is the centre) and whether it is flipped.
struct CropFlipDraw {
  torch::Tensor top;   // int64 [B]
  torch::Tensor left;  // int64 [B]
  torch::Tensor flip;  // bool [B]
};

class BatchTransform {
 public:
  static constexpr int64_t kCropPadding = 4;

  // `mean` and `std` per channel, for pixels scaled to [0, 1].
  BatchTransform(const std::vector<double>& mean, const std::vector<double>& std);

  // Normalize only (the test split, or augmentation off).
  torch::Tensor Normalize(const torch::Tensor& images) const;
  // Crop, flip and normalize, drawing the choices from `generator`.
  torch::Tensor Augment(const torch::Tensor& images, at::Generator& generator) const;

  static CropFlipDraw Draw(int64_t batch, at::Generator& generator);
  // Crops and flips float [B, C, H, W] images as `draw` says; padding is zero.
  static torch::Tensor CropAndFlip(const torch::Tensor& images, const CropFlipDraw& draw);

 private:
  torch::Tensor ToUnitFloat(const torch::Tensor& images) const;

  torch::Tensor mean_;  // float [1, C, 1, 1]
  torch::Tensor std_;   // float [1, C, 1, 1]
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_BATCH_TRANSFORM_H_
