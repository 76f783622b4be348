#include "server/store/store_format.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "server/store/crc32.h"

namespace gradlab::store_format {

namespace fs = std::filesystem;

uint32_t SummaryChecksum(const std::string& id, int64_t ordinal, const std::string& request_id,
                         absl::string_view record) {
  return Crc32(record, Crc32(absl::StrCat(id, "\n", ordinal, "\n", request_id, "\n")));
}

uint32_t EventChecksum(const std::string& experiment_id, int64_t sequence, int kind, int epoch,
                       absl::string_view body) {
  return Crc32(body,
               Crc32(absl::StrCat(experiment_id, "\n", sequence, "\n", kind, "\n", epoch, "\n")));
}

absl::string_view BlobOf(const SQLite::Column& column) {
  return absl::string_view(static_cast<const char*>(column.getBlob()),
                           static_cast<size_t>(column.getBytes()));
}

namespace {

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

bool HasTable(SQLite::Database& db, const char* name) {
  SQLite::Statement query(db, "SELECT count(*) FROM sqlite_schema WHERE type='table' AND name=?");
  query.bind(1, name);
  return query.executeStep() && query.getColumn(0).getInt() > 0;
}

}  // namespace

// A handle on an existing database that writes nothing to any file, yet sees what its WAL
// holds. With a WAL, SQLite's recovery runs in this process's memory: exclusive locking
// mode never creates or reads the -shm index, query_only refuses writes, and the WAL is
// neither checkpointed nor removed on close. Without one, the file alone is the database.
std::unique_ptr<SQLite::Database> OpenReadOnly(const std::string& path) {
  std::error_code error;
  const std::string wal = path + "-wal";
  if (fs::exists(wal, error) && fs::file_size(wal, error) > 0) {
    if (access(path.c_str(), W_OK) != 0) {
      // A read-only file or file system: SQLite's own read-only WAL access (it needs the
      // -shm index that the last writer left).
      return std::make_unique<SQLite::Database>(path, SQLite::OPEN_READONLY);
    }
    auto db = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE);
    sqlite3_db_config(db->getHandle(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    int persist = 1;
    sqlite3_file_control(db->getHandle(), "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    db->exec("PRAGMA locking_mode=EXCLUSIVE");
    db->exec("PRAGMA query_only=1");
    return db;
  }
  return std::make_unique<SQLite::Database>(
      absl::StrCat("file:", UriPath(path), "?mode=ro&immutable=1"),
      SQLite::OPEN_READONLY | SQLite::OPEN_URI);
}

// The store's id and transaction count; nullopt before version 2.
std::optional<StateMarker> StoreInfo(SQLite::Database& db) {
  if (!HasTable(db, "store_info")) return std::nullopt;
  StateMarker info;
  SQLite::Statement query(db, "SELECT key, value FROM store_info");
  while (query.executeStep()) {
    const std::string key = query.getColumn(0).getString();
    if (key == "store_id") info.store_id = query.getColumn(1).getString();
    if (key == "commits") info.commits = query.getColumn(1).getInt64();
  }
  return info;
}

// What a check found wrong with one summary row, or "".
std::string SummaryProblem(const SQLite::Statement& row, SummaryKind kind) {
  const std::string id = row.getColumn(0).getString();
  const absl::string_view record = BlobOf(row.getColumn(3));
  const char* const what = kind == SummaryKind::kSweep   ? "sweep"
                           : kind == SummaryKind::kModel ? "model"
                                                         : "experiment";
  if (SummaryChecksum(id, row.getColumn(1).getInt64(), row.getColumn(2).getString(), record) !=
      static_cast<uint32_t>(row.getColumn(4).getInt64())) {
    return absl::StrCat("the summary of ", what, " ", id, " fails its checksum");
  }
  v1::Experiment experiment;
  v1::Sweep sweep;
  v1::ModelArtifact model;
  google::protobuf::Message& parsed =
      kind == SummaryKind::kSweep   ? static_cast<google::protobuf::Message&>(sweep)
      : kind == SummaryKind::kModel ? static_cast<google::protobuf::Message&>(model)
                                    : experiment;
  if (!parsed.ParseFromArray(record.data(), static_cast<int>(record.size()))) {
    return absl::StrCat("the summary of ", what, " ", id, " does not parse");
  }
  return "";
}

std::string MarkerMismatch(const std::optional<StateMarker>& info,
                           const std::optional<StateMarker>& marker) {
  if (!marker.has_value()) return "";
  if (!info.has_value() || info->store_id != marker->store_id) {
    return absl::StrCat("it is not the database the marker names (store ", marker->store_id,
                        "; this one is ", info.has_value() ? info->store_id : "older",
                        "): it was replaced");
  }
  if (info->commits < marker->commits) {
    return absl::StrCat("it is missing committed transactions: it counts ", info->commits,
                        " where the marker counts ", marker->commits,
                        ". Its -wal file was deleted or damaged, or it was copied back from an "
                        "older state");
  }
  return "";
}

std::string SchemaProblem(SQLite::Database& db) {
  if (db.execAndGet("PRAGMA application_id").getInt() != kApplicationId) {
    return "it is an SQLite database of another program";
  }
  const int version = db.execAndGet("PRAGMA user_version").getInt();
  if (version > ExperimentStore::kSchemaVersion) {
    return absl::StrCat("it has schema version ", version, ", written by a newer gradlabd (",
                        "this one reads up to ", ExperimentStore::kSchemaVersion, ")");
  }
  return "";
}

std::string ReadEvent(const std::string& experiment_id, const SQLite::Statement& row,
                      StoredEvents& events) {
  const int64_t sequence = row.getColumn(0).getInt64();
  const int kind = row.getColumn(1).getInt();
  const absl::string_view body = BlobOf(row.getColumn(3));
  if (EventChecksum(experiment_id, sequence, kind, row.getColumn(2).getInt(), body) !=
      static_cast<uint32_t>(row.getColumn(4).getInt64())) {
    return absl::StrCat("experiment ", experiment_id, ": its stored event ", sequence,
                        " fails its checksum");
  }
  using Kind = ExperimentStore::EventKind;
  const bool snapshot =
      kind == static_cast<int>(Kind::kSnapshot) || kind == static_cast<int>(Kind::kFirstSnapshot);
  const bool parsed = snapshot ? events.gradients.emplace_back().ParseFromArray(
                                     body.data(), static_cast<int>(body.size()))
                               : events.metrics.emplace_back().ParseFromArray(
                                     body.data(), static_cast<int>(body.size()));
  if (parsed) return "";
  snapshot ? events.gradients.pop_back() : events.metrics.pop_back();
  return absl::StrCat("experiment ", experiment_id, ": its stored event ", sequence,
                      " does not parse");
}

}  // namespace gradlab::store_format
