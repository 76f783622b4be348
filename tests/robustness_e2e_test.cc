// End to end: nothing a user sends takes the real gradlabd down for good. A run that kills
// the server while it loads its dataset or reads its checkpoint is given up after three
// attempts in a row, and the server serves all along; loading honours cancel; a FIFO
// where a dataset file should be is refused, and SIGTERM still stops the server.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Far more than gradlabd needs (it reserves address space for threads and LibTorch), far
// less than would hurt a shared machine: a regression that allocates without bound fails.
constexpr int64_t kAddressSpaceLimit = int64_t{16} << 30;

std::string BigEndian(uint32_t value) {
  return {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
          static_cast<char>(value >> 8), static_cast<char>(value)};
}

// An MNIST-format folder of `train` + 32 test images (1.5 MB for 2000: tens of 64 KiB reads).
fs::path WriteMnistFolder(const std::string& name, int train) {
  const fs::path dir = FreshTestDir(name);
  fs::create_directories(dir);
  const auto write = [&](const std::string& file, int count, bool images) {
    std::ofstream out(dir / file, std::ios::binary);
    out << std::string("\0\0\x08", 3) << static_cast<char>(images ? 3 : 1) << BigEndian(count);
    if (images) out << BigEndian(28) << BigEndian(28);
    for (int i = 0; i < count * (images ? 28 * 28 : 1); ++i) {
      out << static_cast<char>(images ? (i * 7) % 256 : i % 10);
    }
  };
  write("train-images-idx3-ubyte", train, true);
  write("train-labels-idx1-ubyte", train, false);
  write("t10k-images-idx3-ubyte", 32, true);
  write("t10k-labels-idx1-ubyte", 32, false);
  return dir;
}

v1::StartExperimentRequest MlpOn(const fs::path& data_dir, int epochs) {
  v1::StartExperimentRequest request;
  v1::ExperimentSpec* spec = request.mutable_spec();
  spec->set_model("mlp");
  spec->set_dataset("mnist");
  spec->set_data_dir(data_dir.string());
  spec->set_epochs(epochs);
  spec->set_batch_size(50);
  return request;
}

class Server {
 public:
  Server(const fs::path& state_dir, std::vector<std::string> env = {},
         std::vector<std::string> flags = {}) {
    flags.insert(flags.begin(), {"--threads_per_job=1", "--state_dir=" + state_dir.string(),
                                 "--allowed_data_dirs=" + ::testing::TempDir()});
    absl::StatusOr<GradlabdProcess> started =
        StartGradlabd(GRADLABD_PATH, flags, env, kAddressSpaceLimit);
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return;
    process_.emplace(*std::move(started));
    stub_ = v1::ExperimentService::NewStub(
        grpc::CreateChannel(process_->grpc_address, grpc::InsecureChannelCredentials()));
  }

  bool started() const { return process_.has_value(); }
  ChildProcess& process() { return process_->process; }

  absl::StatusOr<v1::Experiment> Start(const v1::StartExperimentRequest& request) {
    grpc::ClientContext context;
    v1::Experiment experiment;
    const grpc::Status status = stub_->StartExperiment(&context, request, &experiment);
    if (!status.ok())
      return absl::Status(absl::StatusCode(status.error_code()), status.error_message());
    return experiment;
  }

  absl::StatusOr<v1::Experiment> Get(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetExperimentRequest request;
    request.set_id(id);
    v1::Experiment experiment;
    const grpc::Status status = stub_->GetExperiment(&context, request, &experiment);
    if (!status.ok()) return absl::UnavailableError(status.error_message());
    return experiment;
  }

  // Polls until `done` holds (or two minutes pass); returns the last answer.
  v1::Experiment WaitFor(const std::string& id, std::function<bool(const v1::Experiment&)> done) {
    const absl::Time deadline = absl::Now() + absl::Minutes(2);
    v1::Experiment last;
    while (absl::Now() < deadline) {
      absl::StatusOr<v1::Experiment> experiment = Get(id);
      if (experiment.ok()) {
        last = *experiment;
        if (done(last)) break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return last;
  }

  absl::StatusOr<v1::Experiment> Cancel(const std::string& id) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::CancelExperimentRequest request;
    request.set_id(id);
    v1::Experiment experiment;
    const grpc::Status status = stub_->CancelExperiment(&context, request, &experiment);
    if (!status.ok())
      return absl::Status(absl::StatusCode(status.error_code()), status.error_message());
    return experiment;
  }

  std::optional<int> Stop(int signal_number) {
    process().Signal(signal_number);
    return process().Wait(absl::Seconds(30));
  }

 private:
  std::optional<GradlabdProcess> process_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

bool Running(const v1::Experiment& e) { return e.state() == v1::RUNNING; }
bool Finished(const v1::Experiment& e) {
  return e.state() == v1::SUCCEEDED || e.state() == v1::FAILED || e.state() == v1::CANCELLED;
}

// Killed three times while it loads its dataset (a pause in every read keeps it there),
// the run is given up on the next start, which serves, and trains what comes next.
TEST(RobustnessTest, ARunKilledThreeTimesWhileLoadingFailsAndTheServerServesOn) {
  const fs::path state_dir = FreshTestDir("robust_killed_loading");
  const fs::path data = WriteMnistFolder("robust_killed_loading_data", 2000);
  const std::vector<std::string> slow_reads = {"GRADLAB_TESTING_RUN_FAULT=dataset read:200"};
  std::string id;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    Server server(state_dir, slow_reads);
    ASSERT_TRUE(server.started());
    if (attempt == 1) {
      absl::StatusOr<v1::Experiment> started = server.Start(MlpOn(data, 1));
      ASSERT_TRUE(started.ok()) << started.status();
      id = started->id();
    } else {
      // It serves before the run is resumed: the run is there, waiting or started again.
      absl::StatusOr<v1::Experiment> restored = server.Get(id);
      ASSERT_TRUE(restored.ok()) << restored.status();
      EXPECT_THAT(restored->state(), ::testing::AnyOf(v1::QUEUED, v1::RUNNING));
    }
    const v1::Experiment running = server.WaitFor(id, [&](const v1::Experiment& e) {
      return Running(e) && e.attempts_since_epoch() == attempt;
    });
    ASSERT_EQ(running.state(), v1::RUNNING);
    ASSERT_EQ(running.attempts_since_epoch(), attempt) << "the count survives the restarts";
    EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
  }

  Server server(state_dir);
  ASSERT_TRUE(server.started());
  absl::StatusOr<v1::Experiment> given_up = server.Get(id);
  ASSERT_TRUE(given_up.ok());
  EXPECT_EQ(given_up->state(), v1::FAILED);
  EXPECT_EQ(given_up->error(),
            "gave up after 3 attempts in a row that finished no epoch; the last was interrupted "
            "when the server stopped while it ran (killed, crashed or out of memory; the server's "
            "log says more)");
  absl::StatusOr<v1::Experiment> next = server.Start(MlpOn(data, 1));
  ASSERT_TRUE(next.ok()) << next.status();
  const v1::Experiment done = server.WaitFor(next->id(), Finished);
  EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
  EXPECT_EQ(done.attempts_since_epoch(), 0) << "an epoch finished";
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

// A checkpoint that kills the process as it is read: the server prints its ports and
// serves before each try, and the third try is the last.
TEST(RobustnessTest, ARunThatKillsTheServerAsItResumesIsGivenUpAfterThreeTries) {
  const fs::path state_dir = FreshTestDir("robust_killed_resuming");
  const fs::path data = WriteMnistFolder("robust_killed_resuming_data", 2000);
  std::string id;
  {
    // Killed once epoch 1 is recorded, with 199 epochs to go: it has a checkpoint to
    // resume from.
    Server server(state_dir);
    ASSERT_TRUE(server.started());
    absl::StatusOr<v1::Experiment> started = server.Start(MlpOn(data, 200));
    ASSERT_TRUE(started.ok()) << started.status();
    id = started->id();
    const v1::Experiment first_epoch =
        server.WaitFor(id, [](const v1::Experiment& e) { return e.last_metrics().epoch() >= 1; });
    ASSERT_GE(first_epoch.last_metrics().epoch(), 1);
    ASSERT_EQ(first_epoch.state(), v1::RUNNING);
    EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
  }
  for (int attempt = 1; attempt <= 3; ++attempt) {
    Server server(state_dir, {"GRADLAB_TESTING_RUN_FAULT=resume:kill"});
    ASSERT_TRUE(server.started()) << "it serves before it resumes the run";
    EXPECT_EQ(server.process().Wait(absl::Seconds(60)), 128 + SIGKILL);
  }
  Server server(state_dir);
  ASSERT_TRUE(server.started());
  absl::StatusOr<v1::Experiment> given_up = server.Get(id);
  ASSERT_TRUE(given_up.ok());
  EXPECT_EQ(given_up->state(), v1::FAILED);
  EXPECT_THAT(given_up->error(), HasSubstr("gave up after 3 attempts in a row"));
  EXPECT_GE(given_up->last_metrics().epoch(), 1) << "its finished epochs are kept";
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

// A graceful stop is not held against a run: stopping a server three times while a run
// loads leaves it to go on.
TEST(RobustnessTest, AGracefulStopDoesNotCountAsAnAttempt) {
  const fs::path state_dir = FreshTestDir("robust_graceful");
  const fs::path data = WriteMnistFolder("robust_graceful_data", 2000);
  const std::vector<std::string> slow_reads = {"GRADLAB_TESTING_RUN_FAULT=dataset read:200"};
  std::string id;
  for (int stop = 1; stop <= 3; ++stop) {
    Server server(state_dir, slow_reads);
    ASSERT_TRUE(server.started());
    if (stop == 1) id = server.Start(MlpOn(data, 1))->id();
    const v1::Experiment running = server.WaitFor(id, Running);
    EXPECT_EQ(running.attempts_since_epoch(), 1);
    EXPECT_EQ(server.Stop(SIGTERM), 0);
  }
  Server server(state_dir);
  const v1::Experiment done = server.WaitFor(id, Finished);
  EXPECT_EQ(done.state(), v1::SUCCEEDED) << done.error();
}

// Cancel reaches a run while it reads its dataset, and the slot takes the next run.
TEST(RobustnessTest, ARunIsCancelledWhileItsDatasetLoads) {
  const fs::path data = WriteMnistFolder("robust_cancel_loading_data", 2000);
  Server server(FreshTestDir("robust_cancel_loading"),
                {"GRADLAB_TESTING_RUN_FAULT=dataset read:1000"});
  ASSERT_TRUE(server.started());
  const std::string id = server.Start(MlpOn(data, 1))->id();
  ASSERT_EQ(server.WaitFor(id, Running).state(), v1::RUNNING);
  absl::SleepFor(absl::Milliseconds(300));  // into the reads
  absl::StatusOr<v1::Experiment> cancelled = server.Cancel(id);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
  EXPECT_EQ(cancelled->last_metrics().epoch(), 0) << "no epoch trained";
  v1::StartExperimentRequest synthetic;
  synthetic.mutable_spec()->set_model("mlp");
  synthetic.mutable_spec()->set_dataset("synthetic");
  synthetic.mutable_spec()->set_epochs(1);
  const std::string next = server.Start(synthetic)->id();
  EXPECT_EQ(server.WaitFor(next, Finished).state(), v1::SUCCEEDED);
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

// A FIFO never blocks the training thread: the run fails naming it, the next one runs,
// and SIGTERM stops the server.
TEST(RobustnessTest, AFifoDatasetIsRefusedAndTheServerStops) {
  const fs::path data = WriteMnistFolder("robust_fifo_data", 100);
  fs::remove(data / "train-labels-idx1-ubyte");
  ASSERT_EQ(mkfifo((data / "train-labels-idx1-ubyte").c_str(), 0600), 0);
  Server server(FreshTestDir("robust_fifo"));
  ASSERT_TRUE(server.started());
  const std::string id = server.Start(MlpOn(data, 1))->id();
  const v1::Experiment failed = server.WaitFor(id, Finished);
  EXPECT_EQ(failed.state(), v1::FAILED);
  EXPECT_EQ(failed.error(), (data / "train-labels-idx1-ubyte").string() +
                                ": is a FIFO; datasets are read from regular files only");
  v1::StartExperimentRequest synthetic;
  synthetic.mutable_spec()->set_model("mlp");
  synthetic.mutable_spec()->set_dataset("synthetic");
  synthetic.mutable_spec()->set_epochs(1);
  EXPECT_EQ(server.WaitFor(server.Start(synthetic)->id(), Finished).state(), v1::SUCCEEDED);
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

// The specs that once had the kernel end the server (and then every restart that resumed
// them) are refused at submit, naming their estimate and what to lower. The server runs
// under an address-space limit, so that a regression fails here instead of exhausting
// the machine.
TEST(RobustnessTest, SpecsThatWouldExhaustMemoryAreRefusedBeforeAnyAllocation) {
  // A fixed limit, so that the test means the same on any machine; the default on this
  // project's 24 GiB machines (about 17.8 GiB) refuses them too (memory_estimate_test).
  Server server(FreshTestDir("robust_memory"), {}, {"--max_run_memory=4GiB"});
  ASSERT_TRUE(server.started());
  v1::StartExperimentRequest big_batch;
  big_batch.mutable_spec()->set_model("resnet");
  big_batch.mutable_spec()->set_dataset("synthetic");
  big_batch.mutable_spec()->set_batch_size(4096);
  absl::StatusOr<v1::Experiment> refused = server.Start(big_batch);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::AllOf(HasSubstr("the run is estimated to need "),
                               HasSubstr("more than the 4.0 GiB this server allows a run (gradlabd "
                                         "--max_run_memory); lower batch_size (4096)")));

  v1::StartExperimentRequest big_dataset;
  big_dataset.mutable_spec()->set_model("mlp");
  big_dataset.mutable_spec()->set_dataset("synthetic");
  big_dataset.mutable_spec()->set_max_train_samples(2'000'000);
  refused = server.Start(big_dataset);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("lower max_train_samples or max_test_samples"));

  // Neither was kept; the server trains what fits, and says what it estimated.
  v1::StartExperimentRequest fits;
  fits.mutable_spec()->set_model("mlp");
  fits.mutable_spec()->set_dataset("synthetic");
  fits.mutable_spec()->set_epochs(1);
  absl::StatusOr<v1::Experiment> started = server.Start(fits);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_GT(started->estimated_peak_bytes(), 0);
  EXPECT_EQ(server.WaitFor(started->id(), Finished).state(), v1::SUCCEEDED);
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

// A lower --max_run_memory on restart: a queued run that no longer fits fails when its
// turn comes, saying why, and does not start.
TEST(RobustnessTest, AQueuedRunOverALoweredLimitFailsWhenItsTurnComes) {
  const fs::path state_dir = FreshTestDir("robust_lowered_limit");
  v1::StartExperimentRequest request;
  request.mutable_spec()->set_model("simple_cnn");
  request.mutable_spec()->set_dataset("synthetic");
  request.mutable_spec()->set_batch_size(512);
  std::string blocker, queued;
  {
    Server server(state_dir);
    ASSERT_TRUE(server.started());
    v1::StartExperimentRequest slow = request;
    slow.mutable_spec()->set_epochs(1000);
    blocker = server.Start(slow)->id();
    queued = server.Start(request)->id();
    EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
  }
  absl::StatusOr<GradlabdProcess> lowered =
      StartGradlabd(GRADLABD_PATH, {"--state_dir=" + state_dir.string(), "--max_run_memory=64MiB"},
                    {}, kAddressSpaceLimit);
  ASSERT_TRUE(lowered.ok()) << lowered.status();
  auto stub = v1::ExperimentService::NewStub(
      grpc::CreateChannel(lowered->grpc_address, grpc::InsecureChannelCredentials()));
  for (const std::string& id : {blocker, queued}) {
    v1::Experiment experiment;
    for (int i = 0; i < 500 && experiment.state() != v1::FAILED; ++i) {
      grpc::ClientContext context;
      v1::GetExperimentRequest get;
      get.set_id(id);
      ASSERT_TRUE(stub->GetExperiment(&context, get, &experiment).ok());
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(experiment.state(), v1::FAILED);
    EXPECT_THAT(experiment.error(),
                HasSubstr("more than the 64 MiB this server allows a run (gradlabd "
                          "--max_run_memory)"));
  }
}

// A spec that cannot train is refused at submit, with what to change.
TEST(RobustnessTest, ASpecThatCannotTrainIsRefusedAtSubmit) {
  Server server(FreshTestDir("robust_untrainable"));
  ASSERT_TRUE(server.started());
  v1::StartExperimentRequest request;
  request.mutable_spec()->set_model("mlp");
  request.mutable_spec()->set_dataset("synthetic");
  request.mutable_spec()->set_batch_size(1);
  absl::StatusOr<v1::Experiment> refused = server.Start(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("spec.batch_size: 1 is too small: a batch needs at least 2 samples"));
}

}  // namespace
}  // namespace gradlab
