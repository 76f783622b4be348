#include "server/http/event_streams.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/experiments/testing/log_events.h"

namespace gradlab {
namespace {

using ::testing::ElementsAre;

// A frame's fields: "id", "event" and "data" (lines joined).
std::map<std::string, std::string> Parse(const std::string& frame) {
  std::map<std::string, std::string> fields;
  EXPECT_TRUE(absl::EndsWith(frame, "\n\n")) << frame;
  for (absl::string_view line : absl::StrSplit(frame, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> field = absl::StrSplit(line, absl::MaxSplits(": ", 1));
    fields[field.first] += field.second;
  }
  return fields;
}

// "metrics:1" for each frame until the end frame, then "end:OK".
std::vector<std::string> ReadAll(EventStream& stream) {
  std::vector<std::string> seen;
  while (!stream.finished()) {
    const std::string frame = stream.NextFrame(absl::Milliseconds(10));
    if (frame.empty()) break;  // nothing more without waiting
    auto fields = Parse(frame);
    if (fields["event"] == "end") {
      google::protobuf::Struct end;
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(fields["data"], &end).ok());
      seen.push_back("end:" + end.fields().at("code").string_value());
    } else {
      seen.push_back(fields["event"] + ":" + fields["id"]);
    }
  }
  return seen;
}

std::shared_ptr<ExperimentLog> LogOfFour() {
  auto log = std::make_shared<ExperimentLog>();
  (void)log->Append(Snapshot(1));  // 1
  (void)log->Append(Epoch(1));     // 2
  (void)log->Append(Snapshot(2));  // 3
  (void)log->Append(Epoch(2));     // 4
  return log;
}

TEST(ServerSentEventTest, FramesHaveIdEventAndOneDataLinePerLine) {
  EXPECT_EQ(ServerSentEvent(7, "metrics", "{\"a\":1}"),
            "id: 7\nevent: metrics\ndata: {\"a\":1}\n\n");
  EXPECT_EQ(ServerSentEvent(0, "x", "a\nb"), "event: x\ndata: a\ndata: b\n\n");
  EXPECT_EQ(EndEvent(absl::NotFoundError("no \"x\"")),
            "event: end\ndata: {\"code\":\"NOT_FOUND\",\"message\":\"no \\\"x\\\"\"}\n\n");
}

TEST(ExperimentEventStreamTest, SendsBothKindsInSequenceOrderAndEndsWhenTheLogCloses) {
  auto log = LogOfFour();
  log->Close();
  ExperimentEventStream stream(log, EventSelection{});
  EXPECT_THAT(ReadAll(stream),
              ElementsAre("gradients:1", "metrics:2", "gradients:3", "metrics:4", "end:OK"));
}

TEST(ExperimentEventStreamTest, ResumesFromASequenceAndSelectsKinds) {
  auto log = LogOfFour();
  log->Close();
  ExperimentEventStream after_two(log, EventSelection{true, true, /*from_sequence=*/3, true});
  EXPECT_THAT(ReadAll(after_two), ElementsAre("gradients:3", "metrics:4", "end:OK"));
  ExperimentEventStream metrics_only(log, EventSelection{true, false, 0, true});
  EXPECT_THAT(ReadAll(metrics_only), ElementsAre("metrics:2", "metrics:4", "end:OK"));
  ExperimentEventStream gradients_only(log, EventSelection{false, true, 0, true});
  EXPECT_THAT(ReadAll(gradients_only), ElementsAre("gradients:1", "gradients:3", "end:OK"));
}

TEST(ExperimentEventStreamTest, WithoutFollowEndsAfterWhatIsKeptEvenWhileRunning) {
  auto log = LogOfFour();
  ExperimentEventStream stream(log, EventSelection{true, true, 0, /*follow=*/false});
  EXPECT_THAT(ReadAll(stream),
              ElementsAre("gradients:1", "metrics:2", "gradients:3", "metrics:4", "end:OK"));
}

TEST(ExperimentEventStreamTest, FollowingWaitsForTheNextAppendThenEndsOnAbort) {
  auto log = LogOfFour();
  ExperimentEventStream stream(log, EventSelection{true, true, /*from_sequence=*/5, true});
  EXPECT_EQ(stream.NextFrame(absl::Milliseconds(20)), "");  // nothing yet, timed out
  std::thread appender([&] {
    absl::SleepFor(absl::Milliseconds(50));
    (void)log->Append(Epoch(3));
  });
  const std::string frame = stream.NextFrame(absl::Seconds(30));
  appender.join();
  EXPECT_EQ(Parse(frame)["id"], "5");
  log->Abort(absl::UnavailableError("server shutting down"));
  EXPECT_THAT(ReadAll(stream), ElementsAre("end:UNAVAILABLE"));
  EXPECT_TRUE(stream.finished());
}

TEST(ExperimentEventStreamTest, DataIsTheProtobufJsonOfTheEvent) {
  auto log = LogOfFour();
  ExperimentEventStream stream(log, EventSelection{true, false, 0, false});
  v1::MetricsEvent event;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  Parse(stream.NextFrame(absl::ZeroDuration()))["data"], &event)
                  .ok());
  EXPECT_EQ(event.sequence(), 2);
  EXPECT_EQ(event.epoch_metrics().epoch(), 1);
}

}  // namespace
}  // namespace gradlab
