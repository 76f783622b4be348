#include "common/request_limits.h"

#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(RequestLimitsTest, PageSizesFromZeroToTheMaximum) {
  EXPECT_EQ(*PageSize(0), kDefaultPageSize);
  EXPECT_EQ(*PageSize(1), 1);
  EXPECT_EQ(*PageSize(1000), 1000);
  EXPECT_EQ(PageSize(1001).status(),
            absl::InvalidArgumentError("page_size: 1001 is out of range [0, 1000]"));
  EXPECT_EQ(PageSize(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RequestLimitsTest, StreamStartsAreZeroOrMore) {
  EXPECT_TRUE(CheckStreamStart("from_sequence", 0).ok());
  EXPECT_TRUE(CheckStreamStart("from_step", INT64_MAX).ok());
  EXPECT_EQ(CheckStreamStart("from_sequence", -1),
            absl::InvalidArgumentError("from_sequence: -1 is negative; 0 replays from the start"));
}

TEST(RequestLimitsTest, LastEventIdGoesOnAfterItWithoutOverflow) {
  EXPECT_EQ(*SequenceAfterLastEventId("0"), 1);
  EXPECT_EQ(*SequenceAfterLastEventId("41"), 42);
  EXPECT_EQ(*SequenceAfterLastEventId("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(SequenceAfterLastEventId("9223372036854775808").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SequenceAfterLastEventId("-1").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SequenceAfterLastEventId("x").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gradlab
