// The layout of gradlab.db, shared by the live store (experiment_store.cc) and the offline
// tools (state_maintenance.cc): file names, checksums of rows, a handle that writes
// nothing, and the one place where SQLite's exceptions become statuses.
#ifndef GRADLAB_SERVER_STORE_STORE_FORMAT_H_
#define GRADLAB_SERVER_STORE_STORE_FORMAT_H_

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/store/experiment_store.h"
#include "server/store/state_marker.h"

namespace gradlab::store_format {

inline constexpr char kDatabaseFile[] = "gradlab.db";
inline constexpr char kReserveFile[] = "gradlab.reserve";
inline constexpr char kCheckpointsFolder[] = "checkpoints";
inline constexpr char kModelsFolder[] = "models";
inline constexpr int kApplicationId = 0x67726164;  // "grad"

// The columns SummaryProblem and ReadEvent take, in this order.
inline constexpr char kSummaryColumns[] = "id, ordinal, request_id, record, checksum";
inline constexpr char kEventColumns[] = "sequence, kind, epoch, body, checksum";

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

uint32_t SummaryChecksum(const std::string& id, int64_t ordinal, const std::string& request_id,
                         absl::string_view record);
uint32_t EventChecksum(const std::string& experiment_id, int64_t sequence, int kind, int epoch,
                       absl::string_view body);

absl::string_view BlobOf(const SQLite::Column& column);

// A handle on an existing database that writes nothing to any file, yet sees what its WAL
// holds (see the .cc for how).
std::unique_ptr<SQLite::Database> OpenReadOnly(const std::string& path);

// The store's id and transaction count; nullopt before schema version 2.
std::optional<StateMarker> StoreInfo(SQLite::Database& db);

// Why the database (`db`, holding `info` from StoreInfo) is not the one `marker` counts, or
// "": another store's, or one missing transactions the marker counted.
std::string MarkerMismatch(const std::optional<StateMarker>& info,
                           const std::optional<StateMarker>& marker);

// Why a database with tables cannot be read as gradlab's, or "": another program's, or a
// newer schema than this binary's.
std::string SchemaProblem(SQLite::Database& db);

// The tables whose rows are summaries (columns kSummaryColumns): an id, a creation
// ordinal, a request id, the record and its checksum.
enum class SummaryKind { kExperiment, kSweep, kModel };

// What is wrong with a summary row of the table of `kind`, or "".
std::string SummaryProblem(const SQLite::Statement& row,
                           SummaryKind kind = SummaryKind::kExperiment);

// Checks an event row (columns kEventColumns) and appends it, parsed, to `events`; or
// returns what is wrong with it and appends nothing.
std::string ReadEvent(const std::string& experiment_id, const SQLite::Statement& row,
                      StoredEvents& events);

}  // namespace gradlab::store_format

#endif  // GRADLAB_SERVER_STORE_STORE_FORMAT_H_
