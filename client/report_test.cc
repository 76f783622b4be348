#include "client/report.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

ReportExperiment Example() {
  ReportExperiment entry;
  entry.experiment.set_id("k3v9x2mq");
  entry.experiment.set_name("</script><b>shallow</b>");
  entry.experiment.mutable_spec()->set_model("simple_cnn");
  v1::MetricsEvent epoch;
  epoch.set_sequence(2);
  epoch.mutable_epoch_metrics()->set_epoch(1);
  epoch.mutable_epoch_metrics()->set_test_accuracy(0.5);
  entry.metrics.push_back(epoch);
  v1::GradientSnapshot snapshot;
  snapshot.set_sequence(1);
  snapshot.set_step(1);
  v1::LayerGradient* layer = snapshot.add_layers();
  layer->set_name("conv1.weight");
  layer->set_grad_norm(0.25);
  entry.gradients.push_back(snapshot);
  return entry;
}

// The text of the element <script id="report-data" ...>.
std::string DataOf(const std::string& html) {
  const size_t open = html.find("id=\"report-data\"");
  const size_t start = html.find('>', open) + 1;
  return html.substr(start, html.find("</script>", start) - start);
}

TEST(ReportTest, CarriesTheDataAsJsonThatSurvivesItsScriptElement) {
  const std::string html =
      RenderReport({}, {Example()}, "127.0.0.1:50051", absl::FromUnixSeconds(1800000000));
  const std::string data = DataOf(html);
  // The name's "</script>" did not end the element: the whole object is there.
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(data, &parsed).ok()) << data;
  const auto& experiments = parsed.fields().at("experiments").list_value().values();
  ASSERT_EQ(experiments.size(), 1);
  const auto& entry = experiments[0].struct_value().fields();
  EXPECT_EQ(entry.at("experiment").struct_value().fields().at("name").string_value(),
            "</script><b>shallow</b>");
  EXPECT_EQ(entry.at("metrics").list_value().values_size(), 1);
  EXPECT_EQ(entry.at("gradients").list_value().values_size(), 1);
  EXPECT_EQ(parsed.fields().at("generatedTime").string_value(), "2027-01-15T08:00:00Z");
}

TEST(ReportTest, IsSelfContainedWithEveryMarkerFilledAndTheTitleEscaped) {
  const std::string html =
      RenderReport({}, {Example()}, "127.0.0.1:50051", absl::FromUnixSeconds(1800000000));
  EXPECT_FALSE(absl::StrContains(html, "{{")) << "a marker was left unfilled";
  EXPECT_FALSE(absl::StrContains(html, "src=\"")) << "a script is loaded from elsewhere";
  EXPECT_FALSE(absl::StrContains(html, "rel=\"stylesheet\"")) << "a stylesheet is linked";
  EXPECT_TRUE(absl::StrContains(html, "uPlot"));
  EXPECT_TRUE(absl::StrContains(html, "GradlabCharts"));
  EXPECT_TRUE(absl::StrContains(html, "<title>gradlab report: k3v9x2mq</title>"));
  EXPECT_TRUE(
      absl::StrContains(html, "1 experiment from 127.0.0.1:50051, 2027-01-15 08:00:00 UTC"));
}

TEST(ReportTest, CarriesSweepsBeforeExperimentsAndCountsBoth) {
  v1::Sweep sweep;
  sweep.set_id("swp12345");
  sweep.set_name("bn study");
  sweep.add_cells()->set_description("batch_norm=true");
  const std::string html =
      RenderReport({sweep}, {Example()}, "127.0.0.1:50051", absl::FromUnixSeconds(1800000000));
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(DataOf(html), &parsed).ok());
  const auto& sweeps = parsed.fields().at("sweeps").list_value().values();
  ASSERT_EQ(sweeps.size(), 1);
  v1::Sweep carried;
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(sweeps[0].struct_value(), &json).ok());
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &carried).ok());
  EXPECT_EQ(carried.SerializeAsString(), sweep.SerializeAsString());
  EXPECT_TRUE(absl::StrContains(html, "<title>gradlab report: swp12345, k3v9x2mq</title>"));
  EXPECT_TRUE(absl::StrContains(html, "1 sweep and 1 experiment from 127.0.0.1:50051"));
  EXPECT_TRUE(absl::StrContains(
      RenderReport({sweep, sweep}, {}, "h:1", absl::FromUnixSeconds(1800000000)), "2 sweeps from"));
}

}  // namespace
}  // namespace gradlab
