// End to end over HTTP: the real gradlabd binary, a real HTTP client (cpp-httplib) and a
// real gRPC channel side by side. The JSON API must say what the gRPC API says, the event
// streams must carry the same events as StreamMetrics and StreamGradients in sequence order
// and resume after Last-Event-ID, and /metrics must pass Prometheus's own checker.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/raw_call.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

using google::protobuf::util::MessageDifferencer;

// One Server-Sent Event.
struct Event {
  int64_t id = 0;
  std::string event;
  std::string data;
};

// Parses a text/event-stream body as it arrives.
class EventParser {
 public:
  // Adds received bytes; returns the events completed by them.
  std::vector<Event> Add(absl::string_view bytes) {
    buffer_.append(bytes.data(), bytes.size());
    std::vector<Event> events;
    for (size_t end; (end = buffer_.find("\n\n")) != std::string::npos;) {
      Event event;
      for (absl::string_view line : absl::StrSplit(buffer_.substr(0, end), '\n')) {
        if (absl::StartsWith(line, ":")) continue;  // a comment (keep-alive)
        std::pair<std::string, std::string> field = absl::StrSplit(line, absl::MaxSplits(": ", 1));
        if (field.first == "id") {
          EXPECT_TRUE(absl::SimpleAtoi(field.second, &event.id));
        }
        if (field.first == "event") event.event = field.second;
        if (field.first == "data") event.data += field.second;
      }
      buffer_.erase(0, end + 2);
      if (!event.event.empty()) events.push_back(std::move(event));
    }
    return events;
  }

 private:
  std::string buffer_;
};

template <typename Message>
Message FromJson(const std::string& json) {
  Message message;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.message() << " in " << json;
  return message;
}

class HttpTest : public ::testing::Test {
 protected:
  static constexpr int kMaxStreams = 2;

  static void SetUpTestSuite() {
    absl::StatusOr<GradlabdProcess> server = StartGradlabd(
        GRADLABD_PATH, {"--threads_per_job=1", absl::StrCat("--http_max_streams=", kMaxStreams),
                        "--state_dir=" + FreshSuiteDir("http_e2e_state").string()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = new GradlabdProcess(*std::move(server));
    http_port_ = server_->http_port;
  }

  static void TearDownTestSuite() { delete server_; }

  void SetUp() override {
    stub_ = v1::ExperimentService::NewStub(
        grpc::CreateChannel(server_->grpc_address, grpc::InsecureChannelCredentials()));
    http_ = std::make_unique<httplib::Client>("127.0.0.1", http_port_);
    http_->set_read_timeout(60, 0);
  }

  // A test that fails midway leaves nothing running for the next one to queue behind.
  void TearDown() override {
    grpc::ClientContext context;
    v1::ListExperimentsResponse list;
    ASSERT_TRUE(stub_->ListExperiments(&context, v1::ListExperimentsRequest(), &list).ok());
    for (const v1::Experiment& experiment : list.experiments()) {
      if (experiment.state() != v1::QUEUED && experiment.state() != v1::RUNNING) continue;
      grpc::ClientContext cancel_context;
      v1::CancelExperimentRequest cancel;
      cancel.set_id(experiment.id());
      v1::Experiment cancelled;
      (void)stub_->CancelExperiment(&cancel_context, cancel, &cancelled);
    }
  }

  v1::Experiment Start(int epochs, int64_t train_samples = 256) {
    v1::StartExperimentRequest request;
    request.mutable_spec()->set_model("mlp");
    request.mutable_spec()->set_dataset("synthetic");
    request.mutable_spec()->set_epochs(epochs);
    request.mutable_spec()->set_max_train_samples(train_samples);
    request.mutable_spec()->set_max_test_samples(64);
    request.mutable_spec()->set_batch_size(32);
    request.mutable_spec()->set_gradient_every_n_steps(2);
    grpc::ClientContext context;
    v1::Experiment experiment;
    grpc::Status status = stub_->StartExperiment(&context, request, &experiment);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return experiment;
  }

  v1::Experiment Get(const std::string& id) {
    grpc::ClientContext context;
    v1::GetExperimentRequest request;
    request.set_id(id);
    v1::Experiment experiment;
    EXPECT_TRUE(stub_->GetExperiment(&context, request, &experiment).ok());
    return experiment;
  }

  // Waits (streaming its metrics) until the experiment has finished.
  void AwaitFinished(const std::string& id) {
    grpc::ClientContext context;
    v1::StreamMetricsRequest request;
    request.set_id(id);
    auto stream = stub_->StreamMetrics(&context, request);
    for (v1::MetricsEvent event; stream->Read(&event);) {
    }
    ASSERT_TRUE(stream->Finish().ok());
  }

  // What the gRPC streams replay, as (sequence, JSON-comparable message) in one list.
  std::vector<Event> GrpcEvents(const std::string& id) {
    std::vector<Event> events;
    {
      grpc::ClientContext context;
      v1::StreamMetricsRequest request;
      request.set_id(id);
      request.set_follow(false);
      auto stream = stub_->StreamMetrics(&context, request);
      for (v1::MetricsEvent event; stream->Read(&event);) {
        std::string json;
        EXPECT_TRUE(google::protobuf::util::MessageToJsonString(event, &json).ok());
        events.push_back({event.sequence(), "metrics", json});
      }
      EXPECT_TRUE(stream->Finish().ok());
    }
    grpc::ClientContext context;
    v1::StreamGradientsRequest request;
    request.set_id(id);
    request.set_follow(false);
    auto stream = stub_->StreamGradients(&context, request);
    for (v1::GradientSnapshot snapshot; stream->Read(&snapshot);) {
      std::string json;
      EXPECT_TRUE(google::protobuf::util::MessageToJsonString(snapshot, &json).ok());
      events.push_back({snapshot.sequence(), "gradients", json});
    }
    EXPECT_TRUE(stream->Finish().ok());
    std::sort(events.begin(), events.end(),
              [](const Event& a, const Event& b) { return a.id < b.id; });
    return events;
  }

  // Reads an event stream until its `end` event (included), or until `stop_after` events
  // when that is positive (then the connection is dropped).
  std::vector<Event> ReadEvents(const std::string& path, const httplib::Headers& headers = {},
                                size_t stop_after = 0, int* http_status = nullptr) {
    std::vector<Event> events;
    EventParser parser;
    bool done = false;
    httplib::Result result =
        http_->Get(path.c_str(), headers, [&](const char* data, size_t length) {
          for (Event& event : parser.Add(absl::string_view(data, length))) {
            if (done) break;
            events.push_back(std::move(event));
            done = events.back().event == "end" || events.size() == stop_after;
          }
          return !done;
        });
    if (http_status != nullptr) *http_status = result ? result->status : 0;
    return events;
  }

  // The value of the first sample of /metrics whose line starts with `prefix`, or
  // `absent` when there is none.
  double MetricValue(const std::string& prefix, double absent = -1) {
    httplib::Result metrics = http_->Get("/metrics");
    EXPECT_TRUE(metrics && metrics->status == 200);
    for (absl::string_view line : absl::StrSplit(metrics->body, '\n')) {
      if (absl::StartsWith(line, prefix)) {
        double value = 0;
        EXPECT_TRUE(absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) << line;
        return value;
      }
    }
    return absent;
  }

  static GradlabdProcess* server_;
  static int http_port_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
  std::unique_ptr<httplib::Client> http_;
};

GradlabdProcess* HttpTest::server_ = nullptr;
int HttpTest::http_port_ = 0;

TEST_F(HttpTest, JsonApiSaysWhatTheGrpcApiSays) {
  const v1::Experiment started = Start(2);
  AwaitFinished(started.id());

  httplib::Result one = http_->Get(("/api/v1/experiments/" + started.id()).c_str());
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200);
  EXPECT_EQ(one->get_header_value("Content-Type"), "application/json");
  EXPECT_TRUE(MessageDifferencer::Equals(FromJson<v1::Experiment>(one->body), Get(started.id())));

  httplib::Result list = http_->Get("/api/v1/experiments?page_size=100");
  ASSERT_TRUE(list);
  grpc::ClientContext list_context;
  v1::ListExperimentsRequest list_request;
  list_request.set_page_size(100);
  v1::ListExperimentsResponse grpc_list;
  ASSERT_TRUE(stub_->ListExperiments(&list_context, list_request, &grpc_list).ok());
  EXPECT_TRUE(
      MessageDifferencer::Equals(FromJson<v1::ListExperimentsResponse>(list->body), grpc_list));

  httplib::Result info = http_->Get("/api/v1/server");
  ASSERT_TRUE(info);
  grpc::ClientContext info_context;
  v1::ServerInfo grpc_info;
  ASSERT_TRUE(stub_->GetServerInfo(&info_context, v1::GetServerInfoRequest(), &grpc_info).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(FromJson<v1::ServerInfo>(info->body), grpc_info));

  // The step-1 snapshot, as StreamGradients sends it first.
  httplib::Result snapshot =
      http_->Get(("/api/v1/experiments/" + started.id() + "/snapshot?step=1").c_str());
  ASSERT_TRUE(snapshot);
  ASSERT_EQ(snapshot->status, 200) << snapshot->body;
  grpc::ClientContext gradients_context;
  v1::StreamGradientsRequest gradients_request;
  gradients_request.set_id(started.id());
  gradients_request.set_follow(false);
  auto gradients = stub_->StreamGradients(&gradients_context, gradients_request);
  v1::GradientSnapshot first;
  ASSERT_TRUE(gradients->Read(&first));
  gradients_context.TryCancel();
  (void)gradients->Finish();
  EXPECT_EQ(first.step(), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(FromJson<v1::GradientSnapshot>(snapshot->body), first));
}

TEST_F(HttpTest, ErrorsAreJsonThatNameWhatWasWrong) {
  const v1::Experiment started = Start(1);
  struct Case {
    std::string path;
    int status;
    std::string code;
    std::string message_part;
  };
  const std::string events = "/api/v1/experiments/" + started.id() + "/events";
  for (const Case& c : std::vector<Case>{
           {"/api/v1/experiments/nope", 404, "NOT_FOUND", "no experiment with id \"nope\""},
           {"/api/v1/experiments/nope/events", 404, "NOT_FOUND", "nope"},
           {events + "?kinds=weights", 400, "INVALID_ARGUMENT", "metrics, gradients"},
           {events + "?from_sequence=-1", 400, "INVALID_ARGUMENT", "from_sequence"},
           {events + "?follow=maybe", 400, "INVALID_ARGUMENT", "true, false"},
           {"/api/v1/experiments?page_size=x", 400, "INVALID_ARGUMENT", "page_size"},
           {"/api/v1/experiments/" + started.id() + "/snapshot?step=1000000", 404, "NOT_FOUND",
            "no gradient snapshot at or after step 1000000"},
           {"/nowhere", 404, "NOT_FOUND", "/api/v1/experiments"},
           {"/static/../CMakeLists.txt", 404, "NOT_FOUND", ""},
       }) {
    SCOPED_TRACE(c.path);
    httplib::Result result = http_->Get(c.path.c_str());
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, c.status);
    google::protobuf::Struct body = FromJson<google::protobuf::Struct>(result->body);
    const auto& error = body.fields().at("error").struct_value().fields();
    EXPECT_EQ(error.at("status").string_value(), c.code);
    EXPECT_EQ(error.at("code").number_value(), c.status);
    EXPECT_TRUE(absl::StrContains(error.at("message").string_value(), c.message_part))
        << error.at("message").string_value();
  }
  int status = 0;
  ReadEvents(events, {{"Last-Event-ID", "abc"}}, 0, &status);
  EXPECT_EQ(status, 400);
  // The server still serves.
  httplib::Result health = http_->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
}

// The same bad positions, page sizes and oversized strings, through both faces: the same
// code (HTTP's status for it) and the same words, and no client string quoted whole.
TEST_F(HttpTest, BothFacesAnswerPositionsPagesAndLongStringsAlike) {
  const v1::Experiment started = Start(1);
  const std::string events = "/api/v1/experiments/" + started.id() + "/events?follow=false";
  auto http_error = [&](const std::string& path) {
    httplib::Result result = http_->Get(path.c_str());
    EXPECT_TRUE(result);
    if (!result) return std::pair<int, std::string>{0, ""};
    google::protobuf::Struct body = FromJson<google::protobuf::Struct>(result->body);
    return std::pair<int, std::string>{
        result->status,
        body.fields().at("error").struct_value().fields().at("message").string_value()};
  };
  {
    grpc::ClientContext context;
    v1::StreamMetricsRequest request;
    request.set_id(started.id());
    request.set_from_sequence(-1);
    auto stream = stub_->StreamMetrics(&context, request);
    v1::MetricsEvent event;
    EXPECT_FALSE(stream->Read(&event));
    const grpc::Status status = stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    const auto [code, message] = http_error(events + "&from_sequence=-1");
    EXPECT_EQ(code, 400);
    EXPECT_EQ(message, status.error_message());
    EXPECT_EQ(message, "from_sequence: -1 is negative; 0 replays from the start");
  }
  {
    grpc::ClientContext context;
    v1::ListExperimentsRequest request;
    request.set_page_size(1001);
    v1::ListExperimentsResponse response;
    const grpc::Status status = stub_->ListExperiments(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    const auto [code, message] = http_error("/api/v1/experiments?page_size=1001");
    EXPECT_EQ(code, 400);
    EXPECT_EQ(message, status.error_message());
    EXPECT_EQ(message, "page_size: 1001 is out of range [0, 1000]");
  }
  {
    grpc::ClientContext context;
    v1::ListExperimentsRequest request;
    request.set_page_token(std::string(100'000, 't'));
    v1::ListExperimentsResponse response;
    const grpc::Status status = stub_->ListExperiments(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), "page_token: \"" + std::string(100, 't') +
                                          "…\" (100000 bytes) is not a token this server gave out");
  }
  {
    const std::string long_id(5'000, 'i');  // HTTP's request line allows up to 8 KiB
    grpc::ClientContext context;
    v1::GetExperimentRequest request;
    request.set_id(long_id);
    v1::Experiment experiment;
    const grpc::Status status = stub_->GetExperiment(&context, request, &experiment);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(status.error_message(),
              "no experiment with id \"" + std::string(100, 'i') + "…\" (5000 bytes)");
    const auto [code, message] = http_error("/api/v1/experiments/" + long_id);
    EXPECT_EQ(code, 404);
    EXPECT_EQ(message, status.error_message());
  }
  // The largest Last-Event-ID goes on after it: nothing more, with no overflow.
  GrpcEvents(started.id());  // to its end
  std::vector<Event> after_largest = ReadEvents("/api/v1/experiments/" + started.id() + "/events",
                                                {{"Last-Event-ID", "9223372036854775807"}});
  ASSERT_EQ(after_largest.size(), 1u);
  EXPECT_EQ(after_largest[0].event, "end");
}

TEST_F(HttpTest, EventStreamCarriesEveryGrpcEventInSequenceOrder) {
  const v1::Experiment started = Start(3);
  // Follow it live from the start, to the end.
  std::vector<Event> live = ReadEvents("/api/v1/experiments/" + started.id() + "/events");
  ASSERT_FALSE(live.empty());
  ASSERT_EQ(live.back().event, "end");
  const google::protobuf::Struct end = FromJson<google::protobuf::Struct>(live.back().data);
  EXPECT_EQ(end.fields().at("code").string_value(), "OK");
  EXPECT_EQ(end.fields().at("message").string_value(), "");
  live.pop_back();

  const std::vector<Event> grpc = GrpcEvents(started.id());
  ASSERT_EQ(live.size(), grpc.size());
  for (size_t i = 0; i < live.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(live[i].id, grpc[i].id);
    if (i > 0) {
      EXPECT_GT(live[i].id, live[i - 1].id);
    }
    ASSERT_EQ(live[i].event, grpc[i].event);
    if (live[i].event == "metrics") {
      EXPECT_TRUE(MessageDifferencer::Equals(FromJson<v1::MetricsEvent>(live[i].data),
                                             FromJson<v1::MetricsEvent>(grpc[i].data)));
    } else {
      EXPECT_TRUE(MessageDifferencer::Equals(FromJson<v1::GradientSnapshot>(live[i].data),
                                             FromJson<v1::GradientSnapshot>(grpc[i].data)));
    }
  }
  int epochs = 0;
  int snapshots = 0;
  for (const Event& event : live) {
    epochs +=
        event.event == "metrics" && FromJson<v1::MetricsEvent>(event.data).has_epoch_metrics();
    snapshots += event.event == "gradients";
  }
  EXPECT_EQ(epochs, 3);
  EXPECT_GT(snapshots, 3);

  // Selecting one kind gives exactly that kind's events.
  std::vector<Event> only_gradients =
      ReadEvents("/api/v1/experiments/" + started.id() + "/events?kinds=gradients&follow=false");
  ASSERT_EQ(only_gradients.back().event, "end");
  EXPECT_EQ(only_gradients.size() - 1, static_cast<size_t>(snapshots));
}

TEST_F(HttpTest, AReconnectWithLastEventIdResumesWithNoGapAndNoRepeat) {
  // Long enough to be still running when the first connection drops.
  const v1::Experiment started = Start(6, 2048);
  const std::string path = "/api/v1/experiments/" + started.id() + "/events";
  std::vector<Event> first = ReadEvents(path, {}, /*stop_after=*/5);
  ASSERT_EQ(first.size(), 5u);
  EXPECT_NE(Get(started.id()).state(), v1::SUCCEEDED) << "finished before the drop; test too fast";
  std::vector<Event> rest = ReadEvents(path, {{"Last-Event-ID", std::to_string(first.back().id)}});
  ASSERT_FALSE(rest.empty());
  ASSERT_EQ(rest.back().event, "end");
  rest.pop_back();

  std::vector<int64_t> resumed;
  for (const Event& event : first) resumed.push_back(event.id);
  for (const Event& event : rest) resumed.push_back(event.id);
  std::vector<int64_t> expected;
  for (const Event& event : GrpcEvents(started.id())) expected.push_back(event.id);
  EXPECT_EQ(resumed, expected);

  // A finished experiment resumed after its last event just ends.
  std::vector<Event> after_end =
      ReadEvents(path, {{"Last-Event-ID", std::to_string(expected.back())}});
  ASSERT_EQ(after_end.size(), 1u);
  EXPECT_EQ(after_end[0].event, "end");
}

TEST_F(HttpTest, WatchSendsEveryExperimentThenChanges) {
  const v1::Experiment started = Start(1);
  AwaitFinished(started.id());
  std::vector<Event> events;
  EventParser parser;
  bool saw_new = false;
  std::string new_id;
  std::thread submitter;
  httplib::Result result = http_->Get("/api/v1/watch", [&](const char* data, size_t length) {
    for (Event& event : parser.Add(absl::string_view(data, length))) {
      events.push_back(event);
      const v1::Experiment experiment = FromJson<v1::Experiment>(event.data);
      if (experiment.id() == started.id() && !submitter.joinable()) {
        EXPECT_EQ(experiment.state(), v1::SUCCEEDED);
        // Seen in the initial listing: now a new one must arrive as a change.
        submitter = std::thread([&] { new_id = Start(1).id(); });
      }
      if (!new_id.empty() && experiment.id() == new_id) saw_new = true;
    }
    return !saw_new;
  });
  if (submitter.joinable()) submitter.join();
  EXPECT_TRUE(saw_new);
  for (const Event& event : events) EXPECT_EQ(event.event, "experiment");
}

TEST_F(HttpTest, EventStreamsPastTheLimitAreRefusedUntilOneCloses) {
  const v1::Experiment running = Start(1000, 2048);
  const std::string path = "/api/v1/experiments/" + running.id() + "/events?kinds=metrics";
  std::atomic<bool> release{false};
  std::atomic<int> opened{0};
  std::vector<std::thread> holders;
  for (int i = 0; i < kMaxStreams; ++i) {
    holders.emplace_back([&] {
      httplib::Client client("127.0.0.1", http_port_);
      client.set_read_timeout(60, 0);
      bool counted = false;
      client.Get(path.c_str(), [&](const char*, size_t) {
        if (!counted) {
          counted = true;
          ++opened;
        }
        return !release.load();
      });
    });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (opened < kMaxStreams && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_EQ(opened, kMaxStreams);
  EXPECT_EQ(MetricValue("gradlab_open_streams{transport=\"http\",method=\"events\"}"), kMaxStreams);

  httplib::Result refused = http_->Get(path.c_str());
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 429);
  EXPECT_EQ(refused->get_header_value("Retry-After"), "5");
  EXPECT_TRUE(absl::StrContains(refused->body, "--http_max_streams")) << refused->body;
  // Everything else is still answered.
  httplib::Result list = http_->Get("/api/v1/experiments");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);

  release = true;
  for (std::thread& holder : holders) holder.join();
  // Both closed: a stream opens again.
  std::vector<Event> after;
  for (int attempt = 0; attempt < 100 && after.empty(); ++attempt) {
    after = ReadEvents(path, {}, /*stop_after=*/1);
    if (after.empty()) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].event, "metrics");

  grpc::ClientContext context;
  v1::CancelExperimentRequest cancel;
  cancel.set_id(running.id());
  v1::Experiment cancelled;
  ASSERT_TRUE(stub_->CancelExperiment(&context, cancel, &cancelled).ok());
}

TEST_F(HttpTest, MetricsPassPromtoolAndCountWhatHappened) {
  const v1::Experiment done = Start(1);
  AwaitFinished(done.id());
  const double ok_before = MetricValue(
      "grpc_server_handled_total{grpc_service=\"gradlab.v1.ExperimentService\","
      "grpc_method=\"GetExperiment\",grpc_code=\"OK\"}",
      /*absent=*/0);
  Get(done.id());
  grpc::ClientContext context;
  v1::GetExperimentRequest missing;
  missing.set_id("nope");
  v1::Experiment unused;
  EXPECT_EQ(stub_->GetExperiment(&context, missing, &unused).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // A running experiment, and a gRPC stream open on it.
  const v1::Experiment running = Start(1000, 2048);
  grpc::ClientContext stream_context;
  v1::StreamMetricsRequest stream_request;
  stream_request.set_id(running.id());
  auto stream = stub_->StreamMetrics(&stream_context, stream_request);
  v1::MetricsEvent event;
  bool epoch_done = false;
  while (!epoch_done && stream->Read(&event)) epoch_done = event.has_epoch_metrics();
  ASSERT_TRUE(epoch_done);

  httplib::Result metrics = http_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::filesystem::path dir = FreshTestDir("http_e2e");
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "metrics.txt").string();
  std::ofstream(file) << metrics->body;
  const CommandResult promtool =
      RunCommand({"/bin/sh", "-c", "promtool check metrics < " + file + " 2>&1"});
  ASSERT_NE(promtool.exit_code, 127)
      << "promtool is not installed: scripts/setup --test installs Debian's prometheus";
  EXPECT_EQ(promtool.exit_code, 0) << promtool.out << "\n" << metrics->body;

  EXPECT_EQ(MetricValue("gradlab_experiments{state=\"RUNNING\"}"), 1);
  EXPECT_GE(MetricValue("gradlab_experiments{state=\"SUCCEEDED\"}"), 1);
  EXPECT_EQ(MetricValue("grpc_server_handled_total{grpc_service=\"gradlab.v1.ExperimentService\","
                        "grpc_method=\"GetExperiment\",grpc_code=\"OK\"}"),
            ok_before + 1);
  EXPECT_GE(MetricValue("grpc_server_handled_total{grpc_service=\"gradlab.v1.ExperimentService\","
                        "grpc_method=\"GetExperiment\",grpc_code=\"NOT_FOUND\"}"),
            1);
  EXPECT_EQ(MetricValue("gradlab_open_streams{transport=\"grpc\",method=\"StreamMetrics\"}"), 1);
  const std::string labels =
      "{experiment_id=\"" + running.id() + "\",name=\"\",model=\"mlp\",dataset=\"synthetic\"}";
  EXPECT_GE(MetricValue("gradlab_experiment_epoch" + labels), 1);
  EXPECT_EQ(MetricValue("gradlab_experiment_epochs" + labels), 1000);
  EXPECT_GT(MetricValue("gradlab_experiment_images_per_second" + labels), 0);
  EXPECT_GT(MetricValue("gradlab_experiment_train_loss" + labels), 0);
  EXPECT_GE(MetricValue("gradlab_experiment_test_accuracy" + labels), 0);
  EXPECT_EQ(MetricValue("gradlab_queue_depth"), 0);

  stream_context.TryCancel();
  (void)stream->Finish();
  grpc::ClientContext cancel_context;
  v1::CancelExperimentRequest cancel;
  cancel.set_id(running.id());
  v1::Experiment cancelled;
  ASSERT_TRUE(stub_->CancelExperiment(&cancel_context, cancel, &cancelled).ok());
  // The stream's gauge went back down.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (MetricValue("gradlab_open_streams{transport=\"grpc\",method=\"StreamMetrics\"}") != 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(MetricValue("gradlab_open_streams{transport=\"grpc\",method=\"StreamMetrics\"}"), 0);
}

// Its own server, which the test shuts down.
TEST(HttpShutdownTest, SigtermEndsEventStreamsWithUnavailableAndExitsZero) {
  absl::StatusOr<GradlabdProcess> server = StartGradlabd(
      GRADLABD_PATH, {"--threads_per_job=1", "--state_dir=" + FreshTestDir("http_e2e").string()});
  ASSERT_TRUE(server.ok()) << server.status();
  const int http_port = server->http_port;
  auto stub = v1::ExperimentService::NewStub(
      grpc::CreateChannel(server->grpc_address, grpc::InsecureChannelCredentials()));
  v1::StartExperimentRequest request;
  request.mutable_spec()->set_model("mlp");
  request.mutable_spec()->set_dataset("synthetic");
  request.mutable_spec()->set_epochs(1000);
  request.mutable_spec()->set_max_train_samples(2048);
  grpc::ClientContext context;
  v1::Experiment experiment;
  ASSERT_TRUE(stub->StartExperiment(&context, request, &experiment).ok());

  // An experiment's events and the watch stream, both following.
  std::vector<std::vector<Event>> received(2);
  std::atomic<int> opened{0};
  std::vector<std::thread> readers;
  const std::vector<std::string> paths = {"/api/v1/experiments/" + experiment.id() + "/events",
                                          "/api/v1/watch"};
  for (size_t i = 0; i < paths.size(); ++i) {
    readers.emplace_back([&, i] {
      httplib::Client client("127.0.0.1", http_port);
      client.set_read_timeout(60, 0);
      EventParser parser;
      bool counted = false;
      client.Get(paths[i].c_str(), [&](const char* data, size_t length) {
        for (Event& event : parser.Add(absl::string_view(data, length))) {
          received[i].push_back(std::move(event));
        }
        if (!counted && !received[i].empty()) {
          counted = true;
          ++opened;
        }
        return true;
      });
    });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (opened < 2 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_EQ(opened, 2);

  server->process.Signal(SIGTERM);
  EXPECT_EQ(server->process.Wait(absl::Seconds(10)), 0);
  for (std::thread& reader : readers) reader.join();
  for (const std::vector<Event>& events : received) {
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().event, "end");
    const google::protobuf::Struct end = FromJson<google::protobuf::Struct>(events.back().data);
    EXPECT_EQ(end.fields().at("code").string_value(), "UNAVAILABLE");
    EXPECT_EQ(end.fields().at("message").string_value(), "server shutting down");
  }
}

// Against DNS rebinding: a page of another site that makes the browser call the server
// under its own name gets 403, on every page but /healthz.
TEST_F(HttpTest, RequestsUnderAnotherHostNameAreRefused) {
  const std::string port = std::to_string(http_port_);
  for (const char* path : {"/api/v1/experiments", "/metrics", "/", "/static/app.js"}) {
    SCOPED_TRACE(path);
    httplib::Result rebound = http_->Get(path, {{"Host", "attacker.example:" + port}});
    ASSERT_TRUE(rebound);
    EXPECT_EQ(rebound->status, 403);
    EXPECT_TRUE(absl::StrContains(
        rebound->body, "Host \\\"attacker.example:" + port + "\\\" is not this server's"))
        << rebound->body;
    httplib::Result local = http_->Get(path, {{"Host", "localhost:" + port}});
    ASSERT_TRUE(local);
    EXPECT_NE(local->status, 403);
  }
  httplib::Result health = http_->Get("/healthz", {{"Host", "attacker.example"}});
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// Listening on every interface, only the allowed names and loopback ones pass.
TEST(HttpHostsTest, OnEveryInterfaceOnlyAllowedAndLoopbackNamesPass) {
  absl::StatusOr<GradlabdProcess> server =
      StartGradlabd(GRADLABD_PATH, {"--state_dir=", "--http_listen=0.0.0.0:0",
                                    "--allow_insecure_remote", "--http_allowed_hosts=gradlabd"});
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client http("127.0.0.1", server->http_port);
  const std::string port = std::to_string(server->http_port);
  const auto status_for = [&](const std::string& host) {
    httplib::Result result = http.Get("/api/v1/experiments", {{"Host", host}});
    return result ? result->status : 0;
  };
  EXPECT_EQ(status_for("gradlabd:8080"), 200);  // as a proxy or Prometheus would name it
  EXPECT_EQ(status_for("127.0.0.1:" + port), 200);
  EXPECT_EQ(status_for("0.0.0.0:" + port), 403);
  EXPECT_EQ(status_for("192.0.2.7:" + port), 403);
}

// Methods the server does not serve, however many and however named, are one series.
TEST_F(HttpTest, CallsOfUnknownMethodsAddNoSeriesToMetrics) {
  const auto lines = [&] {
    httplib::Result metrics = http_->Get("/metrics");
    EXPECT_TRUE(metrics && metrics->status == 200);
    return metrics ? std::count(metrics->body.begin(), metrics->body.end(), '\n') : 0;
  };
  const auto channel =
      grpc::CreateChannel(server_->grpc_address, grpc::InsecureChannelCredentials());
  const auto call_unknown = [&](int i) {
    EXPECT_EQ(CallRawMethod(channel,
                            absl::StrCat("/attacker.Service", i, "/Method", std::string(200, 'x')))
                  .error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  };
  call_unknown(0);
  const double before = MetricValue(
      "grpc_server_handled_total{grpc_service=\"unknown\",grpc_method=\"unknown\","
      "grpc_code=\"UNIMPLEMENTED\"}");
  const auto lines_before = lines();
  for (int i = 1; i <= 300; ++i) call_unknown(i);
  EXPECT_EQ(lines(), lines_before);
  EXPECT_EQ(
      MetricValue("grpc_server_handled_total{grpc_service=\"unknown\",grpc_method=\"unknown\","
                  "grpc_code=\"UNIMPLEMENTED\"}"),
      before + 300);
}

TEST_F(HttpTest, ServesTheDashboardWithItsFiles) {
  httplib::Result index = http_->Get("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_EQ(index->get_header_value("Content-Type"), "text/html; charset=utf-8");
  for (const std::string file :
       {"uPlot.iife.min.js", "uPlot.min.css", "charts.js", "dashboard.js", "style.css"}) {
    SCOPED_TRACE(file);
    EXPECT_TRUE(absl::StrContains(index->body, "/static/" + file));
    httplib::Result asset = http_->Get(("/static/" + file).c_str());
    ASSERT_TRUE(asset);
    EXPECT_EQ(asset->status, 200);
    EXPECT_GT(asset->body.size(), 1000u);
  }
  // Nothing on the page comes from another host.
  EXPECT_FALSE(absl::StrContains(index->body, "http://"));
  EXPECT_FALSE(absl::StrContains(index->body, "https://"));
}

}  // namespace
}  // namespace gradlab
