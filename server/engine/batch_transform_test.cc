#include "server/engine/batch_transform.h"

#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(BatchTransformTest, DrawsOffsetsWithinPaddingAndFlipsHalf) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(42);
  const CropFlipDraw draw = BatchTransform::Draw(20000, generator);
  // Offsets 0..8 into the padded image: shifts of -4..+4, each about equally likely.
  EXPECT_EQ(draw.top.min().item<int64_t>(), 0);
  EXPECT_EQ(draw.top.max().item<int64_t>(), 8);
  EXPECT_EQ(draw.left.min().item<int64_t>(), 0);
  EXPECT_EQ(draw.left.max().item<int64_t>(), 8);
  EXPECT_NEAR(draw.top.to(torch::kFloat64).mean().item<double>(), 4.0, 0.1);
  const torch::Tensor counts = torch::bincount(draw.left);
  EXPECT_GT(counts.min().item<int64_t>(), 20000 / 9 * 0.9);
  EXPECT_NEAR(draw.flip.to(torch::kFloat64).mean().item<double>(), 0.5, 0.02);
}

TEST(BatchTransformTest, SameSeedSameBatch) {
  BatchTransform transform({0.5, 0.5, 0.5}, {0.25, 0.25, 0.25});
  torch::Tensor images = torch::randint(0, 256, {16, 3, 32, 32}).to(torch::kUInt8);
  at::Generator a = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Generator b = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Generator c = at::make_generator<at::CPUGeneratorImpl>(8);
  torch::Tensor first = transform.Augment(images, a);
  EXPECT_TRUE(torch::equal(first, transform.Augment(images, b)));
  EXPECT_FALSE(torch::equal(first, transform.Augment(images, c)));
}

TEST(BatchTransformTest, CropMatchesPaddingThenSlicingAndFlipMirrors) {
  torch::Tensor images = torch::arange(2 * 2 * 6 * 5, torch::kFloat32).view({2, 2, 6, 5}) + 1;
  CropFlipDraw draw;
  draw.top = torch::tensor({0, 8}, torch::kInt64);
  draw.left = torch::tensor({4, 3}, torch::kInt64);
  draw.flip = torch::tensor({false, true});
  torch::Tensor out = BatchTransform::CropAndFlip(images, draw);
  ASSERT_EQ(out.sizes(), images.sizes());

  torch::Tensor padded = torch::constant_pad_nd(images, {4, 4, 4, 4}, 0);
  using torch::indexing::Slice;
  torch::Tensor expected0 = padded[0].index({Slice(), Slice(0, 6), Slice(4, 9)});
  torch::Tensor expected1 = padded[1].index({Slice(), Slice(8, 14), Slice(3, 8)}).flip(2);
  EXPECT_TRUE(torch::equal(out[0], expected0));
  EXPECT_TRUE(torch::equal(out[1], expected1));
  // Shifted down by 4 from the top: the first four rows are zero padding.
  EXPECT_EQ(out[0].index({Slice(), Slice(0, 4)}).abs().sum().item<float>(), 0);
}

TEST(BatchTransformTest, NormalizeUsesPerChannelMeanAndStd) {
  BatchTransform transform({0.5, 0.0}, {0.5, 0.25});
  torch::Tensor images = torch::full({1, 2, 2, 2}, 255, torch::kUInt8);
  torch::Tensor out = transform.Normalize(images);
  EXPECT_FLOAT_EQ(out[0][0][0][0].item<float>(), 1.0f);  // (1 - 0.5) / 0.5
  EXPECT_FLOAT_EQ(out[0][1][1][1].item<float>(), 4.0f);  // (1 - 0) / 0.25
}

}  // namespace
}  // namespace gradlab
