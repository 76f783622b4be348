// gradlabd's state on disk: one SQLite database (WAL mode, synced commits) holding every
// experiment's summary record and the events of its streams, under --state_dir, with a
// marker file beside it (state_marker.h). Checkpoint files live beside them too (see
// checkpoint_files.h). Knows nothing of training or gRPC.
//
// What is checked, and when:
// - Opening reads the schema, every experiment's summary row (each with its CRC-32) and
//   the marker, on a handle that writes nothing (see ReadOnlyDatabase in the .cc), and
//   refuses, leaving every file as it was, a database that is not gradlab's, is newer
//   than this binary, has a damaged summary, or does not match the marker (emptied,
//   replaced, or missing committed transactions, as when its WAL was deleted).
// - Each event carries a CRC-32 checked when it is read (LoadEvents): a damaged one ends
//   that experiment's events there; the rest of the store serves on.
// - VerifyStateDir (state_maintenance.h) reads everything: SQLite's integrity check,
//   every checksum, every checkpoint file.
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
  // Space kept in reserve beside the database (the file gradlab.reserve), so that on a
  // full disk an experiment's state changes are still stored before they are reported:
  // when an essential write (see ExperimentStore) fails for lack of space, the reserve is
  // freed and the write tried again; until RestoreReserve succeeds, only essential writes
  // are tried. 0: no reserve.
  int64_t reserve_bytes = 8 << 20;
};

// One experiment's summary as stored.
struct StoredExperiment {
  int64_t ordinal = 0;  // creation order
  std::string request_id;
  v1::Experiment record;
  int64_t last_sequence = 0;  // of every stored event of either kind
};

// One sweep as stored.
struct StoredSweep {
  int64_t ordinal = 0;  // creation order
  std::string request_id;
  v1::Sweep record;
};

// One uploaded model as stored (its file: ModelFiles).
struct StoredModel {
  int64_t ordinal = 0;  // upload order
  v1::ModelArtifact record;
};

// Thread-safe: one connection, used under a mutex.
class ExperimentStore {
 public:
  // The version of the database's layout this binary writes; it migrates older ones.
  static constexpr int kSchemaVersion = 4;

  // Opens `state_dir`/gradlab.db, creating the folder and the database if they do not
  // exist, and holds the folder's lock (StateDirLock) until the store is destroyed: a
  // second store on the same folder, in this process or another, is INVALID_ARGUMENT. A
  // database that fails the checks above is refused (FAILED_PRECONDITION, naming the file,
  // what is wrong and how to recover) before anything in the folder is written. An older
  // layout is migrated in one transaction.
  static absl::StatusOr<std::unique_ptr<ExperimentStore>> Open(const std::string& state_dir,
                                                               StoreOptions options = {});
  ~ExperimentStore();
  ExperimentStore(const ExperimentStore&) = delete;
  ExperimentStore& operator=(const ExperimentStore&) = delete;

  const std::string& state_dir() const { return state_dir_; }
  std::string database_path() const;

  // Every experiment's summary, oldest first, without its events.
  absl::StatusOr<std::vector<StoredExperiment>> LoadExperiments() const ABSL_LOCKS_EXCLUDED(mu_);
  // One experiment's events (see StoredEvents for damage); an error only when the
  // database cannot be read at all.
  absl::StatusOr<StoredEvents> LoadEvents(const std::string& experiment_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Writes come in two kinds. Essential ones (records, state changes, dropping and
  // deleting) may use the reserve (see StoreOptions); the others (progress, snapshots,
  // epoch metrics) fail at once with RESOURCE_EXHAUSTED while it is in use, so that what
  // is left of it stays for state changes. A write that fails for lack of space is
  // RESOURCE_EXHAUSTED, naming the folder.

  // Puts the reserve back after it was used, when the disk has room for it again, and
  // checks that `also_free` bytes are free beside it: OK when both hold, else
  // RESOURCE_EXHAUSTED saying what is missing.
  absl::Status RestoreReserve(int64_t also_free = 0) ABSL_LOCKS_EXCLUDED(mu_);

  // Inserts or replaces an experiment's record; committed and synced on return.
  absl::Status SaveExperiment(int64_t ordinal, const std::string& request_id,
                              const v1::Experiment& record) ABSL_LOCKS_EXCLUDED(mu_);

  // Every sweep, oldest first.
  absl::StatusOr<std::vector<StoredSweep>> LoadSweeps() const ABSL_LOCKS_EXCLUDED(mu_);
  // Inserts or replaces a sweep's record and, in the same transaction, the records of
  // `new_runs` (a new sweep's experiments: stored all or none); committed and synced on
  // return. Essential.
  absl::Status SaveSweep(const StoredSweep& sweep,
                         const std::vector<StoredExperiment>& new_runs = {})
      ABSL_LOCKS_EXCLUDED(mu_);
  // Removes a sweep's record (not its experiments).
  absl::Status DeleteSweep(const std::string& sweep_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Every uploaded model's record, oldest first.
  absl::StatusOr<std::vector<StoredModel>> LoadModels() const ABSL_LOCKS_EXCLUDED(mu_);
  // Inserts or replaces a model's record; committed and synced on return. Essential.
  absl::Status SaveModel(const StoredModel& model) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status DeleteModel(const std::string& model_id) ABSL_LOCKS_EXCLUDED(mu_);

  // A journal that appends to `experiment_id`'s events (see EventJournal for batching),
  // and keeps of its bounded kinds what `retention` says its log keeps.
  std::unique_ptr<EventJournal> Journal(const std::string& experiment_id,
                                        LogRetention retention = {});

  // Removes the batch progress and gradient snapshots of epochs after `epoch`, and their
  // epoch metrics: what a run resumed from the checkpoint of `epoch` will log again.
  absl::Status DropEventsAfterEpoch(const std::string& experiment_id, int epoch)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Removes an experiment's record and events.
  absl::Status DeleteExperiment(const std::string& experiment_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Events as the journal writes them: one transaction, committed and synced. With
  // `prune`, the bounded kinds beyond it are removed in the same transaction and the
  // marker is rewritten after the commit.
  enum class EventKind {
    kStateChange = 0,    // never pruned
    kProgress = 1,       // batch progress
    kSnapshot = 2,       // gradient snapshots
    kFirstSnapshot = 3,  // the step-1 gradient snapshot: never pruned
    kEpochMetrics = 4,   // never pruned
    kPredictions = 5,    // never pruned
  };
  struct EventRow {
    int64_t sequence = 0;
    EventKind kind = EventKind::kStateChange;
    int epoch = 0;     // 0 for state changes
    std::string body;  // the serialized message
  };
  absl::Status WriteEvents(const std::string& experiment_id, const std::vector<EventRow>& rows,
                           const LogRetention* prune) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  ExperimentStore(std::string state_dir, std::unique_ptr<StateDirLock> lock,
                  std::unique_ptr<SQLite::Database> db, std::string store_id, int64_t commits,
                  StoreOptions options);
  // Runs `transaction` (which throws SQLite's exceptions) and returns its status; see
  // above for what `essential` changes.
  absl::Status Write(const std::string& what, bool essential,
                     const std::function<void()>& transaction) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An essential write: `statements` (which throw SQLite's exceptions) in one transaction,
  // counted, committed and synced, and then in the marker.
  absl::Status WriteEssential(const std::string& what, const std::function<void()>& statements)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string reserve_path() const;
  void BeforeWrite(absl::string_view what) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (before_write_) before_write_(what);
  }
  // Counts a transaction in the database (call inside it) ...
  void CountCommit() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ... and, after it has committed, in the marker.
  void UpdateMarker() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string state_dir_;
  const std::unique_ptr<StateDirLock> lock_;  // held while the store is open
  const std::function<void(absl::string_view)> before_write_;
  const int64_t reserve_bytes_;
  const std::string store_id_;
  mutable absl::Mutex mu_;
  std::unique_ptr<SQLite::Database> db_ ABSL_GUARDED_BY(mu_) ABSL_PT_GUARDED_BY(mu_);
  int64_t commits_ ABSL_GUARDED_BY(mu_);
  bool reserve_in_use_ ABSL_GUARDED_BY(mu_) = false;  // freed, not yet put back
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_EXPERIMENT_STORE_H_
