#include "common/client_text.h"

#include <string>

#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(ClientTextTest, ShortTextIsQuotedWhole) {
  EXPECT_EQ(QuoteClientText("abc"), "\"abc\"");
  EXPECT_EQ(QuoteClientText(""), "\"\"");
  EXPECT_EQ(QuoteClientText(std::string(100, 'x')), "\"" + std::string(100, 'x') + "\"");
}

TEST(ClientTextTest, LongTextIsCutAfterAHundredCharactersSayingItsLength) {
  EXPECT_EQ(QuoteClientText(std::string(10000, 'x')),
            "\"" + std::string(100, 'x') + "…\" (10000 bytes)");
}

TEST(ClientTextTest, CharactersAreCodePointsAndNeverCutInside) {
  std::string cjk;
  for (int i = 0; i < 200; ++i) cjk += "字";  // 3 bytes each
  EXPECT_EQ(CharacterCount(cjk), 200u);
  std::string hundred;
  for (int i = 0; i < 100; ++i) hundred += "字";
  EXPECT_EQ(QuoteClientText(cjk), "\"" + hundred + "…\" (600 bytes)");
  EXPECT_EQ(CharacterCount("a\xff"
                           "b"),
            3u);  // a stray byte counts as one
}

TEST(ClientTextTest, KeptTextIsCutAtItsLimitNeverInsideACharacter) {
  EXPECT_EQ(CutClientText("a rank failed", 1000), "a rank failed");
  std::string cjk;
  for (int i = 0; i < 5; ++i) cjk += "字";
  EXPECT_EQ(CutClientText(cjk, 2), "字字… (15 bytes in all)");
  EXPECT_EQ(CutClientText(cjk, 5), cjk);
}

}  // namespace
}  // namespace gradlab
