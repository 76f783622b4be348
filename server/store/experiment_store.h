// gradlabd's state on disk: one SQLite database (WAL mode, synced commits) holding every
// experiment's record and every event of its streams, under --state_dir. Checkpoint files
// live beside it (see checkpoint_files.h). Knows nothing of training or gRPC.
#ifndef GRADLAB_SERVER_STORE_EXPERIMENT_STORE_H_
#define GRADLAB_SERVER_STORE_EXPERIMENT_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/store/event_journal.h"
#include "server/store/state_dir_lock.h"

namespace SQLite {
class Database;
}

namespace gradlab {

struct StoreOptions {
  // Fault injection for tests: the database may grow to this many pages (of 4 KiB), after
  // which writes fail as they would on a full disk. 0: no limit.
  int64_t max_pages = 0;
  // Fault injection for tests: runs before each write, with what it writes ("record",
  // "events" or "delete"), under the store's lock, as a slow disk would hold it.
  std::function<void(absl::string_view what)> before_write;
};

// One experiment as stored: its record and its events, in sequence order.
struct StoredExperiment {
  int64_t ordinal = 0;  // creation order
  std::string request_id;
  v1::Experiment record;
  std::vector<v1::MetricsEvent> metrics;
  std::vector<v1::GradientSnapshot> gradients;
  int64_t last_sequence = 0;  // of every stored event of either kind
};

// Thread-safe: one connection, used under a mutex.
class ExperimentStore {
 public:
  // Opens `state_dir`/gradlab.db, creating the folder and the database if they do not
  // exist, and holds the folder's lock (StateDirLock) until the store is destroyed: a
  // second store on the same folder, in this process or another, is INVALID_ARGUMENT. A file there
  // that is not an intact gradlab database is refused (FAILED_PRECONDITION, naming the file and
  // what is wrong) before anything is written.
  static absl::StatusOr<std::unique_ptr<ExperimentStore>> Open(const std::string& state_dir,
                                                               StoreOptions options = {});
  ~ExperimentStore();
  ExperimentStore(const ExperimentStore&) = delete;
  ExperimentStore& operator=(const ExperimentStore&) = delete;

  const std::string& state_dir() const { return state_dir_; }
  std::string database_path() const;

  // Every experiment, oldest first, with its events.
  absl::StatusOr<std::vector<StoredExperiment>> LoadAll() const ABSL_LOCKS_EXCLUDED(mu_);

  // Inserts or replaces an experiment's record; committed and synced on return.
  absl::Status SaveExperiment(int64_t ordinal, const std::string& request_id,
                              const v1::Experiment& record) ABSL_LOCKS_EXCLUDED(mu_);

  // A journal that appends to `experiment_id`'s events (see EventJournal for batching).
  std::unique_ptr<EventJournal> Journal(const std::string& experiment_id);

  // Removes the batch progress and gradient snapshots of epochs after `epoch`, and their
  // epoch metrics: what a run resumed from the checkpoint of `epoch` will log again.
  absl::Status DropEventsAfterEpoch(const std::string& experiment_id, int epoch)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Removes an experiment's record and events.
  absl::Status DeleteExperiment(const std::string& experiment_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Events as the journal writes them: one transaction, committed and synced.
  struct EventRow {
    int64_t sequence = 0;
    bool gradients = false;  // a GradientSnapshot, else a MetricsEvent
    int epoch = 0;           // 0 for state changes
    std::string body;        // the serialized message
  };
  absl::Status WriteEvents(const std::string& experiment_id, const std::vector<EventRow>& rows)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  ExperimentStore(std::string state_dir, std::unique_ptr<StateDirLock> lock,
                  std::unique_ptr<SQLite::Database> db,
                  std::function<void(absl::string_view)> before_write);
  void BeforeWrite(absl::string_view what) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (before_write_) before_write_(what);
  }

  const std::string state_dir_;
  const std::unique_ptr<StateDirLock> lock_;  // held while the store is open
  const std::function<void(absl::string_view)> before_write_;
  mutable absl::Mutex mu_;
  std::unique_ptr<SQLite::Database> db_ ABSL_GUARDED_BY(mu_) ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_EXPERIMENT_STORE_H_
