#include "server/auth/client_limits.h"

#include "absl/strings/str_cat.h"

namespace gradlab {

absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> ClientLimits::OpenStream(
    const std::string& client) {
  {
    absl::MutexLock lock(&mu_);
    int& open = open_streams_[client];
    if (options_.max_streams_per_client > 0 && open >= options_.max_streams_per_client) {
      return absl::ResourceExhaustedError(
          absl::StrCat("this client has ", open, " streams open, the most one client may have (",
                       "--max_streams_per_client); close one first"));
    }
    ++open;
  }
  return std::make_unique<StreamSlot>(*this, client);
}

void ClientLimits::CloseStream(const std::string& client) {
  absl::MutexLock lock(&mu_);
  auto it = open_streams_.find(client);
  if (it != open_streams_.end() && --it->second <= 0) open_streams_.erase(it);
}

absl::Status ClientLimits::AllowStart(const std::string& caller) {
  if (options_.max_starts_per_minute <= 0) return absl::OkStatus();
  const absl::Time now = options_.clock();
  absl::MutexLock lock(&mu_);
  std::deque<absl::Time>& starts = recent_starts_[caller];
  while (!starts.empty() && starts.front() <= now - absl::Minutes(1)) starts.pop_front();
  if (static_cast<int>(starts.size()) >= options_.max_starts_per_minute) {
    const absl::Duration wait = starts.front() + absl::Minutes(1) - now;
    return absl::ResourceExhaustedError(absl::StrCat(
        "more than ", options_.max_starts_per_minute,
        " experiments started in the last minute by this caller (--max_starts_per_minute); "
        "try again in ",
        absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1))), " s"));
  }
  starts.push_back(now);
  // Forget callers that have been quiet for a minute, so that the map stays small.
  for (auto it = recent_starts_.begin(); it != recent_starts_.end();) {
    if (!it->second.empty() && it->second.back() <= now - absl::Minutes(1)) {
      it = recent_starts_.erase(it);
    } else {
      ++it;
    }
  }
  return absl::OkStatus();
}

}  // namespace gradlab
