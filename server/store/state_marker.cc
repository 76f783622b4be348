#include "server/store/state_marker.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "server/store/checkpoint_files.h"
#include "server/store/crc32.h"

namespace gradlab {
namespace {

constexpr char kFirstLine[] = "gradlab state marker 1";

std::string Body(const StateMarker& marker) {
  return absl::StrCat(kFirstLine, "\nstore_id ", marker.store_id, "\ncommits ", marker.commits,
                      "\n");
}

}  // namespace

absl::StatusOr<std::optional<StateMarker>> ReadStateMarker(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    if (errno == ENOENT) return std::nullopt;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  const std::string text = std::move(contents).str();
  auto damaged = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("the state marker ", path, " is damaged: ", why));
  };
  // Four lines: the first, store_id, commits, and the CRC-32 of the three before it.
  const size_t crc_line = text.rfind("crc32 ");
  if (crc_line == std::string::npos) return damaged("it has no checksum line");
  uint32_t crc = 0;
  if (!absl::SimpleHexAtoi(absl::StripSuffix(text.substr(crc_line + 6), "\n"), &crc) ||
      Crc32(absl::string_view(text).substr(0, crc_line)) != crc) {
    return damaged("its checksum does not match");
  }
  StateMarker marker;
  std::vector<std::string> lines = absl::StrSplit(text.substr(0, crc_line), '\n');
  if (lines.size() != 4 || lines[0] != kFirstLine || !absl::StartsWith(lines[1], "store_id ") ||
      !absl::StartsWith(lines[2], "commits ") ||
      !absl::SimpleAtoi(lines[2].substr(8), &marker.commits)) {
    return damaged("its lines are not those of a gradlab state marker");
  }
  marker.store_id = lines[1].substr(9);
  return marker;
}

absl::Status WriteStateMarker(const std::string& path, const StateMarker& marker) {
  const std::string body = Body(marker);
  return WriteFileAtomically(path,
                             absl::StrCat(body, absl::StrFormat("crc32 %08x\n", Crc32(body))));
}

}  // namespace gradlab
