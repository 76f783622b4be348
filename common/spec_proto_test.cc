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
