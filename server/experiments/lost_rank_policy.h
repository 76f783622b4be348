// What becomes of a data-parallel run whose attempt lost a rank: back to the queue, or
// FAILED when trying again cannot help. A pure function, so that the policy is tested
// without processes.
#ifndef GRADLAB_SERVER_EXPERIMENTS_LOST_RANK_POLICY_H_
#define GRADLAB_SERVER_EXPERIMENTS_LOST_RANK_POLICY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace gradlab {

// Attempts in a row interrupted before an epoch finished (Experiment.attempts_since_epoch)
// after which a run fails, whatever interrupted them: a crash of the server, a lost rank.
inline constexpr int kMaxAttemptsWithoutProgress = 3;

struct LostRankVerdict {
  bool retry = false;
  // Retry: the failure and what befell the workers, in words. Else: why the run fails.
  std::string reason;
};

// `status`: how rank 0's attempt ended (UNAVAILABLE); `worker_notes`: what the pool saw
// of its workers (UNAVAILABLE when lost, else the error a worker's rank reported);
// `attempts_since_epoch`: the attempts started since the last finished epoch, this one
// among them. A worker's own error (a missing dataset, say) fails the run at once: it
// would only come back.
LostRankVerdict JudgeLostRank(const absl::Status& status,
                              const std::vector<absl::Status>& worker_notes,
                              int attempts_since_epoch);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_LOST_RANK_POLICY_H_
