// What clients may ask of lists and streams, checked by the gRPC and the HTTP faces alike
// so that both give the same answer: out of range is INVALID_ARGUMENT (HTTP 400), a
// position past the end gives nothing, and no value overflows.
#ifndef GRADLAB_COMMON_REQUEST_LIMITS_H_
#define GRADLAB_COMMON_REQUEST_LIMITS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradlab {

inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 1000;

// ListExperiments' and ListSweeps' page size: 0 (kDefaultPageSize) to kMaxPageSize.
absl::StatusOr<int> PageSize(int64_t requested);

// Lists page by creation order, newest first: a page token is the ordinal of the last item
// of the previous page. The ordinals before which the next page starts: every one for an
// empty token; INVALID_ARGUMENT for a token this server cannot have given out.
absl::StatusOr<int64_t> OrdinalsBefore(absl::string_view page_token);

// Where a stream starts (`field`: from_sequence or from_step): 0 or more.
absl::Status CheckStreamStart(absl::string_view field, int64_t value);

// The from_sequence after an event stream's Last-Event-ID header (the text of a sequence
// number, 0 or more): the next one; after the largest there is none, and nothing is sent.
absl::StatusOr<int64_t> SequenceAfterLastEventId(absl::string_view header);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_REQUEST_LIMITS_H_
