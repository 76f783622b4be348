#include "server/auth/client_limits.h"

#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(ClientLimitsTest, StreamsPerClientAreCountedAndFreedWhenClosed) {
  ClientLimits limits(ClientLimitOptions{/*max_streams_per_client=*/2, 0});
  auto first = limits.OpenStream("10.0.0.1");
  auto second = limits.OpenStream("10.0.0.1");
  ASSERT_TRUE(first.ok() && second.ok());
  absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> third = limits.OpenStream("10.0.0.1");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("--max_streams_per_client"), absl::string_view::npos);
  EXPECT_TRUE(limits.OpenStream("10.0.0.2").ok()) << "another client has its own count";
  first->reset();
  EXPECT_TRUE(limits.OpenStream("10.0.0.1").ok());
}

TEST(ClientLimitsTest, StartsPerMinutePerCallerOverASlidingMinute) {
  absl::Time now = absl::FromUnixSeconds(1000);
  ClientLimits limits(ClientLimitOptions{0, /*max_starts_per_minute=*/3, [&] { return now; }});
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limits.AllowStart("token-a").ok());
    now += absl::Seconds(10);
  }
  absl::Status refused = limits.AllowStart("token-a");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("try again in 30 s"), absl::string_view::npos) << refused;
  EXPECT_EQ(refused.message().find("token-a"), absl::string_view::npos) << "the caller was shown";
  EXPECT_TRUE(limits.AllowStart("token-b").ok()) << "another caller has its own budget";
  now += absl::Seconds(30);  // the first start is now a minute old
  EXPECT_TRUE(limits.AllowStart("token-a").ok());
  EXPECT_FALSE(limits.AllowStart("token-a").ok());
}

TEST(ClientLimitsTest, ZeroMeansNoLimit) {
  ClientLimits limits(ClientLimitOptions{0, 0});
  std::vector<std::unique_ptr<ClientLimits::StreamSlot>> slots;
  for (int i = 0; i < 1000; ++i) {
    auto slot = limits.OpenStream("x");
    ASSERT_TRUE(slot.ok());
    slots.push_back(*std::move(slot));
    ASSERT_TRUE(limits.AllowStart("x").ok());
  }
}

}  // namespace
}  // namespace gradlab
