// End to end: the real gradlabd killed with SIGKILL at the worst moments, restarted with
// the same --state_dir. Its runs must finish with the per-epoch metrics of a run that
// was never interrupted, and a client that follows a run across the restart (reconnecting
// with from_sequence) must see every epoch exactly once.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/store/event_journal.h"
#include "tests/testing/child_process.h"
#include "tests/testing/metrics_events.h"
#include "tests/testing/small_disk.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// About two seconds an epoch on one thread, several progress events in each.
v1::StartExperimentRequest Spec() {
  v1::StartExperimentRequest request;
  v1::ExperimentSpec* spec = request.mutable_spec();
  spec->set_model("simple_cnn");
  spec->set_dataset("synthetic");
  spec->set_epochs(3);
  spec->set_max_train_samples(2048);
  spec->set_max_test_samples(256);
  spec->set_batch_size(64);
  spec->set_augment(true);
  spec->set_gradient_every_n_steps(8);
  return request;
}

class Server {
 public:
  explicit Server(const fs::path& state_dir, std::vector<std::string> env = {},
                  const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {GRADLABD_PATH, "--listen=127.0.0.1:0",
                                     "--http_listen=127.0.0.1:0", "--threads_per_job=1",
                                     "--state_dir=" + state_dir.string()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    absl::StatusOr<ChildProcess> process = ChildProcess::Start(argv, env);
    EXPECT_TRUE(process.ok()) << process.status();
    process_.emplace(*std::move(process));
    absl::StatusOr<std::string> line =
        process_->ReadLineContaining("listening on port", absl::Seconds(60));
    if (!line.ok()) {  // its own messages are on the test's stderr
      ADD_FAILURE() << "gradlabd did not start: " << line.status();
      return;
    }
    stub_ = v1::ExperimentService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + line->substr(line->rfind(' ') + 1), grpc::InsecureChannelCredentials()));
  }

  void Kill() {
    process_->Signal(SIGKILL);
    EXPECT_EQ(process_->Wait(absl::Seconds(10)), 128 + SIGKILL);
  }

  v1::Experiment Start(const v1::StartExperimentRequest& request) {
    if (stub_ == nullptr) return {};
    grpc::ClientContext context;
    v1::Experiment experiment;
    const grpc::Status status = stub_->StartExperiment(&context, request, &experiment);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return experiment;
  }

  // Reads the experiment's metrics from `from_sequence` into `seen` until the stream
  // ends, calling `on_event` with each; returns the stream's status.
  grpc::Status Follow(const std::string& id, int64_t from_sequence,
                      std::vector<v1::MetricsEvent>& seen,
                      const std::function<void(const v1::MetricsEvent&)>& on_event = nullptr) {
    if (stub_ == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "not started");
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
    v1::StreamMetricsRequest request;
    request.set_id(id);
    request.set_from_sequence(from_sequence);
    auto stream = stub_->StreamMetrics(&context, request);
    v1::MetricsEvent event;
    while (stream->Read(&event)) {
      seen.push_back(event);
      if (on_event) on_event(event);
    }
    return stream->Finish();
  }

 private:
  std::optional<ChildProcess> process_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

// Polls for `path` (every 5 ms, so that a kill right after lands inside a paused write).
bool WaitForFile(const fs::path& path) {
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (!fs::exists(path) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  return fs::exists(path);
}

class CrashRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override { state_dir_ = FreshTestDir("crash_recovery"); }

  // The events of Spec() run without interruption: computed once, on a server of its own.
  static const std::vector<v1::MetricsEvent>& Uninterrupted() {
    static const auto* events = [] {
      // Of this process: ctest runs the tests of this file as processes side by side.
      const fs::path dir = FreshSuiteDir("crash_recovery_uninterrupted");
      Server server(dir);
      auto* events = new std::vector<v1::MetricsEvent>;
      EXPECT_TRUE(server.Follow(server.Start(Spec()).id(), 0, *events).ok());
      return events;
    }();
    return *events;
  }

  // Every epoch once, in order, with exactly the uninterrupted run's numbers; so are the
  // predictions at initialisation and after each epoch, the newest of each epoch (an
  // epoch whose checkpoint could not be saved is evaluated again: the stream says so).
  static void ExpectUninterruptedEpochs(const std::vector<v1::MetricsEvent>& events) {
    std::vector<v1::Predictions> predicted;
    for (v1::Predictions& p : PredictionsOf(events)) {
      ASSERT_LE(p.epoch(), static_cast<int>(predicted.size())) << "an epoch was skipped";
      if (p.epoch() < static_cast<int>(predicted.size())) predicted.resize(p.epoch());
      predicted.push_back(std::move(p));
    }
    const std::vector<v1::Predictions> expected_predictions = PredictionsOf(Uninterrupted());
    ASSERT_EQ(expected_predictions.size(), 4u);
    ASSERT_EQ(predicted.size(), expected_predictions.size());
    for (size_t i = 0; i < predicted.size(); ++i) {
      EXPECT_EQ(predicted[i].epoch(), static_cast<int>(i));
      EXPECT_THAT(predicted[i].confusion(),
                  ::testing::ElementsAreArray(expected_predictions[i].confusion()))
          << "epoch " << i;
      EXPECT_THAT(predicted[i].mean_softmax(),
                  ::testing::ElementsAreArray(expected_predictions[i].mean_softmax()))
          << "epoch " << i;
      EXPECT_EQ(predicted[i].test_loss(), expected_predictions[i].test_loss()) << "epoch " << i;
    }
    const std::vector<v1::EpochMetrics> got = Epochs(events);
    const std::vector<v1::EpochMetrics> expected = Epochs(Uninterrupted());
    ASSERT_EQ(expected.size(), 3u);
    ASSERT_EQ(got.size(), expected.size()) << StateChanges(events);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].epoch(), static_cast<int>(i + 1));
      EXPECT_EQ(got[i].train_loss(), expected[i].train_loss()) << "epoch " << i + 1;
      EXPECT_EQ(got[i].train_accuracy(), expected[i].train_accuracy()) << "epoch " << i + 1;
      EXPECT_EQ(got[i].test_loss(), expected[i].test_loss()) << "epoch " << i + 1;
      EXPECT_EQ(got[i].test_accuracy(), expected[i].test_accuracy()) << "epoch " << i + 1;
    }
    for (size_t i = 1; i < events.size(); ++i) {
      EXPECT_GT(events[i].sequence(), events[i - 1].sequence());
    }
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().state_change().state(), v1::SUCCEEDED);
  }

  // Starts Spec() on a server whose checkpoint writes pause 3 s after `step`, and kills it
  // the moment the run's checkpoint folder holds `file`. Returns the experiment's id.
  std::string KillWhenCheckpointFileAppears(const std::string& step, const std::string& file) {
    Server server(state_dir_, {"GRADLAB_TESTING_CHECKPOINT_PAUSE=" + step + ":3000"});
    const std::string id = server.Start(Spec()).id();
    EXPECT_TRUE(WaitForFile(state_dir_ / "checkpoints" / id / file));
    server.Kill();
    return id;
  }

  // Restarts the server and follows the experiment from its first event to its end.
  std::vector<v1::MetricsEvent> RestartAndFollow(const std::string& id) {
    Server restarted(state_dir_);
    std::vector<v1::MetricsEvent> events;
    EXPECT_TRUE(restarted.Follow(id, 0, events).ok());
    return events;
  }

  fs::path state_dir_;
};

// gradlabd --backup_state copies the folder of a server that is training; a server started
// on the copy has the run as it was then and trains it to the same end.
TEST_F(CrashRecoveryTest, ABackupTakenWhileARunTrainsRestoresAndTheRunFinishesTheSame) {
  const fs::path backup = state_dir_.string() + "-backup";
  fs::remove_all(backup);
  std::string id;
  {
    Server server(state_dir_);
    id = server.Start(Spec()).id();
    std::vector<v1::MetricsEvent> seen;
    bool backed_up = false;
    server.Follow(id, 0, seen, [&](const v1::MetricsEvent& event) {
      if (!backed_up && event.has_batch_progress() && event.batch_progress().epoch() == 2) {
        const CommandResult copy = RunCommand({GRADLABD_PATH, "--state_dir=" + state_dir_.string(),
                                               "--backup_state=" + backup.string()});
        EXPECT_EQ(copy.exit_code, 0) << copy.out;
        backed_up = true;
      }
    });
    ASSERT_TRUE(backed_up);
  }
  const CommandResult check = RunCommand({GRADLABD_PATH, "--check_state=" + backup.string()});
  EXPECT_EQ(check.exit_code, 0) << check.out;
  EXPECT_THAT(check.out, HasSubstr(": intact"));

  Server restored(backup);
  std::vector<v1::MetricsEvent> events;
  ASSERT_TRUE(restored.Follow(id, 0, events).ok());
  ExpectUninterruptedEpochs(events);
  EXPECT_THAT(StateChanges(events), HasSubstr("RUNNING: resumed after a restart from the "));
}

// The state folder's disk fills while a run trains: the run goes back to the queue (its
// state change stored, from the reserve), waits until there is room, then goes on from its
// last checkpoint to the same end; all of it survives a SIGKILL.
TEST_F(CrashRecoveryTest, AFullDiskRequeuesTheRunWhichGoesOnWhenThereIsRoomAgain) {
  const fs::path mount_point = state_dir_.string() + "-disk";
  SmallDisk disk(mount_point, 16);
  if (!disk.mounted()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (needs root in a namespace that allows it): "
                 << disk.why_not();
  }
  const fs::path state_dir = mount_point / "state";
  const fs::path filler = mount_point / "filler";
  const std::vector<std::string> flags = {"--state_reserve=1MiB"};
  std::string id;
  {
    Server server(state_dir, {}, flags);
    // Room for the run's first checkpoint (1.4 MB) and its events, not for the second.
    const int64_t leave = 2'300'000;
    ASSERT_EQ(RunCommand({"/usr/bin/fallocate", "-l", std::to_string(disk.free_bytes() - leave),
                          filler.string()})
                  .exit_code,
              0);
    id = server.Start(Spec()).id();
    std::vector<v1::MetricsEvent> seen;
    bool freed = false;
    ASSERT_TRUE(server
                    .Follow(id, 0, seen,
                            [&](const v1::MetricsEvent& event) {
                              if (!freed && event.state_change().state() == v1::QUEUED &&
                                  absl::StrContains(event.state_change().reason(),
                                                    "when the state folder has room")) {
                                fs::remove(filler);  // the disk has room again
                                freed = true;
                              }
                            })
                    .ok());
    ASSERT_TRUE(freed) << StateChanges(seen);
    ExpectUninterruptedEpochs(seen);
    // The reason names the folder (and the system's or SQLite's word for a full disk).
    EXPECT_THAT(StateChanges(seen), HasSubstr(state_dir.string()));
    EXPECT_THAT(StateChanges(seen), HasSubstr("RUNNING: the state folder has room again; goes "
                                              "on from the checkpoint of epoch "));
    server.Kill();
  }
  Server restarted(state_dir, {}, flags);
  std::vector<v1::MetricsEvent> stored;
  ASSERT_TRUE(restarted.Follow(id, 0, stored).ok());
  ExpectUninterruptedEpochs(stored);
  EXPECT_THAT(StateChanges(stored), HasSubstr("when the state folder has room"));
}

TEST_F(CrashRecoveryTest, KilledMidEpochTheRunResumesAndAFollowerSeesEveryEpochOnce) {
  std::vector<v1::MetricsEvent> seen;
  std::string id;
  {
    Server server(state_dir_);
    id = server.Start(Spec()).id();
    bool killed = false;
    const grpc::Status cut = server.Follow(id, 0, seen, [&](const v1::MetricsEvent& event) {
      if (!killed && event.has_batch_progress() && event.batch_progress().epoch() == 2) {
        server.Kill();  // in the middle of epoch 2
        killed = true;
      }
    });
    EXPECT_FALSE(cut.ok());
    ASSERT_TRUE(killed);
  }
  Server restarted(state_dir_);
  ASSERT_TRUE(restarted.Follow(id, seen.back().sequence() + 1, seen).ok());
  ExpectUninterruptedEpochs(seen);
  EXPECT_THAT(StateChanges(seen),
              HasSubstr("RUNNING: resumed after a restart from the checkpoint of epoch 1\n"));
}

TEST_F(CrashRecoveryTest, KilledWhileACheckpointIsBeingWrittenTheRunResumesFromThePreviousOne) {
  // The checkpoint of epoch 2 is written to its temporary file, not yet renamed.
  const std::string id = KillWhenCheckpointFileAppears("written", "epoch-0002.ckpt.tmp");
  EXPECT_TRUE(fs::exists(state_dir_ / "checkpoints" / id / "epoch-0001.ckpt"));
  EXPECT_FALSE(fs::exists(state_dir_ / "checkpoints" / id / "epoch-0002.ckpt"));
  const std::vector<v1::MetricsEvent> events = RestartAndFollow(id);
  ExpectUninterruptedEpochs(events);
  EXPECT_THAT(StateChanges(events),
              HasSubstr("RUNNING: resumed after a restart from the checkpoint of epoch 1\n"));
  EXPECT_FALSE(fs::exists(state_dir_ / "checkpoints" / id / "epoch-0002.ckpt.tmp"));
}

// The checkpoint of epoch 2 is in place, its epoch's metrics are not stored yet: the
// checkpoint carries them, so the epoch is neither lost nor run twice.
TEST_F(CrashRecoveryTest, KilledBetweenACheckpointAndItsEpochsMetricsNothingIsLost) {
  const std::string id = KillWhenCheckpointFileAppears("renamed", "epoch-0002.ckpt");
  const std::vector<v1::MetricsEvent> events = RestartAndFollow(id);
  ExpectUninterruptedEpochs(events);
  EXPECT_THAT(StateChanges(events),
              HasSubstr("RUNNING: resumed after a restart from the checkpoint of epoch 2\n"));
  // What the restart logs is numbered past the events that may have been sent before the
  // crash; epoch 2's metrics come from the checkpoint, read by the attempt that resumes.
  int queued_again = 0, metrics_of_epoch_two = 0;
  for (size_t i = 1; i < events.size(); ++i) {
    if (absl::StrContains(events[i].state_change().reason(), "queued again after a restart")) {
      ++queued_again;
      EXPECT_GT(events[i].sequence(), events[i - 1].sequence() + kMaxUncommittedEvents);
    }
    if (events[i].epoch_metrics().epoch() == 2) {
      ++metrics_of_epoch_two;
      EXPECT_THAT(events[i - 1].state_change().reason(),
                  HasSubstr("resumed after a restart from the checkpoint of epoch 2"));
    }
  }
  EXPECT_EQ(queued_again, 1);
  EXPECT_EQ(metrics_of_epoch_two, 1);
}

TEST_F(CrashRecoveryTest, KilledWithExperimentsQueuedTheyKeepTheirOrderAndRun) {
  std::string first, second;
  {
    Server server(state_dir_);
    first = server.Start(Spec()).id();
    second = server.Start(Spec()).id();
    server.Kill();  // the moment StartExperiment has returned
  }
  Server restarted(state_dir_);
  std::vector<v1::MetricsEvent> first_events, second_events;
  ASSERT_TRUE(restarted.Follow(second, 0, second_events).ok());
  ASSERT_TRUE(restarted.Follow(first, 0, first_events).ok());
  ExpectUninterruptedEpochs(first_events);
  ExpectUninterruptedEpochs(second_events);
  // The first started before the second.
  auto started = [](const std::vector<v1::MetricsEvent>& events) {
    for (const v1::MetricsEvent& event : events) {
      if (event.state_change().state() == v1::RUNNING)
        return event.time().seconds() * 1000000000 + event.time().nanos();
    }
    return int64_t{0};
  };
  EXPECT_LT(started(first_events), started(second_events));
}

}  // namespace
}  // namespace gradlab
