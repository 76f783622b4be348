// Sizes in bytes as people write and read them: "6GiB", "512MiB", "1.5 GiB".
#ifndef GRADLAB_COMMON_BYTE_SIZE_H_
#define GRADLAB_COMMON_BYTE_SIZE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradlab {

// "1.2 GiB", "640 MiB", "12 KiB", "512 B": three significant digits at most.
std::string FormatBytes(int64_t bytes);

// A number (decimals allowed) and a unit: B, KiB, MiB, GiB, TiB (or K, M, G, T, with or
// without a trailing B or iB, all powers of 1024), spaces allowed between. INVALID_ARGUMENT
// naming `what` and the forms allowed otherwise.
absl::StatusOr<int64_t> ParseBytes(absl::string_view text, absl::string_view what);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_BYTE_SIZE_H_
