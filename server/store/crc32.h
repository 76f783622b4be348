// CRC-32 (zlib's polynomial) of bytes, chainable: Crc32(b, Crc32(a)) is the CRC of a + b.
#ifndef GRADLAB_SERVER_STORE_CRC32_H_
#define GRADLAB_SERVER_STORE_CRC32_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace gradlab {

uint32_t Crc32(absl::string_view bytes, uint32_t crc = 0);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_CRC32_H_
