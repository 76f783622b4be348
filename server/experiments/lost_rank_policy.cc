#include "server/experiments/lost_rank_policy.h"

#include "absl/strings/str_cat.h"

namespace gradlab {

LostRankVerdict JudgeLostRank(const absl::Status& status,
                              const std::vector<absl::Status>& worker_notes,
                              int attempts_since_epoch) {
  LostRankVerdict verdict;
  verdict.reason = std::string(status.message());
  for (const absl::Status& note : worker_notes) {
    if (!absl::IsUnavailable(note) && !absl::IsCancelled(note)) {
      verdict.reason = std::string(note.message());
      return verdict;
    }
    absl::StrAppend(&verdict.reason, "; ", note.message());
  }
  if (attempts_since_epoch >= kMaxAttemptsWithoutProgress) {
    verdict.reason = absl::StrCat("gave up after ", kMaxAttemptsWithoutProgress,
                                  " data-parallel attempts in a row that finished no epoch; "
                                  "the last: ",
                                  verdict.reason);
    return verdict;
  }
  verdict.retry = true;
  return verdict;
}

}  // namespace gradlab
