#include "server/store/experiment_store.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace gradlab {
namespace {

constexpr char kDatabaseFile[] = "gradlab.db";
constexpr int kApplicationId = 0x67726164;  // "grad"
constexpr int kSchemaVersion = 1;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS experiments (
  id TEXT PRIMARY KEY,
  ordinal INTEGER NOT NULL UNIQUE,   -- creation order
  request_id TEXT NOT NULL,          -- '' when none was given
  record BLOB NOT NULL               -- gradlab.v1.Experiment
);
CREATE TABLE IF NOT EXISTS events (
  experiment_id TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  gradients INTEGER NOT NULL,        -- 1: gradlab.v1.GradientSnapshot, 0: gradlab.v1.MetricsEvent
  epoch INTEGER NOT NULL,            -- 0 for state changes
  body BLOB NOT NULL,
  PRIMARY KEY (experiment_id, sequence)
) WITHOUT ROWID;
)sql";

// The one place where SQLite's exceptions become statuses.
template <typename Body>
absl::Status Guard(absl::string_view what, Body&& body) {
  try {
    body();
    return absl::OkStatus();
  } catch (const SQLite::Exception& e) {
    const std::string message = absl::StrCat("state database: ", what, ": ", e.what());
    switch (e.getErrorCode() & 0xff) {
      case SQLITE_FULL:
        return absl::ResourceExhaustedError(absl::StrCat(message, " (disk full?)"));
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
        return absl::DataLossError(message);
      default:
        return absl::InternalError(message);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("state database: ", what, ": ", e.what()));
  }
}

// A file path as an SQLite URI path.
std::string UriPath(const std::string& path) {
  std::string escaped;
  for (char c : path) {
    if (c == '%' || c == '?' || c == '#') {
      absl::StrAppend(&escaped, "%", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      escaped.push_back(c);
    }
  }
  return escaped;
}

// Checks an existing database without writing anything, not even its WAL index.
absl::Status CheckExisting(const std::string& path) {
  std::string problem;
  absl::Status status = Guard("checking", [&] {
    SQLite::Database db(absl::StrCat("file:", UriPath(path), "?mode=ro&immutable=1"),
                        SQLite::OPEN_READONLY | SQLite::OPEN_URI);
    const std::string check = db.execAndGet("PRAGMA quick_check").getString();
    if (check != "ok") {
      problem = absl::StrCat("its integrity check failed: ", check);
      return;
    }
    const int application_id = db.execAndGet("PRAGMA application_id").getInt();
    const int version = db.execAndGet("PRAGMA user_version").getInt();
    const int tables = db.execAndGet("SELECT count(*) FROM sqlite_schema").getInt();
    if (application_id == 0 && tables == 0) return;  // empty: gradlabd will set it up
    if (application_id != kApplicationId) {
      problem = "it is an SQLite database of another program";
    } else if (version > kSchemaVersion) {
      problem = absl::StrCat("it has schema version ", version, ", written by a newer gradlabd (",
                             "this one reads up to ", kSchemaVersion, ")");
    }
  });
  if (!status.ok()) problem = std::string(status.message());
  if (problem.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the state database ", path, " cannot be used: ", problem,
      ". gradlabd has not changed it. Restore it from a backup, or move it away to start "
      "with an empty state"));
}

template <typename Message>
absl::Status Parse(const SQLite::Column& column, Message& message) {
  if (!message.ParseFromArray(column.getBlob(), column.getBytes())) {
    return absl::DataLossError(absl::StrCat("state database: a stored ",
                                            Message::descriptor()->name(), " does not parse"));
  }
  return absl::OkStatus();
}

// Batches progress and snapshots; commits state changes and epochs at once.
class StoreJournal : public EventJournal {
 public:
  StoreJournal(ExperimentStore& store, std::string experiment_id)
      : store_(store), experiment_id_(std::move(experiment_id)) {}
  ~StoreJournal() override { Flush().IgnoreError(); }

  absl::Status Record(const v1::MetricsEvent& event) override {
    ExperimentStore::EventRow row{event.sequence(), false, 0, event.SerializeAsString()};
    if (event.has_batch_progress()) {
      row.epoch = event.batch_progress().epoch();
      return Add(std::move(row), /*commit=*/false);
    }
    if (event.has_epoch_metrics()) row.epoch = event.epoch_metrics().epoch();
    return Add(std::move(row), /*commit=*/true);
  }

  absl::Status Record(const v1::GradientSnapshot& snapshot) override {
    return Add({snapshot.sequence(), true, snapshot.epoch(), snapshot.SerializeAsString()},
               /*commit=*/false);
  }

  absl::Status Flush() override {
    if (pending_.empty()) return absl::OkStatus();
    absl::Status status = store_.WriteEvents(experiment_id_, pending_);
    pending_.clear();  // on failure too: those events are lost, and the caller says so
    return status;
  }

 private:
  absl::Status Add(ExperimentStore::EventRow row, bool commit) {
    pending_.push_back(std::move(row));
    if (commit || pending_.size() >= static_cast<size_t>(kMaxUncommittedEvents)) return Flush();
    return absl::OkStatus();
  }

  ExperimentStore& store_;
  const std::string experiment_id_;
  std::vector<ExperimentStore::EventRow> pending_;
};

}  // namespace

ExperimentStore::ExperimentStore(std::string state_dir, std::unique_ptr<StateDirLock> lock,
                                 std::unique_ptr<SQLite::Database> db,
                                 std::function<void(absl::string_view)> before_write)
    : state_dir_(std::move(state_dir)),
      lock_(std::move(lock)),
      before_write_(std::move(before_write)),
      db_(std::move(db)) {}

ExperimentStore::~ExperimentStore() = default;

std::string ExperimentStore::database_path() const {
  return (std::filesystem::path(state_dir_) / kDatabaseFile).string();
}

absl::StatusOr<std::unique_ptr<ExperimentStore>> ExperimentStore::Open(const std::string& state_dir,
                                                                       StoreOptions options) {
  std::error_code error;
  std::filesystem::create_directories(state_dir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the state folder ", state_dir, ": ", error.message()));
  }
  // Before anything is read or written: one server per state folder.
  absl::StatusOr<std::unique_ptr<StateDirLock>> lock = StateDirLock::Acquire(state_dir);
  if (!lock.ok()) return lock.status();
  const std::string path = (std::filesystem::path(state_dir) / kDatabaseFile).string();
  if (std::filesystem::exists(path, error) && std::filesystem::file_size(path, error) > 0) {
    if (absl::Status status = CheckExisting(path); !status.ok()) return status;
  }
  std::unique_ptr<SQLite::Database> db;
  absl::Status status = Guard("opening", [&] {
    db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db->exec("PRAGMA journal_mode=WAL");
    // Synced commits: an epoch's metrics are on disk before anyone is told of them.
    db->exec("PRAGMA synchronous=FULL");
    db->exec(absl::StrCat("PRAGMA application_id=", kApplicationId));
    db->exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion));
    db->exec(kSchema);
    if (options.max_pages > 0) db->exec(absl::StrCat("PRAGMA max_page_count=", options.max_pages));
  });
  if (!status.ok()) return status;
  return std::unique_ptr<ExperimentStore>(new ExperimentStore(
      state_dir, *std::move(lock), std::move(db), std::move(options.before_write)));
}

absl::StatusOr<std::vector<StoredExperiment>> ExperimentStore::LoadAll() const {
  absl::MutexLock lock(&mu_);
  std::vector<StoredExperiment> experiments;
  absl::Status parse_status;
  absl::Status status = Guard("loading", [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Statement records(
        *db_, "SELECT ordinal, request_id, record FROM experiments ORDER BY ordinal");
    while (records.executeStep() && parse_status.ok()) {
      StoredExperiment& stored = experiments.emplace_back();
      stored.ordinal = records.getColumn(0).getInt64();
      stored.request_id = records.getColumn(1).getString();
      parse_status = Parse(records.getColumn(2), stored.record);
    }
    SQLite::Statement events(*db_,
                             "SELECT sequence, gradients, body FROM events WHERE experiment_id = ? "
                             "ORDER BY sequence");
    for (StoredExperiment& stored : experiments) {
      if (!parse_status.ok()) break;
      events.reset();
      events.bind(1, stored.record.id());
      while (events.executeStep() && parse_status.ok()) {
        stored.last_sequence = events.getColumn(0).getInt64();
        if (events.getColumn(1).getInt() != 0) {
          parse_status = Parse(events.getColumn(2), stored.gradients.emplace_back());
        } else {
          parse_status = Parse(events.getColumn(2), stored.metrics.emplace_back());
        }
      }
    }
  });
  if (!status.ok()) return status;
  if (!parse_status.ok()) return parse_status;
  return experiments;
}

absl::Status ExperimentStore::SaveExperiment(int64_t ordinal, const std::string& request_id,
                                             const v1::Experiment& record) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("record");
  return Guard(absl::StrCat("saving experiment ", record.id()), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Statement upsert(*db_,
                             "INSERT OR REPLACE INTO experiments (id, ordinal, request_id, record) "
                             "VALUES (?, ?, ?, ?)");
    const std::string bytes = record.SerializeAsString();
    upsert.bind(1, record.id());
    upsert.bind(2, static_cast<int64_t>(ordinal));
    upsert.bind(3, request_id);
    upsert.bind(4, bytes.data(), static_cast<int>(bytes.size()));
    upsert.exec();
  });
}

std::unique_ptr<EventJournal> ExperimentStore::Journal(const std::string& experiment_id) {
  return std::make_unique<StoreJournal>(*this, experiment_id);
}

absl::Status ExperimentStore::WriteEvents(const std::string& experiment_id,
                                          const std::vector<EventRow>& rows) {
  absl::MutexLock lock(&mu_);
  BeforeWrite("events");
  return Guard(absl::StrCat("writing events of experiment ", experiment_id), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Transaction transaction(*db_);
    SQLite::Statement insert(
        *db_,
        "INSERT OR REPLACE INTO events "
        "(experiment_id, sequence, gradients, epoch, body) VALUES (?, ?, ?, ?, ?)");
    for (const EventRow& row : rows) {
      insert.reset();
      insert.bind(1, experiment_id);
      insert.bind(2, static_cast<int64_t>(row.sequence));
      insert.bind(3, row.gradients ? 1 : 0);
      insert.bind(4, row.epoch);
      insert.bind(5, row.body.data(), static_cast<int>(row.body.size()));
      insert.exec();
    }
    transaction.commit();
  });
}

absl::Status ExperimentStore::DropEventsAfterEpoch(const std::string& experiment_id, int epoch) {
  absl::MutexLock lock(&mu_);
  return Guard(absl::StrCat("dropping the partial epoch of experiment ", experiment_id), [&] {
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
  return Guard(absl::StrCat("deleting experiment ", experiment_id), [&] {
    mu_.AssertHeld();  // the lambda runs under the lock its caller took
    SQLite::Transaction transaction(*db_);
    SQLite::Statement events(*db_, "DELETE FROM events WHERE experiment_id = ?");
    events.bind(1, experiment_id);
    events.exec();
    SQLite::Statement record(*db_, "DELETE FROM experiments WHERE id = ?");
    record.bind(1, experiment_id);
    record.exec();
    transaction.commit();
  });
}

}  // namespace gradlab
