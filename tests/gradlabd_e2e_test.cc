// End to end: the real gradlabd binary on a free port, driven over a real channel.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/small_disk.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

class GradlabdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::filesystem::path state_dir = FreshTestDir("gradlabd_e2e");
    absl::StatusOr<ChildProcess> server =
        ChildProcess::Start({GRADLABD_PATH, "--listen=127.0.0.1:0", "--http_listen=127.0.0.1:0",
                             "--threads_per_job=1", "--state_dir=" + state_dir.string()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_.emplace(*std::move(server));
    absl::StatusOr<std::string> line =
        server_->ReadLineContaining("listening on port", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    port_ = line->substr(line->rfind(' ') + 1);
    stub_ = v1::ExperimentService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + port_, grpc::InsecureChannelCredentials()));
  }

  v1::Experiment Start(int epochs, const std::string& model = "mlp") {
    v1::StartExperimentRequest request;
    request.mutable_spec()->set_model(model);
    request.mutable_spec()->set_dataset("synthetic");
    request.mutable_spec()->set_epochs(epochs);
    request.mutable_spec()->set_max_train_samples(256);
    request.mutable_spec()->set_max_test_samples(64);
    grpc::ClientContext context;
    v1::Experiment experiment;
    grpc::Status status = stub_->StartExperiment(&context, request, &experiment);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return experiment;
  }

  std::optional<ChildProcess> server_;
  std::string port_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

TEST_F(GradlabdTest, SubmitStreamToTheEndThenSigtermExitsZero) {
  v1::Experiment experiment = Start(2);
  grpc::ClientContext context;
  v1::StreamMetricsRequest request;
  request.set_id(experiment.id());
  auto stream = stub_->StreamMetrics(&context, request);
  v1::MetricsEvent event;
  int epochs = 0;
  v1::ExperimentState last_state = v1::EXPERIMENT_STATE_UNSPECIFIED;
  while (stream->Read(&event)) {
    epochs += event.has_epoch_metrics();
    if (event.has_state_change()) last_state = event.state_change().state();
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(epochs, 2);
  EXPECT_EQ(last_state, v1::SUCCEEDED);

  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(absl::Seconds(10)), 0);
}

TEST_F(GradlabdTest, SigtermDuringTrainingEndsStreamsAndExitsZeroWithinTenSeconds) {
  v1::Experiment experiment = Start(1000, "resnet");
  grpc::ClientContext context;
  v1::StreamMetricsRequest request;
  request.set_id(experiment.id());
  auto stream = stub_->StreamMetrics(&context, request);
  v1::MetricsEvent event;
  // Wait until it runs.
  while (stream->Read(&event) &&
         !(event.has_state_change() && event.state_change().state() == v1::RUNNING)) {
  }
  const absl::Time start = absl::Now();
  server_->Signal(SIGTERM);
  while (stream->Read(&event)) {
  }
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "server shutting down");
  EXPECT_EQ(server_->Wait(absl::Seconds(10)), 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(GradlabdFlagsTest, BadFlagsAreRefusedWithAClearMessage) {
  CommandResult help = RunCommand({GRADLABD_PATH, "--help"});
  EXPECT_NE(help.out.find("--threads_per_job"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--max_queue"), std::string::npos);
  EXPECT_NE(help.out.find("--state_dir"), std::string::npos);
  EXPECT_NE(help.out.find("--keep_checkpoints"), std::string::npos);
  EXPECT_EQ(RunCommand({GRADLABD_PATH, "--workers=0"}).exit_code, 2);
  EXPECT_EQ(RunCommand({GRADLABD_PATH, "--keep_checkpoints=first"}).exit_code, 2);
  EXPECT_NE(help.out.find("--http_listen"), std::string::npos);
  EXPECT_EQ(RunCommand({GRADLABD_PATH, "--http_listen=nonsense"}).exit_code, 2);
  EXPECT_EQ(RunCommand({GRADLABD_PATH, "--http_listen=127.0.0.1:70000"}).exit_code, 2);
  EXPECT_EQ(RunCommand({GRADLABD_PATH, "--http_max_streams=0"}).exit_code, 2);
  EXPECT_EQ(RunCommand({GRADLABD_PATH, "--http_max_streams=513"}).exit_code, 2);
}

// A port another process holds: gradlabd says which and exits 1, for either listener.
TEST(GradlabdFlagsTest, APortInUseIsRefusedWithAClearMessage) {
  absl::StatusOr<HeldTcpPort> held = HeldTcpPort::Listen();
  ASSERT_TRUE(held.ok()) << held.status();
  const std::string taken = "127.0.0.1:" + std::to_string(held->port());
  const std::string state_dir = FreshTestDir("gradlabd_ports").string();
  for (const auto& [flags, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--listen=" + taken, "--http_listen=127.0.0.1:0"}, "cannot listen on " + taken},
           {{"--listen=127.0.0.1:0", "--http_listen=" + taken},
            "cannot listen for HTTP on " + taken}}) {
    SCOPED_TRACE(message);
    std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", GRADLABD_PATH,
                                     "--state_dir=" + state_dir};
    argv.insert(argv.end(), flags.begin(), flags.end());
    CommandResult refused = RunCommand(argv, {}, absl::Seconds(60));
    EXPECT_EQ(refused.exit_code, 1) << refused.out;
    EXPECT_NE(refused.out.find(message), std::string::npos) << refused.out;
  }
}

// One server per state folder and per port: a second gradlabd on either exits, saying
// which, and the first goes on serving what it holds.
TEST(GradlabdStateTest, ASecondServerOnTheSameStateDirOrPortIsRefused) {
  const std::string state_dir = FreshTestDir("gradlabd_one_per_dir").string();
  absl::StatusOr<GradlabdProcess> first = StartGradlabd(GRADLABD_PATH, {"--state_dir=" + state_dir});
  ASSERT_TRUE(first.ok()) << first.status();
  const auto second = [](const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", GRADLABD_PATH,
                                     "--listen=127.0.0.1:0", "--http_listen=127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunCommand(argv, {}, absl::Seconds(60));
  };

  CommandResult same_dir = second({"--state_dir=" + state_dir});
  EXPECT_EQ(same_dir.exit_code, 2) << same_dir.out;
  EXPECT_NE(same_dir.out.find("--state_dir=" + state_dir + " is in use by another gradlabd (pid " +
                              std::to_string(first->process.pid()) + ")"),
            std::string::npos)
      << same_dir.out;

  const std::string other_dir = FreshTestDir("gradlabd_one_per_port").string();
  CommandResult same_port = second({"--state_dir=" + other_dir, "--listen=" + first->grpc_address});
  EXPECT_EQ(same_port.exit_code, 1) << same_port.out;
  EXPECT_NE(same_port.out.find("cannot listen on " + first->grpc_address), std::string::npos)
      << same_port.out;
  const std::string http_address = "127.0.0.1:" + std::to_string(first->http_port);
  CommandResult same_http_port =
      second({"--state_dir=" + other_dir, "--http_listen=" + http_address});
  EXPECT_EQ(same_http_port.exit_code, 1) << same_http_port.out;
  EXPECT_NE(same_http_port.out.find("cannot listen for HTTP on " + http_address), std::string::npos)
      << same_http_port.out;

  // The first still answers, on both ports.
  auto stub = v1::ExperimentService::NewStub(
      grpc::CreateChannel(first->grpc_address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  v1::ServerInfo info;
  EXPECT_TRUE(stub->GetServerInfo(&context, {}, &info).ok());
}

TEST(GradlabdStateTest, ADamagedStateDatabaseStopsTheStartAndIsLeftAsItWas) {
  const std::filesystem::path state_dir = FreshTestDir("gradlabd_state");
  std::filesystem::create_directories(state_dir);
  const std::string garbage(10000, 'x');
  std::ofstream(state_dir / "gradlab.db", std::ios::binary) << garbage;
  // Through a shell, to read what it says on stderr.
  CommandResult refused =
      RunCommand({"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", GRADLABD_PATH, "--listen=127.0.0.1:0",
                  "--http_listen=127.0.0.1:0", "--state_dir=" + state_dir.string()},
                 {}, absl::Seconds(60));
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_EQ(refused.out.find("listening"), std::string::npos) << refused.out;
  EXPECT_NE(refused.out.find("gradlabd: the state database " + (state_dir / "gradlab.db").string() +
                             " cannot be used: "),
            std::string::npos)
      << refused.out;
  EXPECT_NE(refused.out.find("gradlabd has changed nothing in " + state_dir.string()),
            std::string::npos);
  std::ifstream in(state_dir / "gradlab.db", std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), garbage);
  // Beside it only the folder's lock file, taken before anything is read: no journal.
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(state_dir)) {
    names.insert(entry.path().filename().string());
  }
  EXPECT_EQ(names, (std::set<std::string>{"LOCK", "gradlab.db"}));
}

// A state folder on a read-only file system: gradlabd says which folder and why, and
// neither the folder nor the server's other state is touched.
TEST(GradlabdStateTest, AReadOnlyStateFolderStopsTheStartNamingThePathAndTheCause) {
  const std::filesystem::path mount_point = FreshTestDir("gradlabd_state_ro");
  SmallDisk disk(mount_point, 8);
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.why_not();
  const std::filesystem::path state_dir = mount_point / "state";
  {
    absl::StatusOr<GradlabdProcess> server =
        StartGradlabd(GRADLABD_PATH, {"--state_dir=" + state_dir.string()});
    ASSERT_TRUE(server.ok()) << server.status();
    server->process.Signal(SIGTERM);
    ASSERT_EQ(server->process.Wait(absl::Seconds(30)), 0);
  }
  ASSERT_EQ(RunCommand({"/usr/bin/mount", "-o", "remount,ro", mount_point.string()}).exit_code, 0);
  CommandResult refused =
      RunCommand({"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", GRADLABD_PATH, "--listen=127.0.0.1:0",
                  "--http_listen=127.0.0.1:0", "--state_dir=" + state_dir.string()},
                 {}, absl::Seconds(60));
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_NE(refused.out.find(state_dir.string()), std::string::npos) << refused.out;
  EXPECT_NE(refused.out.find("Read-only file system"), std::string::npos) << refused.out;
  // The full check reads it where it is.
  const CommandResult check = RunCommand({GRADLABD_PATH, "--check_state=" + state_dir.string()});
  EXPECT_EQ(check.exit_code, 0) << check.out;
}

}  // namespace
}  // namespace gradlab
