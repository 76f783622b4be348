// MemoryRendezvousStore: c10d's store operations as ProcessGroupGloo uses them, and the
// limits that keep a group's store small whatever its ranks send.
#include "server/engine/rendezvous_store.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

TEST(MemoryRendezvousStoreTest, KeepsWhatRanksSetAndAnswersAtOnce) {
  MemoryRendezvousStore store;
  EXPECT_EQ(store.Get("rank_1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(*store.Check({"rank_0", "rank_1"}));
  ASSERT_TRUE(store.Set("rank_0", std::string("\0addr", 5)).ok());
  ASSERT_TRUE(store.Set("rank_1", "b").ok());
  EXPECT_TRUE(*store.Check({"rank_0", "rank_1"}));
  EXPECT_EQ(*store.Get("rank_0"), std::string("\0addr", 5)) << "values are bytes";
  EXPECT_EQ(*store.KeyCount(), 2);
  EXPECT_TRUE(*store.Delete("rank_1"));
  EXPECT_FALSE(*store.Delete("rank_1"));
  EXPECT_EQ(*store.KeyCount(), 1);
}

TEST(MemoryRendezvousStoreTest, AddAndCompareSetAreC10dsOwn) {
  MemoryRendezvousStore store;
  EXPECT_EQ(*store.Add("count", 2), 2);
  EXPECT_EQ(*store.Add("count", -5), -3);
  EXPECT_EQ(*store.Get("count"), "-3") << "decimal text, as c10d keeps it";
  ASSERT_TRUE(store.Set("text", "abc").ok());
  EXPECT_EQ(store.Add("text", 1).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store.Set("big", "9223372036854775807").ok());
  EXPECT_EQ(store.Add("big", 1).status().code(), absl::StatusCode::kOutOfRange);

  EXPECT_EQ(*store.CompareSet("k", "x", "y"), "x") << "absent, expected not empty: unchanged";
  EXPECT_FALSE(*store.Check({"k"}));
  EXPECT_EQ(*store.CompareSet("k", "", "first"), "first") << "absent, expected empty: set";
  EXPECT_EQ(*store.CompareSet("k", "wrong", "second"), "first");
  EXPECT_EQ(*store.CompareSet("k", "first", "second"), "second");
}

TEST(MemoryRendezvousStoreTest, KeysValuesAndTheirNumberAreBounded) {
  MemoryRendezvousStore store;
  absl::Status status = store.Set(std::string(5000, 'k'), "v");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("a rendezvous key must have 1 to 1024 bytes"));
  EXPECT_LT(status.message().size(), 300u) << "the key is quoted cut";
  EXPECT_EQ(store.Set("", "v").code(), absl::StatusCode::kInvalidArgument);
  status = store.Set("k", std::string(MemoryRendezvousStore::kMaxValueBytes + 1, 'v'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("at most 65536 bytes"));
  for (size_t i = 0; i < MemoryRendezvousStore::kMaxKeys; ++i) {
    ASSERT_TRUE(store.Set("key" + std::to_string(i), "v").ok()) << i;
  }
  status = store.Set("one-more", "v");
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("its most keys (4096)"));
  EXPECT_EQ(store.Add("one-more", 1).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(store.Set("key7", "replaced").ok()) << "a key it holds may change";
  EXPECT_EQ(*store.KeyCount(), 4096);
}

}  // namespace
}  // namespace gradlab
