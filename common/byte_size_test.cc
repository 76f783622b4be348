#include "common/byte_size.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(FormatBytesTest, ThreeSignificantDigitsInTheLargestUnit) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(12 * 1024), "12 KiB");
  EXPECT_EQ(FormatBytes(int64_t{640} << 20), "640 MiB");
  EXPECT_EQ(FormatBytes((int64_t{6} << 30) + (int64_t{200} << 20)), "6.2 GiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 40), "3.0 TiB");
}

TEST(ParseBytesTest, NumbersWithUnits) {
  EXPECT_EQ(*ParseBytes("6GiB", "--max_run_memory"), int64_t{6} << 30);
  EXPECT_EQ(*ParseBytes("512 MiB", "x"), int64_t{512} << 20);
  EXPECT_EQ(*ParseBytes("1.5G", "x"), int64_t{3} << 29);
  EXPECT_EQ(*ParseBytes("2gb", "x"), int64_t{2} << 30);
  EXPECT_EQ(*ParseBytes("100", "x"), 100);
  EXPECT_EQ(*ParseBytes("4096B", "x"), 4096);
  EXPECT_EQ(*ParseBytes("64k", "x"), 64 * 1024);
}

TEST(ParseBytesTest, AnythingElseIsRefusedSayingWhatIsAllowed) {
  for (const char* text : {"", "GiB", "-1GiB", "6 apples", "1e3", "6 PiB", "99999999999T"}) {
    absl::StatusOr<int64_t> parsed = ParseBytes(text, "--max_run_memory");
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(parsed.status().message()),
                ::testing::HasSubstr("--max_run_memory: \"" + std::string(text) +
                                     "\" is not a size; write a number and a unit"));
  }
}

}  // namespace
}  // namespace gradlab
