#include "common/spec_proto.h"

#include "common/grpc_status.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(SpecProtoTest, UnsetFieldsKeepDefaultsAndZeroIsARealValue) {
  v1::ExperimentSpec proto;
  proto.set_model("resnet");
  proto.set_weight_decay(0.0005);
  proto.set_momentum(0.0);  // set to zero: not the default 0.9
  ExperimentSpec spec = SpecFromProto(proto);
  EXPECT_EQ(spec.model, "resnet");
  EXPECT_EQ(spec.dataset, "cifar10");
  EXPECT_EQ(spec.epochs, 20);
  EXPECT_DOUBLE_EQ(spec.momentum, 0.0);
  EXPECT_DOUBLE_EQ(spec.weight_decay, 0.0005);
  EXPECT_FALSE(spec.batch_norm.has_value());
}

TEST(SpecProtoTest, ResolvedSpecRoundTrips) {
  ExperimentSpec spec;
  spec.model = "deep_cnn";
  spec.batch_norm = true;
  spec.labels["team"] = "vision";
  spec.world_size = 3;
  absl::StatusOr<ExperimentSpec> resolved = ResolveSpec(spec);
  ASSERT_TRUE(resolved.ok());
  v1::ExperimentSpec proto = SpecToProto(*resolved);
  EXPECT_TRUE(proto.has_augment());
  EXPECT_TRUE(proto.has_skip_connections());
  EXPECT_EQ(proto.labels().at("team"), "vision");
  EXPECT_EQ(proto.world_size(), 3);
  v1::ExperimentSpec again = SpecToProto(SpecFromProto(proto));
  EXPECT_EQ(again.SerializeAsString(), proto.SerializeAsString());
}

TEST(SpecProtoTest, He2016PresetIsThePapersRecipeOver64kIterations) {
  v1::ExperimentSpec proto;
  proto.set_model("cifar_resnet");
  proto.set_preset("he2016");
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(SpecFromProto(proto));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->learning_rate, 0.1);
  EXPECT_EQ(spec->momentum, 0.9);
  EXPECT_EQ(spec->weight_decay, 1e-4);
  EXPECT_EQ(spec->batch_size, 128);
  EXPECT_EQ(spec->init, "kaiming_normal_fan_in");
  EXPECT_EQ(spec->augment, true);
  EXPECT_EQ(spec->depth, 20);
  EXPECT_EQ(spec->warmup_iterations, 0);  // only 110 layers and deeper warm up
  // 391 iterations per epoch of CIFAR-10's 50,000 images: 164 epochs reach 64k.
  EXPECT_EQ(spec->epochs, 164);
  EXPECT_EQ(TotalIterations(*spec), 64'124);
  EXPECT_EQ(spec->lr_milestone_unit, "iterations");
  EXPECT_EQ(spec->lr_milestones, (std::vector<int>{32'062, 48'093}));
  EXPECT_EQ(spec->lr_gamma, 0.1);
  // The record keeps the preset and what it filled in, and resolves to itself.
  const v1::ExperimentSpec record = SpecToProto(*spec);
  EXPECT_EQ(record.preset(), "he2016");
  absl::StatusOr<ExperimentSpec> again = ResolveSpec(SpecFromProto(record));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(SpecToProto(*again).SerializeAsString(), record.SerializeAsString());
}

TEST(SpecProtoTest, He2016ScalesToFewerEpochsAndYieldsToFieldsSet) {
  v1::ExperimentSpec proto;
  proto.set_model("cifar_resnet");
  proto.set_preset("he2016");
  proto.set_epochs(4);
  proto.set_learning_rate(0.05);
  proto.set_init("pytorch_default");
  proto.set_depth(110);
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(SpecFromProto(proto));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->epochs, 4);
  EXPECT_EQ(spec->lr_milestones, (std::vector<int>{782, 1173}));  // 50% and 75% of 1564
  EXPECT_EQ(spec->learning_rate, 0.05);
  EXPECT_EQ(spec->init, "pytorch_default");
  EXPECT_EQ(spec->weight_decay, 1e-4);
  EXPECT_EQ(spec->warmup_iterations, 400);
  EXPECT_EQ(spec->warmup_learning_rate, 0.01);

  // Milestones or a StepLR of the user's own replace the preset's.
  proto.add_lr_milestones(2);
  spec = ResolveSpec(SpecFromProto(proto));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->lr_milestones, std::vector<int>{2});
  EXPECT_EQ(spec->lr_milestone_unit, "epochs");
  proto.clear_lr_milestones();
  proto.set_lr_step_size(1);
  spec = ResolveSpec(SpecFromProto(proto));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->lr_milestones.empty());
}

TEST(SpecProtoTest, UnknownPresetIsRefusedByName) {
  v1::ExperimentSpec proto;
  proto.set_preset("he2015");
  absl::StatusOr<ExperimentSpec> spec = ResolveSpec(SpecFromProto(proto));
  EXPECT_EQ(spec.status().message(), "spec.preset: unknown value \"he2015\"; valid values: he2016");
}

TEST(GrpcStatusTest, CodesAndMessagesCarryOver) {
  grpc::Status status = ToGrpcStatus(absl::InvalidArgumentError("spec.epochs: 0 is bad"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "spec.epochs: 0 is bad");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  absl::Status back = FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such id"));
  EXPECT_EQ(back.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(back.message(), "no such id");
}

}  // namespace
}  // namespace gradlab
