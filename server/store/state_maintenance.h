// What an operator does to a state folder besides serving it: check all of it, and copy
// it while a server uses it. Both only read the folder.
#ifndef GRADLAB_SERVER_STORE_STATE_MAINTENANCE_H_
#define GRADLAB_SERVER_STORE_STATE_MAINTENANCE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gradlab {

// What a full check of a state folder found (VerifyStateDir).
struct StateReport {
  std::vector<std::string> checked;   // what was read, one line each
  std::vector<std::string> problems;  // what is damaged, one line each
};

// Reads everything in a state folder without writing to it: SQLite's integrity check,
// the marker, every summary's and event's checksum, every checkpoint file's seal. An
// error only when the folder cannot be read at all (or is held by a running server: its
// LOCK is taken, without writing, for the length of the check).
absl::StatusOr<StateReport> VerifyStateDir(const std::string& state_dir);

// Copies a state folder, which a running gradlabd may be using, into `destination`
// (which must not exist or be empty): the database as one consistent snapshot (SQLite's
// backup API), then the checkpoint files, then a marker for the copy. A server opened on
// the copy has every experiment as the snapshot saw it; runs that were under way go on
// from their newest checkpoint.
absl::Status BackUpStateDir(const std::string& state_dir, const std::string& destination);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_STATE_MAINTENANCE_H_
