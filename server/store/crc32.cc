#include "server/store/crc32.h"

#include <zlib.h>

#include <algorithm>

namespace gradlab {

uint32_t Crc32(absl::string_view bytes, uint32_t crc) {
  uLong value = crc;
  // zlib takes lengths as uInt; feed large payloads in pieces.
  for (size_t offset = 0; offset < bytes.size(); offset += 1u << 30) {
    const size_t n = std::min<size_t>(bytes.size() - offset, 1u << 30);
    value =
        crc32(value, reinterpret_cast<const Bytef*>(bytes.data() + offset), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(value);
}

}  // namespace gradlab
