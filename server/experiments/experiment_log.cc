#include "server/experiments/experiment_log.h"

#include <algorithm>

namespace gradlab {
namespace {

// The first element of a sequence-ordered container whose key is >= `from`.
template <typename Container, typename Key>
typename Container::const_iterator FirstAtOrAfter(const Container& events, int64_t from, Key key) {
  return std::lower_bound(events.begin(), events.end(), from,
                          [&](const auto& event, int64_t value) { return key(*event) < value; });
}

// Appends to a bounded window, dropping the oldest beyond `limit`.
template <typename Event>
void PushBounded(std::deque<std::shared_ptr<const Event>>& window,
                 std::shared_ptr<const Event> event, size_t limit) {
  window.push_back(std::move(event));
  if (window.size() > limit) window.pop_front();
}

}  // namespace

void ExperimentLog::Keep(v1::MetricsEvent event) const {
  auto stored = std::make_shared<const v1::MetricsEvent>(std::move(event));
  if (stored->has_batch_progress()) {
    PushBounded(recent_progress_, std::move(stored), retention_.batch_progress);
  } else {
    kept_metrics_.push_back(std::move(stored));
  }
}

void ExperimentLog::Keep(v1::GradientSnapshot snapshot) const {
  auto stored = std::make_shared<const v1::GradientSnapshot>(std::move(snapshot));
  if (stored->step() == 1 && first_snapshot_ == nullptr) {
    first_snapshot_ = std::move(stored);
  } else {
    PushBounded(recent_snapshots_, std::move(stored), retention_.gradient_snapshots);
  }
}

template <typename Event>
absl::StatusOr<int64_t> ExperimentLog::Log(Event event, EventKind kind) {
  int64_t sequence;
  {
    absl::MutexLock append_lock(&append_mu_);
    {
      absl::ReaderMutexLock lock(&mu_);
      sequence = last_sequence_ + 1;
    }
    event.set_sequence(sequence);
    if (journal_ != nullptr) {
      if (absl::Status status = journal_->Record(event); !status.ok()) return status;
    }
    absl::MutexLock lock(&mu_);
    last_sequence_ = sequence;
    Keep(std::move(event));
  }
  Wake(kind);
  return sequence;
}

absl::StatusOr<int64_t> ExperimentLog::Append(v1::MetricsEvent event) {
  return Log(std::move(event), EventKind::kMetrics);
}

absl::StatusOr<int64_t> ExperimentLog::Append(v1::GradientSnapshot snapshot) {
  return Log(std::move(snapshot), EventKind::kGradients);
}

void ExperimentLog::KeepAll(StoredEvents events) const {
  for (v1::MetricsEvent& event : events.metrics) Keep(std::move(event));
  for (v1::GradientSnapshot& snapshot : events.gradients) Keep(std::move(snapshot));
  if (!events.damage.ok()) damage_ = std::move(events.damage);
}

void ExperimentLog::Restore(StoredEvents events, int64_t last_sequence) {
  absl::MutexLock append_lock(&append_mu_);
  absl::MutexLock lock(&mu_);
  KeepAll(std::move(events));
  last_sequence_ = std::max(last_sequence_, last_sequence);
}

void ExperimentLog::RestoreLater(EventSource source, int64_t last_sequence,
                                 std::shared_ptr<LoadedLogs> loaded) {
  absl::MutexLock lock(&mu_);
  source_ = std::move(source);
  loaded_logs_ = std::move(loaded);
  last_sequence_ = std::max(last_sequence_, last_sequence);
}

void ExperimentLog::EnsureLoaded() const {
  {
    absl::ReaderMutexLock lock(&mu_);
    if (source_ == nullptr || source_read_) return;
  }
  int64_t bytes = 0;
  std::shared_ptr<LoadedLogs> loaded_logs;
  {
    // Other readers of this log wait for the read; those of other logs do not.
    absl::MutexLock lock(&mu_);
    if (source_read_) return;  // another reader read it meanwhile
    source_read_ = true;
    if (abort_status_.has_value()) return;
    absl::StatusOr<StoredEvents> events = source_();
    if (!events.ok()) {
      damage_ = events.status();
      return;
    }
    for (const auto& event : events->metrics) bytes += static_cast<int64_t>(event.SpaceUsedLong());
    for (const auto& event : events->gradients) {
      bytes += static_cast<int64_t>(event.SpaceUsedLong());
    }
    KeepAll(*std::move(events));
    loaded_logs = loaded_logs_;
  }
  // Outside mu_: it may unload other logs, which take theirs.
  if (loaded_logs != nullptr) loaded_logs->Add(weak_from_this(), bytes);
}

void ExperimentLog::Unload() const {
  absl::MutexLock lock(&mu_);
  if (source_ == nullptr || !source_read_) return;
  kept_metrics_.clear();
  recent_progress_.clear();
  first_snapshot_.reset();
  recent_snapshots_.clear();
  damage_ = absl::OkStatus();
  source_read_ = false;
}

void LoadedLogs::Add(std::weak_ptr<const ExperimentLog> log, int64_t bytes) {
  std::vector<std::shared_ptr<const ExperimentLog>> over_budget;
  {
    absl::MutexLock lock(&mu_);
    loaded_.emplace_back(std::move(log), bytes);
    bytes_ += bytes;
    while (bytes_ > budget_bytes_ && loaded_.size() > 1) {
      if (auto oldest = loaded_.front().first.lock()) over_budget.push_back(std::move(oldest));
      bytes_ -= loaded_.front().second;
      loaded_.pop_front();
    }
  }
  for (const auto& oldest : over_budget) oldest->Unload();
}

int64_t LoadedLogs::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

absl::Status ExperimentLog::FlushJournal() {
  absl::MutexLock append_lock(&append_mu_);
  return journal_ != nullptr ? journal_->Flush() : absl::OkStatus();
}

void ExperimentLog::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  WakeAll();
}

void ExperimentLog::Abort(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (!abort_status_.has_value()) abort_status_ = std::move(status);
  }
  WakeAll();
}

std::optional<absl::Status> ExperimentLog::EndStatus(bool nothing_left) const {
  if (abort_status_.has_value()) return abort_status_;
  if (closed_ && nothing_left) return damage_;
  return std::nullopt;
}

ExperimentLog::Next<v1::MetricsEvent> ExperimentLog::NextMetrics(int64_t from_sequence) const {
  EnsureLoaded();
  absl::ReaderMutexLock lock(&mu_);
  if (abort_status_.has_value()) return {nullptr, abort_status_};
  auto by_sequence = [](const v1::MetricsEvent& event) { return event.sequence(); };
  auto kept = FirstAtOrAfter(kept_metrics_, from_sequence, by_sequence);
  auto progress = FirstAtOrAfter(recent_progress_, from_sequence, by_sequence);
  MetricsPtr next;
  if (kept != kept_metrics_.end()) next = *kept;
  if (progress != recent_progress_.end() &&
      (next == nullptr || (*progress)->sequence() < next->sequence())) {
    next = *progress;
  }
  if (next != nullptr) return {next, std::nullopt};
  return {nullptr, EndStatus(/*nothing_left=*/true)};
}

ExperimentLog::Next<v1::GradientSnapshot> ExperimentLog::NextGradients(int64_t from_step) const {
  return NextSnapshot(from_step, [](const v1::GradientSnapshot& s) { return s.step(); });
}

ExperimentLog::Next<v1::GradientSnapshot> ExperimentLog::NextGradientsBySequence(
    int64_t from_sequence) const {
  return NextSnapshot(from_sequence, [](const v1::GradientSnapshot& s) { return s.sequence(); });
}

template <typename Key>
ExperimentLog::Next<v1::GradientSnapshot> ExperimentLog::NextSnapshot(int64_t from, Key key) const {
  EnsureLoaded();
  absl::ReaderMutexLock lock(&mu_);
  if (abort_status_.has_value()) return {nullptr, abort_status_};
  // The step-1 snapshot precedes every other, by step and by sequence.
  if (first_snapshot_ != nullptr && key(*first_snapshot_) >= from) {
    return {first_snapshot_, std::nullopt};
  }
  auto next = FirstAtOrAfter(recent_snapshots_, from, key);
  if (next != recent_snapshots_.end()) return {*next, std::nullopt};
  return {nullptr, EndStatus(/*nothing_left=*/true)};
}

std::shared_ptr<const v1::GradientSnapshot> ExperimentLog::LatestSnapshot() const {
  EnsureLoaded();
  absl::ReaderMutexLock lock(&mu_);
  return recent_snapshots_.empty() ? first_snapshot_ : recent_snapshots_.back();
}

std::shared_ptr<const v1::MetricsEvent> ExperimentLog::LatestProgress() const {
  EnsureLoaded();
  absl::ReaderMutexLock lock(&mu_);
  return recent_progress_.empty() ? nullptr : recent_progress_.back();
}

int64_t ExperimentLog::Subscribe(EventKind kind, std::function<void()> listener) {
  absl::MutexLock lock(&listeners_mu_);
  const int64_t handle = next_handle_++;
  listeners_.emplace(handle, Listener{kind, std::move(listener)});
  return handle;
}

void ExperimentLog::Unsubscribe(int64_t handle) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.erase(handle);
}

void ExperimentLog::Wake(EventKind kind) {
  if (notifier_ == nullptr) {
    NotifyListeners(kind);
    return;
  }
  std::atomic<bool>& pending = wake_pending_[static_cast<int>(kind)];
  if (pending.exchange(true)) return;  // the pending run will see this event too
  notifier_->Schedule([weak = weak_from_this(), kind] {
    if (std::shared_ptr<ExperimentLog> log = weak.lock()) {
      log->wake_pending_[static_cast<int>(kind)].store(false);
      log->NotifyListeners(kind);
    }
  });
}

void ExperimentLog::WakeAll() {
  Wake(EventKind::kMetrics);
  Wake(EventKind::kGradients);
}

void ExperimentLog::NotifyListeners(EventKind kind) {
  absl::MutexLock lock(&listeners_mu_);
  for (auto& [handle, listener] : listeners_) {
    if (listener.kind == kind) listener.call();
  }
}

int64_t ExperimentLog::last_sequence() const {
  absl::ReaderMutexLock lock(&mu_);
  return last_sequence_;
}

}  // namespace gradlab
