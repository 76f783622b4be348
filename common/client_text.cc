#include "common/client_text.h"

#include "absl/strings/str_cat.h"

namespace gradlab {
namespace {

bool IsContinuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// The byte offset after the first `characters` characters of `text`.
size_t PrefixBytes(absl::string_view text, size_t characters) {
  size_t offset = 0;
  for (size_t counted = 0; offset < text.size() && counted < characters; ++counted) {
    ++offset;
    while (offset < text.size() && IsContinuation(static_cast<unsigned char>(text[offset]))) {
      ++offset;
    }
  }
  return offset;
}

}  // namespace

size_t CharacterCount(absl::string_view text) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (!IsContinuation(static_cast<unsigned char>(text[i]))) ++count;
  }
  return count;
}

std::string CutClientText(absl::string_view text, size_t max_characters) {
  const size_t kept = PrefixBytes(text, max_characters);
  if (kept == text.size()) return std::string(text);
  return absl::StrCat(text.substr(0, kept), "… (", text.size(), " bytes in all)");
}

std::string QuoteClientText(absl::string_view text) {
  const size_t kept = PrefixBytes(text, kMaxQuotedCharacters);
  if (kept == text.size()) return absl::StrCat("\"", text, "\"");
  return absl::StrCat("\"", text.substr(0, kept), "…\" (", text.size(), " bytes)");
}

}  // namespace gradlab
