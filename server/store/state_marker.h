// gradlab.marker: a few lines beside the database that say which database belongs in the
// folder and how many transactions it had committed, rewritten atomically (see
// WriteFileAtomically) after each commit that clients are told of. SQLite cannot tell
// that its file was replaced, emptied, or lost a WAL that held committed transactions;
// the marker can. It is written after the commit it counts, so a crash between the two
// leaves a marker behind the database, never ahead of it.
#ifndef GRADLAB_SERVER_STORE_STATE_MARKER_H_
#define GRADLAB_SERVER_STORE_STATE_MARKER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace gradlab {

struct StateMarker {
  static constexpr char kFileName[] = "gradlab.marker";

  std::string store_id;  // the database's own random id (its store_info table)
  int64_t commits = 0;   // its transaction count when the marker was written
};

// nullopt when there is no marker; DATA_LOSS naming the file when it does not read back
// whole (its own checksum covers it).
absl::StatusOr<std::optional<StateMarker>> ReadStateMarker(const std::string& path);
absl::Status WriteStateMarker(const std::string& path, const StateMarker& marker);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_STATE_MARKER_H_
