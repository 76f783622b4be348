// The sha256 of bytes in lower-case hex: what uploaded models are named by (their id).
#ifndef GRADLAB_COMMON_SHA256_H_
#define GRADLAB_COMMON_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace gradlab {

std::string Sha256Hex(absl::string_view bytes);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_SHA256_H_
