#include "server/store/experiment_store.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/store/checkpoint_files.h"
#include "server/store/crc32.h"
#include "server/store/state_marker.h"
#include "server/store/store_format.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using EventKind = ExperimentStore::EventKind;

using store_format::BlobOf;
using store_format::EventChecksum;
using store_format::Guard;
using store_format::kApplicationId;
using store_format::kDatabaseFile;
using store_format::kEventColumns;
using store_format::kReserveFile;
using store_format::kSummaryColumns;
using store_format::MarkerMismatch;
using store_format::OpenReadOnly;
using store_format::ReadEvent;
using store_format::SchemaProblem;
using store_format::StoreInfo;
using store_format::SummaryChecksum;
using store_format::SummaryKind;
using store_format::SummaryProblem;

// Version 2: checksummed rows, the kind of each event (for retention), the store's id and
// transaction count (matched against the marker).
constexpr char kSchema[] = R"sql(
CREATE TABLE experiments (
  id TEXT PRIMARY KEY,
  ordinal INTEGER NOT NULL UNIQUE,   -- creation order
  request_id TEXT NOT NULL,          -- '' when none was given
  record BLOB NOT NULL,              -- gradlab.v1.Experiment
  checksum INTEGER NOT NULL          -- SummaryChecksum
);
CREATE TABLE events (
  experiment_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  kind INTEGER NOT NULL,             -- ExperimentStore::EventKind
  epoch INTEGER NOT NULL,            -- 0 for state changes
  body BLOB NOT NULL,                -- gradlab.v1.GradientSnapshot or gradlab.v1.MetricsEvent
  checksum INTEGER NOT NULL,         -- EventChecksum
  PRIMARY KEY (experiment_id, sequence)
) WITHOUT ROWID;
CREATE TABLE store_info (
  key TEXT PRIMARY KEY,              -- 'store_id', 'commits'
  value NOT NULL
) WITHOUT ROWID;
)sql";

// Version 3 adds the sweeps, each row checked as an experiment's summary is.
constexpr char kSweepsTable[] = R"sql(
CREATE TABLE sweeps (
  id TEXT PRIMARY KEY,
  ordinal INTEGER NOT NULL UNIQUE,   -- creation order
  request_id TEXT NOT NULL,          -- '' when none was given
  record BLOB NOT NULL,              -- gradlab.v1.Sweep
  checksum INTEGER NOT NULL          -- SummaryChecksum
);
)sql";

// Version 4 adds the uploaded models: each row a ModelArtifact (its file is
// models/<id>.pt), checked as a summary is; request_id is ''.
constexpr char kModelsTable[] = R"sql(
CREATE TABLE models (
  id TEXT PRIMARY KEY,               -- the file's sha256 in hex
  ordinal INTEGER NOT NULL UNIQUE,   -- upload order
  request_id TEXT NOT NULL,
  record BLOB NOT NULL,              -- gradlab.v1.ModelArtifact
  checksum INTEGER NOT NULL          -- SummaryChecksum
);
)sql";

// Version 1 (gradlab before checksums) had the same experiments table without its
// checksum, and events with `gradients` (1 for a snapshot) in place of `kind`, without
// checksums.

// Why an existing database (version 4 or older) and the marker beside it cannot be
// opened, or "": reads the schema, the store's id and count, and every summary row.
std::string CheckExisting(SQLite::Database& db, const std::optional<StateMarker>& marker) {
  const int application_id = db.execAndGet("PRAGMA application_id").getInt();
  const int version = db.execAndGet("PRAGMA user_version").getInt();
  const int tables = db.execAndGet("SELECT count(*) FROM sqlite_schema").getInt();
  if (application_id == 0 && tables == 0) {
    if (!marker.has_value()) return "";
    return absl::StrCat("it is empty, but the marker says it had ", marker->commits,
                        " committed transactions: its -wal file held them and was deleted or "
                        "damaged, or the database was replaced");
  }
  if (std::string problem = SchemaProblem(db); !problem.empty()) return problem;
  if (std::string problem = MarkerMismatch(StoreInfo(db), marker); !problem.empty()) {
    return problem;
  }
  if (version < 2) return "";  // summaries get their checksums when it is migrated
  SQLite::Statement rows(db, absl::StrCat("SELECT ", kSummaryColumns, " FROM experiments"));
  while (rows.executeStep()) {
    if (std::string problem = SummaryProblem(rows); !problem.empty()) return problem;
  }
  if (version < 3) return "";
  SQLite::Statement sweeps(db, absl::StrCat("SELECT ", kSummaryColumns, " FROM sweeps"));
  while (sweeps.executeStep()) {
    if (std::string problem = SummaryProblem(sweeps, SummaryKind::kSweep); !problem.empty()) {
      return problem;
    }
  }
  if (version < 4) return "";
  SQLite::Statement models(db, absl::StrCat("SELECT ", kSummaryColumns, " FROM models"));
  while (models.executeStep()) {
    if (std::string problem = SummaryProblem(models, SummaryKind::kModel); !problem.empty()) {
      return problem;
    }
  }
  return "";
}

std::string RecoveryAdvice(const std::string& state_dir) {
  return absl::StrCat(
      "gradlabd has changed nothing in ", state_dir,
      ". To recover: restore the folder from a backup (gradlabd --backup_state), and run "
      "gradlabd --check_state=",
      state_dir, " for a full report of what is damaged");
}

EventKind KindOf(const v1::MetricsEvent& event) {
  if (event.has_batch_progress()) return EventKind::kProgress;
  if (event.has_predictions()) return EventKind::kPredictions;
  return event.has_epoch_metrics() ? EventKind::kEpochMetrics : EventKind::kStateChange;
}

EventKind KindOf(const v1::GradientSnapshot& snapshot) {
  return snapshot.step() == 1 ? EventKind::kFirstSnapshot : EventKind::kSnapshot;
}

// Inserts events (inside the caller's transaction).
void InsertEvents(SQLite::Database& db, const std::string& experiment_id,
                  const std::vector<ExperimentStore::EventRow>& rows) {
  SQLite::Statement insert(db,
                           "INSERT OR REPLACE INTO events "
                           "(experiment_id, sequence, kind, epoch, body, checksum) "
                           "VALUES (?, ?, ?, ?, ?, ?)");
  for (const ExperimentStore::EventRow& row : rows) {
    const int kind = static_cast<int>(row.kind);
    insert.reset();
    insert.bind(1, experiment_id);
    insert.bind(2, static_cast<int64_t>(row.sequence));
    insert.bind(3, kind);
    insert.bind(4, row.epoch);
    insert.bind(5, row.body.data(), static_cast<int>(row.body.size()));
    insert.bind(6, static_cast<int64_t>(
                       EventChecksum(experiment_id, row.sequence, kind, row.epoch, row.body)));
    insert.exec();
  }
}

// Keeps an experiment's newest bounded events as its log does (inside a transaction).
void Prune(SQLite::Database& db, const std::string& experiment_id, const LogRetention& keep) {
  SQLite::Statement prune(
      db,
      "DELETE FROM events WHERE experiment_id = ?1 AND kind = ?2 AND sequence <= "
      "(SELECT sequence FROM events WHERE experiment_id = ?1 AND kind = ?2 "
      "ORDER BY sequence DESC LIMIT 1 OFFSET ?3)");
  for (const auto& [kind, count] : {std::pair{EventKind::kProgress, keep.batch_progress},
                                    std::pair{EventKind::kSnapshot, keep.gradient_snapshots}}) {
    prune.reset();
    prune.bind(1, experiment_id);
    prune.bind(2, static_cast<int>(kind));
    prune.bind(3, static_cast<int64_t>(count));
    prune.exec();
  }
}

// Into the experiments table, or the sweeps or models table (whose rows have the same
// columns).
void InsertSummary(SQLite::Database& db, const std::string& id, int64_t ordinal,
                   const std::string& request_id, absl::string_view record,
                   const char* table = "experiments") {
  SQLite::Statement upsert(db, absl::StrCat("INSERT OR REPLACE INTO ", table,
                                            " (id, ordinal, request_id, record, checksum) "
                                            "VALUES (?, ?, ?, ?, ?)"));
  upsert.bind(1, id);
  upsert.bind(2, static_cast<int64_t>(ordinal));
  upsert.bind(3, request_id);
  upsert.bind(4, record.data(), static_cast<int>(record.size()));
  upsert.bind(5, static_cast<int64_t>(SummaryChecksum(id, ordinal, request_id, record)));
  upsert.exec();
}

std::string NewStoreId() {
  absl::BitGen random;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(random),
                         absl::Uniform<uint64_t>(random));
}

// Version 2's tables in an empty database, or version 1's rows migrated into them
// (inside the caller's transaction).
void CreateOrMigrateToVersion2(SQLite::Database& db, int version) {
  if (version == 1) {
    db.exec("ALTER TABLE experiments RENAME TO experiments_v1");
    db.exec("ALTER TABLE events RENAME TO events_v1");
  }
  db.exec(kSchema);
  if (version == 1) {
    SQLite::Statement summaries(db, "SELECT id, ordinal, request_id, record FROM experiments_v1");
    while (summaries.executeStep()) {
      InsertSummary(db, summaries.getColumn(0).getString(), summaries.getColumn(1).getInt64(),
                    summaries.getColumn(2).getString(), BlobOf(summaries.getColumn(3)));
    }
    // One experiment's rows at a time, each kept as the log keeps them (version 1 kept
    // every event; gradlabd served only what the default retention keeps).
    SQLite::Statement events(db,
                             "SELECT experiment_id, sequence, gradients, epoch, body "
                             "FROM events_v1 ORDER BY experiment_id, sequence");
    std::string id;
    std::vector<ExperimentStore::EventRow> rows;
    auto migrate_rows = [&] {
      if (rows.empty()) return;
      InsertEvents(db, id, rows);
      Prune(db, id, LogRetention{});
      rows.clear();
    };
    while (events.executeStep()) {
      if (events.getColumn(0).getString() != id) {
        migrate_rows();
        id = events.getColumn(0).getString();
      }
      ExperimentStore::EventRow& row = rows.emplace_back();
      row.sequence = events.getColumn(1).getInt64();
      row.epoch = events.getColumn(3).getInt();
      row.body = std::string(BlobOf(events.getColumn(4)));
      if (events.getColumn(2).getInt() != 0) {
        v1::GradientSnapshot snapshot;
        snapshot.ParseFromString(row.body);  // an unparseable one fails its reads as before
        row.kind = KindOf(snapshot);
      } else {
        v1::MetricsEvent event;
        event.ParseFromString(row.body);
        row.kind = KindOf(event);
      }
    }
    migrate_rows();
    db.exec("DROP TABLE experiments_v1");
    db.exec("DROP TABLE events_v1");
  }
  SQLite::Statement info(db,
                         "INSERT INTO store_info (key, value) VALUES ('store_id', ?), "
                         "('commits', 0)");
  info.bind(1, NewStoreId());
  info.exec();
}

// Creates the tables in an empty database, or migrates an older version's rows into
// them, in one transaction: the database is the old one or the new one, never between.
void CreateOrMigrate(SQLite::Database& db, int version) {
  SQLite::Transaction transaction(db);
  if (version < 2) CreateOrMigrateToVersion2(db, version);
  if (version < 3) db.exec(kSweepsTable);
  db.exec(kModelsTable);
  db.exec(absl::StrCat("PRAGMA application_id=", kApplicationId));
  db.exec(absl::StrCat("PRAGMA user_version=", ExperimentStore::kSchemaVersion));
  transaction.commit();
}

// Creates `path` holding `bytes` of allocated disk space, or leaves it as it was.
absl::Status AllocateFile(const std::string& path, int64_t bytes) {
  const std::string temporary = path + ".tmp";
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int error = fd < 0 ? errno : posix_fallocate(fd, 0, bytes);
  if (fd >= 0) {
    if (error == 0 && fsync(fd) != 0) error = errno;
    close(fd);
  }
  if (error == 0 && rename(temporary.c_str(), path.c_str()) != 0) error = errno;
  if (error == 0) return absl::OkStatus();
  unlink(temporary.c_str());
  const std::string message =
      absl::StrCat("cannot allocate ", bytes, " bytes in ", path, ": ", std::strerror(error));
  return error == ENOSPC || error == EDQUOT ? absl::ResourceExhaustedError(message)
                                            : absl::InternalError(message);
}

// Batches progress and snapshots; commits state changes and epochs at once.
class StoreJournal : public EventJournal {
 public:
  StoreJournal(ExperimentStore& store, std::string experiment_id, LogRetention retention)
      : store_(store), experiment_id_(std::move(experiment_id)), retention_(retention) {}
  ~StoreJournal() override { Write(/*prune=*/false).IgnoreError(); }

  absl::Status Record(const v1::MetricsEvent& event) override {
    ExperimentStore::EventRow row{event.sequence(), KindOf(event), 0, event.SerializeAsString()};
    if (event.has_batch_progress()) {
      row.epoch = event.batch_progress().epoch();
      return Add(std::move(row), /*commit=*/false);
    }
    if (event.has_epoch_metrics()) row.epoch = event.epoch_metrics().epoch();
    // Committed at once: a run's checkpoint, written next, must not outlive it.
    if (event.has_predictions()) row.epoch = event.predictions().epoch();
    return Add(std::move(row), /*commit=*/true);
  }

  absl::Status Record(const v1::GradientSnapshot& snapshot) override {
    return Add(
        {snapshot.sequence(), KindOf(snapshot), snapshot.epoch(), snapshot.SerializeAsString()},
        /*commit=*/false);
  }

  absl::Status Flush() override { return Write(/*prune=*/false); }

 private:
  absl::Status Add(ExperimentStore::EventRow row, bool commit) {
    pending_.push_back(std::move(row));
    if (commit) return Write(/*prune=*/true);
    if (pending_.size() >= static_cast<size_t>(kMaxUncommittedEvents)) return Write(false);
    return absl::OkStatus();
  }

  absl::Status Write(bool prune) {
    if (pending_.empty()) return absl::OkStatus();
    absl::Status status =
        store_.WriteEvents(experiment_id_, pending_, prune ? &retention_ : nullptr);
    pending_.clear();  // on failure too: those events are lost, and the caller says so
    return status;
  }

  ExperimentStore& store_;
  const std::string experiment_id_;
  const LogRetention retention_;
  std::vector<ExperimentStore::EventRow> pending_;
};

}  // namespace

ExperimentStore::ExperimentStore(std::string state_dir, std::unique_ptr<StateDirLock> lock,
                                 std::unique_ptr<SQLite::Database> db, std::string store_id,
                                 int64_t commits, StoreOptions options)
    : state_dir_(std::move(state_dir)),
      lock_(std::move(lock)),
      before_write_(std::move(options.before_write)),
      reserve_bytes_(options.reserve_bytes),
      store_id_(std::move(store_id)),
      db_(std::move(db)),
      commits_(commits) {}

ExperimentStore::~ExperimentStore() = default;

std::string ExperimentStore::database_path() const {
  return (fs::path(state_dir_) / kDatabaseFile).string();
}

std::string ExperimentStore::reserve_path() const {
  return (fs::path(state_dir_) / kReserveFile).string();
}

absl::StatusOr<std::unique_ptr<ExperimentStore>> ExperimentStore::Open(const std::string& state_dir,
                                                                       StoreOptions options) {
  std::error_code error;
  fs::create_directories(state_dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the state folder ", state_dir, ": ", error.message()));
  }
  // Before anything is read or written: one server per state folder.
  absl::StatusOr<std::unique_ptr<StateDirLock>> lock = StateDirLock::Acquire(state_dir);
  if (!lock.ok()) return lock.status();
  const std::string path = (fs::path(state_dir) / kDatabaseFile).string();
  const std::string marker_path = (fs::path(state_dir) / StateMarker::kFileName).string();
  auto refuse = [&](absl::string_view problem) {
    return absl::FailedPreconditionError(absl::StrCat("the state database ", path,
                                                      " cannot be used: ", problem, ". ",
                                                      RecoveryAdvice(state_dir)));
  };

  // Every check that can refuse, on handles that write nothing.
  absl::StatusOr<std::optional<StateMarker>> marker = ReadStateMarker(marker_path);
  if (!marker.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(marker.status().message(), ". ", RecoveryAdvice(state_dir)));
  }
  const bool database_present = fs::exists(path, error) && fs::file_size(path, error) > 0;
  if (!database_present && marker->has_value()) {
    return refuse(absl::StrCat("it is missing or empty, but ", marker_path, " says it had ",
                               (*marker)->commits, " committed transactions"));
  }
  if (database_present) {
    std::string problem;
    absl::Status status = Guard("checking", [&] {
      std::unique_ptr<SQLite::Database> db = OpenReadOnly(path);
      problem = CheckExisting(*db, *marker);
    });
    if (!status.ok()) problem = std::string(status.message());
    if (!problem.empty()) return refuse(problem);
  }

  std::unique_ptr<SQLite::Database> db;
  std::optional<StateMarker> info;
  absl::Status status = Guard(absl::StrCat("opening ", path), [&] {
    db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db->exec("PRAGMA journal_mode=WAL");
    // Synced commits: an epoch's metrics are on disk before anyone is told of them.
    db->exec("PRAGMA synchronous=FULL");
    const int version = db->execAndGet("PRAGMA user_version").getInt();
    if (version < kSchemaVersion) {
      if (version > 0) LOG(INFO) << "migrating " << path << " from schema version " << version;
      CreateOrMigrate(*db, version);
    }
    info = StoreInfo(*db);
    if (options.max_pages > 0) db->exec(absl::StrCat("PRAGMA max_page_count=", options.max_pages));
  });
  if (!status.ok()) return status;
  (*lock)->RecordHolder();
  auto store = std::unique_ptr<ExperimentStore>(
      new ExperimentStore(state_dir, *std::move(lock), std::move(db), info->store_id, info->commits,
                          std::move(options)));
  // Both may fail on a full disk; the server starts, and stores only state changes
  // until there is room (a marker behind the database is what a crash leaves too).
  if (absl::Status written = WriteStateMarker(marker_path, *info); !written.ok()) {
    LOG(WARNING) << written;
  }
  {
    absl::MutexLock reserve(&store->mu_);
    store->reserve_in_use_ = true;
  }
  if (absl::Status reserved = store->RestoreReserve(); !reserved.ok()) LOG(WARNING) << reserved;
  return store;
}

absl::Status ExperimentStore::Write(const std::string& what, bool essential,
                                    const std::function<void()>& transaction) {
  if (!essential && reserve_in_use_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "state database: ", what, ": the disk of ", state_dir_,
        " is full; what is left of its reserve is kept for state changes until it has room "
        "again"));
  }
  absl::Status status = Guard(what, transaction);
  if (absl::IsResourceExhausted(status) && essential && !reserve_in_use_ && reserve_bytes_ > 0) {
    // Rolled back: freeing the reserve gives the same transaction room to commit.
    std::error_code error;
    fs::remove(reserve_path(), error);
    reserve_in_use_ = true;
    LOG(WARNING) << "the disk of " << state_dir_ << " is full: released the reserve ("
                 << reserve_bytes_ << " bytes) to store state changes";
    status = Guard(what, transaction);
  }
  if (absl::IsResourceExhausted(status)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(status.message(), "; the state folder is ", state_dir_));
  }
  return status;
}

absl::Status ExperimentStore::WriteEssential(const std::string& what,
                                             const std::function<void()>& statements) {
  absl::Status status = Write(what, true, [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Transaction transaction(*db_);
    statements();
    CountCommit();
    transaction.commit();
  });
  if (status.ok()) UpdateMarker();
  return status;
}

absl::Status ExperimentStore::RestoreReserve(int64_t also_free) {
  absl::MutexLock lock(&mu_);
  if (also_free > 0) {
    struct statvfs disk;
    if (statvfs(state_dir_.c_str(), &disk) == 0 &&
        static_cast<int64_t>(disk.f_bavail * disk.f_frsize) <
            also_free + (reserve_in_use_ ? reserve_bytes_ : 0)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the disk of ", state_dir_, " has ", disk.f_bavail * disk.f_frsize, " bytes free; ",
          also_free + (reserve_in_use_ ? reserve_bytes_ : 0), " are needed"));
    }
  }
  if (!reserve_in_use_) return absl::OkStatus();
  if (reserve_bytes_ > 0) {
    std::error_code error;
    if (fs::file_size(reserve_path(), error) != static_cast<uintmax_t>(reserve_bytes_) || error) {
      if (absl::Status allocated = AllocateFile(reserve_path(), reserve_bytes_); !allocated.ok()) {
        return absl::Status(allocated.code(),
                            absl::StrCat("the state folder ", state_dir_,
                                         " has no room for its reserve: ", allocated.message()));
      }
    }
  }
  reserve_in_use_ = false;
  return absl::OkStatus();
}

void ExperimentStore::CountCommit() {
  SQLite::Statement count(*db_, "UPDATE store_info SET value = ? WHERE key = 'commits'");
  count.bind(1, static_cast<int64_t>(commits_ + 1));
  count.exec();
  // A transaction rolled back after this leaves a gap in the count: only its order matters.
  ++commits_;
}

void ExperimentStore::UpdateMarker() {
  const std::string path = (fs::path(state_dir_) / StateMarker::kFileName).string();
  // Behind the database is safe (a crash can leave it so); it catches up at the next one.
  if (absl::Status status = WriteStateMarker(path, {store_id_, commits_}); !status.ok()) {
    LOG(WARNING) << status;
  }
}

absl::StatusOr<std::vector<StoredExperiment>> ExperimentStore::LoadExperiments() const {
  absl::MutexLock lock(&mu_);
  std::vector<StoredExperiment> experiments;
  std::string problem;
  absl::Status status = Guard("loading", [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Statement rows(*db_,
                           absl::StrCat("SELECT ", kSummaryColumns,
                                        ", (SELECT COALESCE(MAX(sequence), 0) FROM events "
                                        "WHERE experiment_id = experiments.id) FROM experiments "
                                        "ORDER BY ordinal"));
    while (problem.empty() && rows.executeStep()) {
      problem = SummaryProblem(rows);
      StoredExperiment& stored = experiments.emplace_back();
      stored.ordinal = rows.getColumn(1).getInt64();
      stored.request_id = rows.getColumn(2).getString();
      const absl::string_view record = BlobOf(rows.getColumn(3));
      stored.record.ParseFromArray(record.data(), static_cast<int>(record.size()));
      stored.last_sequence = rows.getColumn(5).getInt64();
    }
  });
  if (!status.ok()) return status;
  if (!problem.empty()) return absl::DataLossError(absl::StrCat("state database: ", problem));
  return experiments;
}

absl::StatusOr<StoredEvents> ExperimentStore::LoadEvents(const std::string& experiment_id) const {
  absl::MutexLock lock(&mu_);
  StoredEvents events;
  absl::Status status =
      Guard(absl::StrCat("reading the events of experiment ", experiment_id), [&] {
        mu_.AssertHeld();  // the lambda runs under the lock its caller took
        SQLite::Statement rows(
            *db_, absl::StrCat("SELECT ", kEventColumns,
                               " FROM events WHERE experiment_id = ? ORDER BY sequence"));
        rows.bind(1, experiment_id);
        while (rows.executeStep()) {
          if (std::string problem = ReadEvent(experiment_id, rows, events); !problem.empty()) {
            events.damage = absl::DataLossError(
                absl::StrCat(problem,
                             "; the events before it are intact. gradlabd --check_state "
                             "on a backup of the state folder reports all damage"));
            return;
          }
        }
      });
  if (!status.ok()) return status;
  return events;
}

absl::Status ExperimentStore::SaveExperiment(int64_t ordinal, const std::string& request_id,
                                             const v1::Experiment& record) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("record");
  return WriteEssential(absl::StrCat("saving experiment ", record.id()), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    InsertSummary(*db_, record.id(), ordinal, request_id, record.SerializeAsString());
  });
}

std::unique_ptr<EventJournal> ExperimentStore::Journal(const std::string& experiment_id,
                                                       LogRetention retention) {
  return std::make_unique<StoreJournal>(*this, experiment_id, retention);
}

absl::Status ExperimentStore::WriteEvents(const std::string& experiment_id,
                                          const std::vector<EventRow>& rows,
                                          const LogRetention* prune) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("events");
  const bool essential = std::any_of(rows.begin(), rows.end(), [](const EventRow& row) {
    return row.kind == EventKind::kStateChange;
  });
  absl::Status status =
      Write(absl::StrCat("writing events of experiment ", experiment_id), essential, [&] {
        mu_.AssertHeld();  // the lambda runs under the lock its caller took
        SQLite::Transaction transaction(*db_);
        InsertEvents(*db_, experiment_id, rows);
        if (prune != nullptr) Prune(*db_, experiment_id, *prune);
        CountCommit();
        transaction.commit();
      });
  if (status.ok() && prune != nullptr) UpdateMarker();
  return status;
}

absl::Status ExperimentStore::DropEventsAfterEpoch(const std::string& experiment_id, int epoch) {
  absl::MutexLock lock(&mu_);
  return WriteEssential(
      absl::StrCat("dropping the partial epoch of experiment ", experiment_id), [&] {
        mu_.AssertHeld();  // the lambda runs under the lock its caller took
        SQLite::Statement drop(*db_, "DELETE FROM events WHERE experiment_id = ? AND epoch > ?");
        drop.bind(1, experiment_id);
        drop.bind(2, epoch);
        drop.exec();
      });
}

absl::Status ExperimentStore::DeleteExperiment(const std::string& experiment_id) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("delete");
  return WriteEssential(absl::StrCat("deleting experiment ", experiment_id), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Statement events(*db_, "DELETE FROM events WHERE experiment_id = ?");
    events.bind(1, experiment_id);
    events.exec();
    SQLite::Statement record(*db_, "DELETE FROM experiments WHERE id = ?");
    record.bind(1, experiment_id);
    record.exec();
  });
}

absl::StatusOr<std::vector<StoredSweep>> ExperimentStore::LoadSweeps() const {
  absl::MutexLock lock(&mu_);
  std::vector<StoredSweep> sweeps;
  std::string problem;
  absl::Status status = Guard("loading sweeps", [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Statement rows(
        *db_, absl::StrCat("SELECT ", kSummaryColumns, " FROM sweeps ORDER BY ordinal"));
    while (problem.empty() && rows.executeStep()) {
      problem = SummaryProblem(rows, SummaryKind::kSweep);
      StoredSweep& stored = sweeps.emplace_back();
      stored.ordinal = rows.getColumn(1).getInt64();
      stored.request_id = rows.getColumn(2).getString();
      const absl::string_view record = BlobOf(rows.getColumn(3));
      stored.record.ParseFromArray(record.data(), static_cast<int>(record.size()));
    }
  });
  if (!status.ok()) return status;
  if (!problem.empty()) return absl::DataLossError(absl::StrCat("state database: ", problem));
  return sweeps;
}

absl::Status ExperimentStore::SaveSweep(const StoredSweep& sweep,
                                        const std::vector<StoredExperiment>& new_runs) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("record");
  return WriteEssential(absl::StrCat("saving sweep ", sweep.record.id()), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    for (const StoredExperiment& run : new_runs) {
      InsertSummary(*db_, run.record.id(), run.ordinal, run.request_id,
                    run.record.SerializeAsString());
    }
    InsertSummary(*db_, sweep.record.id(), sweep.ordinal, sweep.request_id,
                  sweep.record.SerializeAsString(), "sweeps");
  });
}

absl::Status ExperimentStore::DeleteSweep(const std::string& sweep_id) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("delete");
  return WriteEssential(absl::StrCat("deleting sweep ", sweep_id), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Statement record(*db_, "DELETE FROM sweeps WHERE id = ?");
    record.bind(1, sweep_id);
    record.exec();
  });
}

absl::StatusOr<std::vector<StoredModel>> ExperimentStore::LoadModels() const {
  absl::MutexLock lock(&mu_);
  std::vector<StoredModel> models;
  std::string problem;
  absl::Status status = Guard("loading models", [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Statement rows(
        *db_, absl::StrCat("SELECT ", kSummaryColumns, " FROM models ORDER BY ordinal"));
    while (problem.empty() && rows.executeStep()) {
      problem = SummaryProblem(rows, SummaryKind::kModel);
      StoredModel& stored = models.emplace_back();
      stored.ordinal = rows.getColumn(1).getInt64();
      const absl::string_view record = BlobOf(rows.getColumn(3));
      stored.record.ParseFromArray(record.data(), static_cast<int>(record.size()));
    }
  });
  if (!status.ok()) return status;
  if (!problem.empty()) return absl::DataLossError(absl::StrCat("state database: ", problem));
  return models;
}

absl::Status ExperimentStore::SaveModel(const StoredModel& model) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("record");
  return WriteEssential(absl::StrCat("saving model ", model.record.id()), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    InsertSummary(*db_, model.record.id(), model.ordinal, "", model.record.SerializeAsString(),
                  "models");
  });
}

absl::Status ExperimentStore::DeleteModel(const std::string& model_id) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("delete");
  return WriteEssential(absl::StrCat("deleting model ", model_id), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Statement record(*db_, "DELETE FROM models WHERE id = ?");
    record.bind(1, model_id);
    record.exec();
  });
}

}  // namespace gradlab
