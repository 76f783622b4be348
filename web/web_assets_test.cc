#include "web/web_assets.h"

#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(WebAssetsTest, TheDashboardAndUPlotAreCompiledInWithTheirTypes) {
  const WebAsset* index = FindWebAsset("index.html");
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(index->content_type, "text/html; charset=utf-8");
  EXPECT_NE(index->content.find("dashboard.js"), absl::string_view::npos);
  const WebAsset* uplot = FindWebAsset("uPlot.iife.min.js");
  ASSERT_NE(uplot, nullptr);
  EXPECT_EQ(uplot->content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(uplot->content.find("uPlot"), absl::string_view::npos);
  EXPECT_GT(uplot->content.size(), 10000u);
  EXPECT_EQ(FindWebAsset("uPlot.min.css")->content_type, "text/css; charset=utf-8");
}

TEST(WebAssetsTest, UnknownNamesAreNotFound) {
  EXPECT_EQ(FindWebAsset("../CMakeLists.txt"), nullptr);
  EXPECT_EQ(FindWebAsset(""), nullptr);
}

}  // namespace
}  // namespace gradlab
