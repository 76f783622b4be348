#include "server/experiments/lost_rank_policy.h"

#include "gtest/gtest.h"

namespace gradlab {
namespace {

const absl::Status kLost = absl::UnavailableError("the gradient all-reduce of rank 0 of 2 failed");

TEST(LostRankPolicyTest, ALostWorkerRequeuesTheRunNamingWhatBefellIt) {
  const LostRankVerdict verdict = JudgeLostRank(
      kLost, {absl::UnavailableError("worker w2 (host-b at 10.0.0.3) sent no heartbeat for 12s")},
      /*attempts_since_epoch=*/1);
  EXPECT_TRUE(verdict.retry);
  EXPECT_EQ(verdict.reason,
            "the gradient all-reduce of rank 0 of 2 failed; worker w2 (host-b at 10.0.0.3) sent "
            "no heartbeat for 12s");
}

// An epoch that finishes sets the count to 0; the attempt in which it did counts again
// only if it started before it, which the record's count already says.
TEST(LostRankPolicyTest, TheThirdAttemptInARowWithoutAnEpochFailsTheRun) {
  EXPECT_TRUE(JudgeLostRank(kLost, {}, 0).retry);
  EXPECT_TRUE(JudgeLostRank(kLost, {}, kMaxAttemptsWithoutProgress - 1).retry);
  const LostRankVerdict verdict = JudgeLostRank(kLost, {}, kMaxAttemptsWithoutProgress);
  EXPECT_FALSE(verdict.retry);
  EXPECT_EQ(verdict.reason,
            "gave up after 3 data-parallel attempts in a row that finished no epoch; the last: "
            "the gradient all-reduce of rank 0 of 2 failed");
}

TEST(LostRankPolicyTest, AWorkersOwnErrorFailsTheRunAtOnceWithThatError) {
  const LostRankVerdict verdict = JudgeLostRank(
      kLost,
      {absl::UnavailableError("worker w3 restarted"),
       absl::FailedPreconditionError("worker w2 (host-b at 10.0.0.3), rank 1: on worker host-b: "
                                     "dataset cifar10 is not present")},
      /*attempts_since_epoch=*/0);
  EXPECT_FALSE(verdict.retry);
  EXPECT_EQ(verdict.reason,
            "worker w2 (host-b at 10.0.0.3), rank 1: on worker host-b: dataset cifar10 is not "
            "present");
}

TEST(LostRankPolicyTest, RanksThatStoppedBecauseTheGroupStoppedAreNotTheirOwnErrors) {
  EXPECT_TRUE(
      JudgeLostRank(kLost,
                    {absl::UnavailableError("worker w2, rank 1: 1 rank of the group stopped"),
                     absl::CancelledError("worker w3, rank 2: cancelled in epoch 1")},
                    1)
          .retry);
}

}  // namespace
}  // namespace gradlab
