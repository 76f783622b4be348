#include "server/metrics/prometheus_text.h"

#include <limits>

#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(PrometheusTextTest, FamiliesHaveHelpAndTypeThenTheirSamples) {
  PrometheusText text;
  text.Family("gradlab_experiments", PrometheusText::Type::kGauge, "Experiments by state.");
  text.Sample({{"state", "RUNNING"}}, 2);
  text.Sample({{"state", "QUEUED"}}, 0);
  text.Family("grpc_server_handled_total", PrometheusText::Type::kCounter, "RPCs handled.");
  text.Sample({{"grpc_method", "GetExperiment"}, {"grpc_code", "OK"}}, 12);
  text.Family("gradlab_queue_depth", PrometheusText::Type::kGauge, "Waiting.");
  text.Sample({}, 0.5);
  EXPECT_EQ(text.text(),
            "# HELP gradlab_experiments Experiments by state.\n"
            "# TYPE gradlab_experiments gauge\n"
            "gradlab_experiments{state=\"RUNNING\"} 2\n"
            "gradlab_experiments{state=\"QUEUED\"} 0\n"
            "# HELP grpc_server_handled_total RPCs handled.\n"
            "# TYPE grpc_server_handled_total counter\n"
            "grpc_server_handled_total{grpc_method=\"GetExperiment\",grpc_code=\"OK\"} 12\n"
            "# HELP gradlab_queue_depth Waiting.\n"
            "# TYPE gradlab_queue_depth gauge\n"
            "gradlab_queue_depth 0.5\n");
}

TEST(PrometheusTextTest, EscapesLabelValuesAndHelpAndWritesSpecialValues) {
  PrometheusText text;
  text.Family("m", PrometheusText::Type::kGauge, "a \\ b\nc \"q\"");
  text.Sample({{"name", "say \"hi\"\\\n"}}, std::numeric_limits<double>::quiet_NaN());
  text.Sample({}, std::numeric_limits<double>::infinity());
  text.Sample({}, 0.1);
  EXPECT_EQ(text.text(),
            "# HELP m a \\\\ b\\nc \"q\"\n"
            "# TYPE m gauge\n"
            "m{name=\"say \\\"hi\\\"\\\\\\n\"} NaN\n"
            "m +Inf\n"
            "m 0.1\n");
}

}  // namespace
}  // namespace gradlab
