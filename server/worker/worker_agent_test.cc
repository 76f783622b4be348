#include "server/worker/worker_agent.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

v1::RankAssignment Assignment() {
  v1::RankAssignment assignment;
  assignment.set_experiment_id("abcd2345");
  assignment.set_attempt(1);
  v1::ExperimentSpec* spec = assignment.mutable_spec();
  spec->set_model("simple_cnn");
  spec->set_dataset("synthetic");
  spec->set_epochs(1);
  spec->set_batch_size(64);
  spec->set_world_size(2);
  assignment.set_rank(1);
  assignment.set_world_size(2);
  assignment.set_timeout_ms(60000);
  return assignment;
}

TEST(CheckAssignmentTest, AWorkerTrainsOnlyWhatAServerWouldHaveAccepted) {
  EXPECT_TRUE(CheckAssignment(Assignment()).ok());

  v1::RankAssignment bad_batch = Assignment();
  bad_batch.mutable_spec()->set_batch_size(-1);  // 0 means the default
  const absl::Status refused = CheckAssignment(bad_batch);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("the coordinator's assignment for experiment \"abcd2345\" is not one a "
                        "worker can train: spec.batch_size: -1"));

  v1::RankAssignment rank = Assignment();
  rank.set_rank(2);
  EXPECT_THAT(std::string(CheckAssignment(rank).message()), HasSubstr("rank 2 is not in [1, 1]"));
  v1::RankAssignment group = Assignment();
  group.set_world_size(8);
  EXPECT_THAT(std::string(CheckAssignment(group).message()),
              HasSubstr("world_size 8 for a spec of 2"));
  v1::RankAssignment timeout = Assignment();
  timeout.set_timeout_ms(0);
  EXPECT_THAT(std::string(CheckAssignment(timeout).message()),
              HasSubstr("timeout_ms 0 is not positive"));
}

}  // namespace
}  // namespace gradlab
