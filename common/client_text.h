// Strings a client sent, as errors and logs quote them: never whole, so that a client
// cannot make replies and logs as large as its requests (a 10 KB id, a 100 KB page token).
#ifndef GRADLAB_COMMON_CLIENT_TEXT_H_
#define GRADLAB_COMMON_CLIENT_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace gradlab {

// The most characters of a client's string that an error or a log line quotes.
inline constexpr size_t kMaxQuotedCharacters = 100;

// `text` in double quotes, cut after kMaxQuotedCharacters characters (UTF-8 code points,
// never inside one) with its whole length said: "abc…" (10000 bytes).
std::string QuoteClientText(absl::string_view text);

// `text` whole when it has at most `max_characters` characters; otherwise its first
// `max_characters` (never cut inside one) and "… (N bytes in all)". For a client's longer
// texts that are kept, not quoted (a worker's error message).
std::string CutClientText(absl::string_view text, size_t max_characters);

// The characters (UTF-8 code points) in `text`; a byte that does not start or continue a
// valid sequence counts as one.
size_t CharacterCount(absl::string_view text);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_CLIENT_TEXT_H_
