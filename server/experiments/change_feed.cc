#include "server/experiments/change_feed.h"

#include <algorithm>
#include <utility>

namespace gradlab {

ChangeCursor::~ChangeCursor() { feed_.RemoveCursor(handle_); }

ChangeCursor::Next ChangeCursor::Read() { return feed_.Read(handle_); }

ChangeFeed::~ChangeFeed() = default;

void ChangeFeed::Publish(v1::Experiment experiment) {
  {
    absl::MutexLock lock(&mu_);
    const int64_t sequence = ++last_sequence_;
    Latest& latest = latest_[experiment.id()];
    if (latest.sequence > 0) {
      by_sequence_.erase(latest.sequence);
      tombstones_.erase(latest.sequence);
    }
    by_sequence_.emplace(sequence, experiment.id());
    if (experiment.deleted()) tombstones_.emplace(sequence, experiment.id());
    latest.sequence = sequence;
    latest.experiment = std::make_shared<const v1::Experiment>(std::move(experiment));
    PruneTombstones();
    // One pending run of the wake-ups covers every change published before it runs.
    if (wake_pending_) return;
    wake_pending_ = true;
  }
  notifier_.Schedule([this] { WakeReaders(); });
}

void ChangeFeed::Close(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (end_.has_value()) return;
    end_ = std::move(status);
    if (wake_pending_) return;
    wake_pending_ = true;
  }
  notifier_.Schedule([this] { WakeReaders(); });
}

std::unique_ptr<ChangeCursor> ChangeFeed::NewCursor(std::function<void()> wake) {
  int64_t handle = 0;
  {
    absl::MutexLock lock(&mu_);
    handle = next_handle_++;
    readers_[handle] = Reader{0, last_sequence_};
  }
  {
    absl::MutexLock lock(&wake_mu_);
    wakes_.emplace(handle, std::move(wake));
  }
  return std::unique_ptr<ChangeCursor>(new ChangeCursor(*this, handle));
}

void ChangeFeed::RemoveCursor(int64_t handle) {
  {
    absl::MutexLock lock(&wake_mu_);  // waits for a running wake-up
    wakes_.erase(handle);
  }
  absl::MutexLock lock(&mu_);
  readers_.erase(handle);
  PruneTombstones();
}

ChangeCursor::Next ChangeFeed::Read(int64_t handle) {
  absl::MutexLock lock(&mu_);
  if (end_.has_value()) return {nullptr, end_};
  Reader& reader = readers_.at(handle);
  for (auto it = by_sequence_.upper_bound(reader.position); it != by_sequence_.end(); ++it) {
    reader.position = it->first;
    const std::shared_ptr<const v1::Experiment>& experiment = latest_.at(it->second).experiment;
    // A deletion before the cursor opened is not news to it: it never saw the experiment.
    if (experiment->deleted() && it->first <= reader.opened_at) continue;
    return {experiment, std::nullopt};
  }
  PruneTombstones();
  return {};
}

int64_t ChangeFeed::last_sequence() const {
  absl::ReaderMutexLock lock(&mu_);
  return last_sequence_;
}

void ChangeFeed::PruneTombstones() {
  // Every reader opened after it, or has read past it, or there is none.
  int64_t passed = last_sequence_;
  for (const auto& [handle, reader] : readers_) {
    passed = std::min(passed, std::max(reader.position, reader.opened_at));
  }
  for (auto it = tombstones_.begin(); it != tombstones_.end() && it->first <= passed;) {
    latest_.erase(it->second);
    by_sequence_.erase(it->first);
    it = tombstones_.erase(it);
  }
}

void ChangeFeed::WakeReaders() {
  {
    absl::MutexLock lock(&mu_);
    wake_pending_ = false;
  }
  absl::MutexLock lock(&wake_mu_);
  for (auto& [handle, wake] : wakes_) wake();
}

}  // namespace gradlab
