// End to end: a state_dir written by an earlier release (tests/fixtures/state-v1, made by
// scripts/make-state-fixture and kept as it was) opens in today's gradlabd with its whole
// history: every finished experiment and every event of it as that release answered them,
// the deleted one gone, and the run it was killed in resumed to the end, then the one
// queued behind it.
#include <SQLiteCpp/SQLiteCpp.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/metrics_events.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

const fs::path kFixture = fs::path(FIXTURES_DIR) / "state-v1";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

template <typename Message>
Message FromJson(const std::string& json) {
  Message message;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status << ": " << json;
  return message;
}

// One message per line of a `gradlab --json` output.
template <typename Message>
std::vector<Message> FromJsonLines(const fs::path& path) {
  std::vector<Message> messages;
  std::istringstream lines(ReadFile(path));
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) messages.push_back(FromJson<Message>(line));
  }
  return messages;
}

// The fixture's experiment ids by name (expected/ids.txt: "NAME ID" lines).
std::map<std::string, std::string> IdsByName() {
  std::map<std::string, std::string> ids;
  std::istringstream lines(ReadFile(kFixture / "expected/ids.txt"));
  for (std::string name, id; lines >> name >> id;) ids[name] = id;
  return ids;
}

class StateFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A copy: the server writes to its state_dir, and the fixture stays as it was made.
    state_dir_ = FreshTestDir("state_fixture");
    fs::create_directories(state_dir_);
    fs::copy(kFixture / "state", state_dir_, fs::copy_options::recursive);
    StartServer();
  }

  void StartServer() {
    absl::StatusOr<GradlabdProcess> server =
        StartGradlabd(GRADLABD_PATH, {"--state_dir=" + state_dir_.string(), "--threads_per_job=2"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_.emplace(*std::move(server));
    stub_ = v1::ExperimentService::NewStub(
        grpc::CreateChannel(server_->grpc_address, grpc::InsecureChannelCredentials()));
  }

  grpc::Status Get(const std::string& id, v1::Experiment& experiment) {
    grpc::ClientContext context;
    v1::GetExperimentRequest request;
    request.set_id(id);
    return stub_->GetExperiment(&context, request, &experiment);
  }

  // Every metrics event of the experiment, to its end (for a run: until it finishes).
  std::vector<v1::MetricsEvent> Events(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(3));
    v1::StreamMetricsRequest request;
    request.set_id(id);
    auto stream = stub_->StreamMetrics(&context, request);
    std::vector<v1::MetricsEvent> events;
    for (v1::MetricsEvent event; stream->Read(&event);) events.push_back(event);
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return events;
  }

  v1::GradientSnapshot LastGradients(const std::string& id) {
    grpc::ClientContext context;
    v1::StreamGradientsRequest request;
    request.set_id(id);
    auto stream = stub_->StreamGradients(&context, request);
    v1::GradientSnapshot last;
    for (v1::GradientSnapshot snapshot; stream->Read(&snapshot);) last = snapshot;
    EXPECT_TRUE(stream->Finish().ok());
    return last;
  }

  void StopServer() {
    server_->process.Signal(SIGTERM);
    EXPECT_EQ(server_->process.Wait(absl::Seconds(60)), 0);
    server_.reset();
  }

  fs::path state_dir_;
  std::optional<GradlabdProcess> server_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

TEST_F(StateFixtureTest, FinishedExperimentsAndTheirEventsAreAsThatReleaseServedThem) {
  const std::map<std::string, std::string> ids = IdsByName();
  for (const std::string name : {"succeeded", "cancelled", "failed"}) {
    SCOPED_TRACE(name);
    const std::string& id = ids.at(name);
    const auto expected = FromJson<v1::Experiment>(
        ReadFile(kFixture / "expected" / ("experiment-" + id + ".json")));
    v1::Experiment served;
    ASSERT_TRUE(Get(id, served).ok());
    EXPECT_TRUE(MessageDifferencer::Equals(served, expected))
        << "served:\n" << served.DebugString() << "made:\n" << expected.DebugString();

    const std::vector<v1::MetricsEvent> events = Events(id);
    const auto made =
        FromJsonLines<v1::MetricsEvent>(kFixture / "expected" / ("events-" + id + ".jsonl"));
    ASSERT_EQ(events.size(), made.size());
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_TRUE(MessageDifferencer::Equals(events[i], made[i]))
          << "event " << i << " served:\n" << events[i].DebugString() << "made:\n"
          << made[i].DebugString();
    }
  }
  for (const std::string name : {"succeeded", "cancelled"}) {
    SCOPED_TRACE(name);
    const std::string& id = ids.at(name);
    const auto made = FromJson<v1::GradientSnapshot>(
        ReadFile(kFixture / "expected" / ("last-gradients-" + id + ".json")));
    EXPECT_TRUE(MessageDifferencer::Equals(LastGradients(id), made));
  }
  v1::Experiment deleted;
  EXPECT_EQ(Get(ids.at("deleted"), deleted).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(StateFixtureTest, TheInterruptedRunResumesToTheEndAndTheQueuedOneRunsAfter) {
  const std::map<std::string, std::string> ids = IdsByName();
  const std::vector<v1::MetricsEvent> running = Events(ids.at("running"));
  const std::vector<v1::EpochMetrics> epochs = Epochs(running);
  ASSERT_EQ(epochs.size(), 6u) << StateChanges(running);
  for (int epoch = 1; epoch <= 6; ++epoch) EXPECT_EQ(epochs[epoch - 1].epoch(), epoch);
  EXPECT_THAT(StateChanges(running), HasSubstr("RUNNING: resumed"));
  EXPECT_THAT(StateChanges(running), HasSubstr("SUCCEEDED: finished all epochs"));

  const std::vector<v1::MetricsEvent> queued = Events(ids.at("queued"));
  EXPECT_EQ(Epochs(queued).size(), 1u);
  EXPECT_THAT(StateChanges(queued), HasSubstr("SUCCEEDED: finished all epochs"));

  // Listed newest first: the six minus the deleted one.
  grpc::ClientContext context;
  v1::ListExperimentsResponse list;
  ASSERT_TRUE(stub_->ListExperiments(&context, v1::ListExperimentsRequest(), &list).ok());
  std::vector<std::string> listed;
  for (const v1::Experiment& experiment : list.experiments()) listed.push_back(experiment.name());
  EXPECT_THAT(listed, ::testing::ElementsAre("queued", "running", "failed", "cancelled", "succeeded"));
}

// A stored event that no longer matches its checksum: the full check names it, and the
// server ends that experiment's streams with DATA_LOSS after the events before it, while
// it serves everything else as before.
TEST_F(StateFixtureTest, ADamagedEventEndsItsStreamWithDataLossAndTheRestIsServed) {
  const std::string id = IdsByName().at("succeeded");
  const std::vector<v1::MetricsEvent> intact = Events(id);
  ASSERT_GT(intact.size(), 4u);
  const int64_t damaged = intact[3].sequence();
  StopServer();
  {
    SQLite::Database db((state_dir_ / "gradlab.db").string(), SQLite::OPEN_READWRITE);
    SQLite::Statement read(db, "SELECT body FROM events WHERE experiment_id = ? AND sequence = ?");
    read.bind(1, id);
    read.bind(2, static_cast<int64_t>(damaged));
    ASSERT_TRUE(read.executeStep());
    std::string body(static_cast<const char*>(read.getColumn(0).getBlob()),
                     read.getColumn(0).getBytes());
    read.reset();
    body[body.size() / 2] ^= 0x04;
    SQLite::Statement write(db,
                            "UPDATE events SET body = ? WHERE experiment_id = ? AND sequence = ?");
    write.bind(1, body.data(), static_cast<int>(body.size()));
    write.bind(2, id);
    write.bind(3, static_cast<int64_t>(damaged));
    ASSERT_EQ(write.exec(), 1);
  }
  const std::string named =
      "experiment " + id + ": its stored event " + std::to_string(damaged) + " fails its checksum";
  const CommandResult check = RunCommand({GRADLABD_PATH, "--check_state=" + state_dir_.string()});
  EXPECT_EQ(check.exit_code, 1) << check.out;
  EXPECT_THAT(check.out, HasSubstr("DAMAGED: " + named));

  StartServer();
  grpc::ClientContext context;
  v1::StreamMetricsRequest request;
  request.set_id(id);
  auto stream = stub_->StreamMetrics(&context, request);
  std::vector<int64_t> served;
  for (v1::MetricsEvent event; stream->Read(&event);) served.push_back(event.sequence());
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(status.error_message(), HasSubstr(named));
  EXPECT_EQ(served, (std::vector<int64_t>{intact[0].sequence(), intact[1].sequence(),
                                          intact[2].sequence()}));
  v1::Experiment experiment;
  EXPECT_TRUE(Get(id, experiment).ok());
  EXPECT_EQ(experiment.state(), v1::SUCCEEDED);
  EXPECT_FALSE(Events(IdsByName().at("cancelled")).empty());  // ends OK (checked inside)
}

}  // namespace
}  // namespace gradlab
