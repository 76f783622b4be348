// What the state folder's files share: errno as a status, and syncing a folder after a
// rename in it.
#ifndef GRADLAB_SERVER_STORE_FILE_IO_H_
#define GRADLAB_SERVER_STORE_FILE_IO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace gradlab {

// "cannot WHAT PATH: strerror(errno)": RESOURCE_EXHAUSTED for a full disk or quota (a
// shortage that passes, not a fault of the file), INTERNAL otherwise.
absl::Status FileError(absl::string_view what, const std::string& path);

// fsync of the folder itself, so that a rename in it survives a crash.
absl::Status SyncFolder(const std::string& dir);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_FILE_IO_H_
