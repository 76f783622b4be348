#include "common/request_limits.h"

#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/client_text.h"

namespace gradlab {

absl::StatusOr<int> PageSize(int64_t requested) {
  if (requested < 0 || requested > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: ", requested, " is out of range [0, ", kMaxPageSize, "]"));
  }
  return requested == 0 ? kDefaultPageSize : static_cast<int>(requested);
}

absl::StatusOr<int64_t> OrdinalsBefore(absl::string_view page_token) {
  int64_t before = INT64_MAX;
  if (!page_token.empty() && (!absl::SimpleAtoi(page_token, &before) || before <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("page_token: ", QuoteClientText(page_token),
                                                   " is not a token this server gave out"));
  }
  return before;
}

absl::Status CheckStreamStart(absl::string_view field, int64_t value) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", value, " is negative; 0 replays from the start"));
}

absl::StatusOr<int64_t> SequenceAfterLastEventId(absl::string_view header) {
  int64_t last = 0;
  if (!absl::SimpleAtoi(header, &last) || last < 0) {
    return absl::InvalidArgumentError(absl::StrCat("Last-Event-ID: ", QuoteClientText(header),
                                                   " is not an event sequence number (an "
                                                   "integer >= 0)"));
  }
  return last == std::numeric_limits<int64_t>::max() ? last : last + 1;
}

}  // namespace gradlab
