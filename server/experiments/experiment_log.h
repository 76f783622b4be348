// One experiment's events, in sequence order: what its streams replay and follow. The
// training thread appends each event once; any number of readers pull from it with
// their own cursor, so a slow reader costs the writer nothing and holds no copy.
#ifndef GRADLAB_SERVER_EXPERIMENTS_EXPERIMENT_LOG_H_
#define GRADLAB_SERVER_EXPERIMENTS_EXPERIMENT_LOG_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/experiments/notifier.h"
#include "server/store/event_journal.h"

namespace gradlab {

// The two kinds of stream a log feeds: an append wakes only the listeners of its kind.
enum class EventKind { kMetrics, kGradients };

class ExperimentLog;

// The finished experiments' logs whose events are in memory (see RestoreLater), oldest
// loaded first: once their events take more than `budget_bytes`, the oldest drop theirs
// (they stay in the store, and are read again when a reader next asks), so that reading
// a long history costs memory for a while, not for the life of the server.
class LoadedLogs {
 public:
  explicit LoadedLogs(int64_t budget_bytes) : budget_bytes_(budget_bytes) {}
  // `log` has just loaded `bytes` of events.
  void Add(std::weak_ptr<const ExperimentLog> log, int64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  int64_t bytes() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const int64_t budget_bytes_;
  mutable absl::Mutex mu_;
  std::deque<std::pair<std::weak_ptr<const ExperimentLog>, int64_t>> loaded_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

// Thread-safe. Listeners run one at a time, on the notifier's thread when the log has a
// notifier (so that appending costs the same whatever the number of readers), else on the
// appending thread; they must not block nor call Subscribe or Unsubscribe. A log with a
// notifier must be owned by a std::shared_ptr.
class ExperimentLog : public std::enable_shared_from_this<ExperimentLog> {
 public:
  // With a journal, every event is recorded in it before readers can see it.
  explicit ExperimentLog(LogRetention retention = {}, Notifier* notifier = nullptr,
                         std::unique_ptr<EventJournal> journal = nullptr)
      : retention_(retention), notifier_(notifier), journal_(std::move(journal)) {}
  ExperimentLog(const ExperimentLog&) = delete;
  ExperimentLog& operator=(const ExperimentLog&) = delete;

  // Each stamps the event with the log's next sequence number, records it in the
  // journal, stores it, wakes the listeners and returns the number. When the journal
  // fails, the event is not logged and the journal's error is returned.
  absl::StatusOr<int64_t> Append(v1::MetricsEvent event)
      ABSL_LOCKS_EXCLUDED(append_mu_, mu_, listeners_mu_);
  absl::StatusOr<int64_t> Append(v1::GradientSnapshot snapshot)
      ABSL_LOCKS_EXCLUDED(append_mu_, mu_, listeners_mu_);

  // Fills a new log with events read back from its journal, each in sequence order, as
  // if they had been appended; the next Append numbers its event after `last_sequence`.
  // When `events.damage` is set, readers that have read every event end with it, not OK.
  void Restore(StoredEvents events, int64_t last_sequence) ABSL_LOCKS_EXCLUDED(append_mu_, mu_);
  // For a finished experiment: its events stay where they are kept until a reader first
  // asks for them (or for the latest of them), when `source` reads them, as Restore would
  // take them; `loaded` (if any) may have the log drop them again (Unload), to be read
  // again when next asked. An error from `source` ends every reader with it. Nothing is
  // appended to such a log (its experiment has finished).
  using EventSource = std::function<absl::StatusOr<StoredEvents>()>;
  void RestoreLater(EventSource source, int64_t last_sequence,
                    std::shared_ptr<LoadedLogs> loaded = nullptr) ABSL_LOCKS_EXCLUDED(mu_);
  // Drops the events RestoreLater's source read (const: they are a cache of the store's).
  void Unload() const ABSL_LOCKS_EXCLUDED(mu_);
  // Commits what the journal batches (see EventJournal).
  absl::Status FlushJournal() ABSL_LOCKS_EXCLUDED(append_mu_);

  // No more events will come: readers finish OK once they have read everything.
  void Close() ABSL_LOCKS_EXCLUDED(mu_, listeners_mu_);
  // Ends every reader now with `status` (UNAVAILABLE when the server shuts down).
  void Abort(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_, listeners_mu_);

  // What a reader gets next: an event, or nothing yet (wait for a listener call), or the
  // end of the log with the status to finish the stream with.
  template <typename Event>
  struct Next {
    std::shared_ptr<const Event> event;
    std::optional<absl::Status> end;
  };
  // The first metrics event (state change, epoch metrics, batch progress) with
  // sequence >= from_sequence that is still kept.
  Next<v1::MetricsEvent> NextMetrics(int64_t from_sequence) const ABSL_LOCKS_EXCLUDED(mu_);
  // The first kept gradient snapshot with step >= from_step.
  Next<v1::GradientSnapshot> NextGradients(int64_t from_step) const ABSL_LOCKS_EXCLUDED(mu_);
  // The first kept gradient snapshot with sequence >= from_sequence.
  Next<v1::GradientSnapshot> NextGradientsBySequence(int64_t from_sequence) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The newest gradient snapshot, or null.
  std::shared_ptr<const v1::GradientSnapshot> LatestSnapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  // The newest batch progress event still kept, or null.
  std::shared_ptr<const v1::MetricsEvent> LatestProgress() const ABSL_LOCKS_EXCLUDED(mu_);

  // Runs `listener` after appends of `kind`, Close and Abort: at least once after each,
  // possibly once for several when the notifier is busy. Returns a handle for
  // Unsubscribe, after which the listener is never running nor run again.
  int64_t Subscribe(EventKind kind, std::function<void()> listener)
      ABSL_LOCKS_EXCLUDED(listeners_mu_);
  void Unsubscribe(int64_t handle) ABSL_LOCKS_EXCLUDED(listeners_mu_);

  int64_t last_sequence() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using MetricsPtr = std::shared_ptr<const v1::MetricsEvent>;
  using SnapshotPtr = std::shared_ptr<const v1::GradientSnapshot>;

  struct Listener {
    EventKind kind;
    std::function<void()> call;
  };
  static constexpr int kKinds = 2;

  // Stores an event that has its sequence number (const: see EnsureLoaded).
  void Keep(v1::MetricsEvent event) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Keep(v1::GradientSnapshot snapshot) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KeepAll(StoredEvents events) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the events RestoreLater left where they are kept, if not yet read. Readers call
  // it first; the events it keeps are a cache of what is stored, so it is const.
  void EnsureLoaded() const ABSL_LOCKS_EXCLUDED(mu_);
  template <typename Event>
  absl::StatusOr<int64_t> Log(Event event, EventKind kind)
      ABSL_LOCKS_EXCLUDED(append_mu_, mu_, listeners_mu_);

  // The first kept snapshot whose key (step or sequence) is >= from.
  template <typename Key>
  Next<v1::GradientSnapshot> NextSnapshot(int64_t from, Key key) const ABSL_LOCKS_EXCLUDED(mu_);

  // Runs the listeners of `kind` now, or has the notifier run them soon.
  void Wake(EventKind kind);
  void WakeAll();
  void NotifyListeners(EventKind kind) ABSL_LOCKS_EXCLUDED(listeners_mu_);
  std::optional<absl::Status> EndStatus(bool nothing_left) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const LogRetention retention_;
  Notifier* const notifier_;
  // Held by an appender from numbering its event to storing it, so that events reach
  // the journal and the log in sequence order; readers never wait for the journal.
  absl::Mutex append_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  const std::unique_ptr<EventJournal> journal_ ABSL_PT_GUARDED_BY(append_mu_);
  std::atomic<bool> wake_pending_[kKinds] = {false, false};  // by EventKind
  mutable absl::Mutex mu_;
  int64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  // The events, filled by appends, Restore, or the first reader after RestoreLater.
  mutable std::vector<MetricsPtr> kept_metrics_ ABSL_GUARDED_BY(mu_);  // state changes, epochs
  mutable std::deque<MetricsPtr> recent_progress_ ABSL_GUARDED_BY(mu_);
  mutable SnapshotPtr first_snapshot_ ABSL_GUARDED_BY(mu_);
  mutable std::deque<SnapshotPtr> recent_snapshots_ ABSL_GUARDED_BY(mu_);
  EventSource source_ ABSL_GUARDED_BY(mu_);  // RestoreLater's
  std::shared_ptr<LoadedLogs> loaded_logs_ ABSL_GUARDED_BY(mu_);
  mutable bool source_read_ ABSL_GUARDED_BY(mu_) = false;  // its events are in memory
  mutable absl::Status damage_ ABSL_GUARDED_BY(mu_);       // how readers end instead of OK
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> abort_status_ ABSL_GUARDED_BY(mu_);

  // Held while listeners run, so that Unsubscribe waits for a running call to return. A
  // listener reads the log (takes mu_) under it; nothing takes it under mu_.
  absl::Mutex listeners_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  int64_t next_handle_ ABSL_GUARDED_BY(listeners_mu_) = 1;
  std::map<int64_t, Listener> listeners_ ABSL_GUARDED_BY(listeners_mu_);
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_EXPERIMENT_LOG_H_
