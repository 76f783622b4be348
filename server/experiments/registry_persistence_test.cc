// The registry over a real SQLite store and real checkpoint files: what survives a
// restart, how an interrupted run resumes, and what a damaged or full disk does.
#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/experiment_state.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/experiments/experiment_registry.h"
#include "server/experiments/testing/read_log.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

v1::StartExperimentRequest Quick(int epochs, const std::string& request_id = "") {
  v1::StartExperimentRequest request;
  request.set_request_id(request_id);
  v1::ExperimentSpec* spec = request.mutable_spec();
  spec->set_model("simple_cnn");
  spec->set_dataset("synthetic");
  spec->set_epochs(epochs);
  spec->set_max_train_samples(512);
  spec->set_max_test_samples(128);
  spec->set_batch_size(32);
  spec->set_augment(true);
  spec->set_gradient_every_n_steps(4);
  return request;
}

std::vector<v1::EpochMetrics> Epochs(const ExperimentLog& log) {
  std::vector<v1::EpochMetrics> epochs;
  for (const v1::MetricsEvent& event : AllMetrics(log)) {
    if (event.has_epoch_metrics()) epochs.push_back(event.epoch_metrics());
  }
  return epochs;
}

std::vector<std::string> StateReasons(const ExperimentLog& log) {
  std::vector<std::string> reasons;
  for (const v1::MetricsEvent& event : AllMetrics(log)) {
    if (event.has_state_change()) {
      reasons.push_back(absl::StrCat(v1::ExperimentState_Name(event.state_change().state()), ": ",
                                     event.state_change().reason()));
    }
  }
  return reasons;
}

// Epoch metrics a resumed run must reproduce exactly (timings aside).
void ExpectSameEpochs(const std::vector<v1::EpochMetrics>& a,
                      const std::vector<v1::EpochMetrics>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].epoch(), b[i].epoch());
    EXPECT_EQ(a[i].train_loss(), b[i].train_loss()) << "epoch " << a[i].epoch();
    EXPECT_EQ(a[i].train_accuracy(), b[i].train_accuracy()) << "epoch " << a[i].epoch();
    EXPECT_EQ(a[i].test_loss(), b[i].test_loss()) << "epoch " << a[i].epoch();
    EXPECT_EQ(a[i].test_accuracy(), b[i].test_accuracy()) << "epoch " << a[i].epoch();
    EXPECT_EQ(a[i].best_test_accuracy(), b[i].best_test_accuracy()) << "epoch " << a[i].epoch();
  }
}

class RegistryPersistenceTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = FreshTestDir("gradlab_persistence"); }

  std::string StateDir(const std::string& name = "state") const { return (root_ / name).string(); }

  std::unique_ptr<ExperimentRegistry> Open(const std::string& state_dir,
                                           RegistryOptions options = {},
                                           StoreOptions store_options = {}) {
    options.training_slots = 1;
    options.threads_per_job = 1;
    absl::StatusOr<std::unique_ptr<ExperimentStore>> store =
        ExperimentStore::Open(state_dir, store_options);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    options.store = *std::move(store);
    absl::StatusOr<std::unique_ptr<ExperimentRegistry>> registry =
        ExperimentRegistry::Open(std::move(options));
    EXPECT_TRUE(registry.ok()) << registry.status();
    if (!registry.ok()) return nullptr;
    (*registry)->StartTraining();
    return *std::move(registry);
  }

  static v1::Experiment WaitFor(const ExperimentRegistry& registry, const std::string& id,
                                std::function<bool(const v1::Experiment&)> done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    absl::StatusOr<v1::Experiment> experiment;
    while (absl::Now() < deadline) {
      experiment = registry.GetExperiment(id);
      if (experiment.ok() && done(*experiment)) return *experiment;
      absl::SleepFor(absl::Milliseconds(5));
    }
    ADD_FAILURE() << "experiment " << id << " did not get there: " << experiment->DebugString();
    return {};
  }
  static v1::Experiment WaitForState(const ExperimentRegistry& registry, const std::string& id,
                                     v1::ExperimentState state) {
    return WaitFor(registry, id, [state](const v1::Experiment& e) { return e.state() == state; });
  }

  // The epochs of `request` run to the end without interruption, in a state dir of its own.
  std::vector<v1::EpochMetrics> Uninterrupted(const v1::StartExperimentRequest& request) {
    auto registry = Open(StateDir("uninterrupted"));
    const std::string id = registry->StartExperiment(request)->id();
    WaitForState(*registry, id, v1::SUCCEEDED);
    return Epochs(**registry->EventLog(id));
  }

  // Starts `request`, lets it run into `epoch` and stops the server there (as a restart
  // would: the experiment stays RUNNING in the store). Returns its id.
  std::string InterruptInEpoch(const v1::StartExperimentRequest& request, int epoch,
                               int64_t* last_sequence = nullptr) {
    auto registry = Open(StateDir());
    const std::string id = registry->StartExperiment(request)->id();
    WaitFor(*registry, id, [epoch](const v1::Experiment& e) { return e.current_epoch() == epoch; });
    registry->Shutdown();
    EXPECT_EQ(registry->GetExperiment(id)->state(), v1::RUNNING);
    if (last_sequence != nullptr) *last_sequence = (*registry->EventLog(id))->last_sequence();
    return id;
  }

  fs::path root_;
};

// What the store keeps of the bounded kinds is what replay serves: after a restart (the
// finished experiment's events then read from the store when first asked for) every
// stream answers exactly as before, and the database holds no event more.
TEST_F(RegistryPersistenceTest, ReplayAfterARestartIsUnchangedAndTheStoreKeepsNoMore) {
  RegistryOptions options;
  options.retention = LogRetention{/*batch_progress=*/8, /*gradient_snapshots=*/4};
  options.progress_interval = absl::ZeroDuration();  // a progress event every batch
  std::string id;
  std::vector<std::string> metrics_before, gradients_before;
  auto serialized = [](const auto& events) {
    std::vector<std::string> bytes;
    for (const auto& event : events) bytes.push_back(event.SerializeAsString());
    return bytes;
  };
  {
    auto registry = Open(StateDir(), options);
    id = registry->StartExperiment(Quick(3))->id();
    WaitForState(*registry, id, v1::SUCCEEDED);
    const std::shared_ptr<ExperimentLog> log = *registry->EventLog(id);
    metrics_before = serialized(AllMetrics(*log));
    gradients_before = serialized(AllGradients(*log));
    int progress = 0;
    for (const v1::MetricsEvent& event : AllMetrics(*log)) progress += event.has_batch_progress();
    EXPECT_EQ(progress, 8);                  // of 48
    EXPECT_EQ(gradients_before.size(), 5u);  // step 1 and the newest 4
  }
  auto registry = Open(StateDir(), options);
  const std::shared_ptr<ExperimentLog> log = *registry->EventLog(id);
  EXPECT_EQ(serialized(AllMetrics(*log)), metrics_before);
  EXPECT_EQ(serialized(AllGradients(*log)), gradients_before);
  SQLite::Database db((fs::path(StateDir()) / "gradlab.db").string(), SQLite::OPEN_READONLY);
  SQLite::Statement rows(db, "SELECT count(*) FROM events WHERE experiment_id = ?");
  rows.bind(1, id);
  ASSERT_TRUE(rows.executeStep());
  EXPECT_EQ(rows.getColumn(0).getInt64(),
            static_cast<int64_t>(metrics_before.size() + gradients_before.size()));
}

TEST_F(RegistryPersistenceTest, ExperimentsAndTheirHistorySurviveARestart) {
  std::string finished, first_queued, second_queued;
  std::vector<v1::MetricsEvent> finished_events;
  {
    auto registry = Open(StateDir());
    finished = registry->StartExperiment(Quick(2, "request-a"))->id();
    WaitForState(*registry, finished, v1::SUCCEEDED);
    finished_events = AllMetrics(**registry->EventLog(finished));
    // Kept busy, so that the next two stay queued.
    const std::string busy = registry->StartExperiment(Quick(1000))->id();
    WaitForState(*registry, busy, v1::RUNNING);
    first_queued = registry->StartExperiment(Quick(1, "request-b"))->id();
    second_queued = registry->StartExperiment(Quick(1))->id();
    absl::Notification cancelled;
    registry->CancelExperiment(busy, [&](absl::StatusOr<v1::Experiment>) { cancelled.Notify(); });
    cancelled.WaitForNotification();
    registry->Shutdown();  // before the queued ones can start
  }
  RegistryOptions options;
  auto registry = Open(StateDir(), options);
  // A watcher (WatchExperiments, the dashboard's list) first sees every restored one.
  std::set<std::string> watched;
  std::unique_ptr<ChangeCursor> cursor = registry->changes().NewCursor([] {});
  for (ChangeCursor::Next next = cursor->Read(); next.experiment != nullptr;
       next = cursor->Read()) {
    watched.insert(next.experiment->id());
  }
  EXPECT_EQ(watched.size(), 4u);
  EXPECT_EQ(watched.count(finished), 1u);
  // Finished: its record and every event, with the same sequence numbers.
  absl::StatusOr<v1::Experiment> restored = registry->GetExperiment(finished);
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(restored->state(), v1::SUCCEEDED);
  EXPECT_EQ(restored->last_metrics().epoch(), 2);
  EXPECT_EQ(restored->best_epoch(),
            restored->last_metrics().test_accuracy() == restored->best_test_accuracy() ? 2 : 1);
  std::vector<v1::MetricsEvent> events = AllMetrics(**registry->EventLog(finished));
  ASSERT_EQ(events.size(), finished_events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].SerializeAsString(), finished_events[i].SerializeAsString());
  }
  // A request id still names the experiment it created.
  EXPECT_EQ(registry->StartExperiment(Quick(2, "request-a"))->id(), finished);
  EXPECT_EQ(registry->StartExperiment(Quick(1, "request-b"))->id(), first_queued);
  // The queued ones run, in their order.
  const v1::Experiment second = WaitForState(*registry, second_queued, v1::SUCCEEDED);
  const v1::Experiment first = *registry->GetExperiment(first_queued);
  EXPECT_EQ(first.state(), v1::SUCCEEDED);
  EXPECT_LT(absl::FromUnixSeconds(first.started_time().seconds()) +
                absl::Nanoseconds(first.started_time().nanos()),
            absl::FromUnixSeconds(second.started_time().seconds()) +
                absl::Nanoseconds(second.started_time().nanos()));
  // Listing is as before: newest first, four experiments.
  v1::ListExperimentsResponse list = *registry->ListExperiments({});
  ASSERT_EQ(list.experiments_size(), 4);
  EXPECT_EQ(list.experiments(0).id(), second_queued);
  EXPECT_EQ(list.experiments(3).id(), finished);
}

TEST_F(RegistryPersistenceTest,
       AnInterruptedRunResumesFromItsLastCheckpointAndEndsAsIfUninterrupted) {
  const v1::StartExperimentRequest request = Quick(4);
  const std::vector<v1::EpochMetrics> expected = Uninterrupted(request);
  int64_t last_sequence_before = 0;
  const std::string id = InterruptInEpoch(request, 3, &last_sequence_before);
  auto registry = Open(StateDir());
  const v1::Experiment done = WaitForState(*registry, id, v1::SUCCEEDED);
  std::shared_ptr<ExperimentLog> log = *registry->EventLog(id);
  ExpectSameEpochs(Epochs(*log), expected);
  EXPECT_EQ(done.last_metrics().test_accuracy(), expected.back().test_accuracy());
  EXPECT_THAT(StateReasons(*log),
              ::testing::ElementsAre(
                  HasSubstr("QUEUED"), "RUNNING: started",
                  "QUEUED: queued again after a restart, to go on from the checkpoint of "
                  "epoch 2",
                  "RUNNING: resumed after a restart from the checkpoint of epoch 2",
                  "SUCCEEDED: finished all epochs"));
  // The events after the restart are numbered past every number given out before.
  std::vector<v1::MetricsEvent> events = AllMetrics(*log);
  auto requeued = std::find_if(events.begin(), events.end(), [](const v1::MetricsEvent& e) {
    return e.has_state_change() && e.state_change().reason().find("again") != std::string::npos;
  });
  ASSERT_NE(requeued, events.end());
  EXPECT_GT(requeued->sequence(), last_sequence_before);
  // No batch of epoch 3 from before the restart is left: the epoch's progress starts anew.
  for (auto it = events.begin(); it != requeued; ++it) {
    EXPECT_FALSE(it->has_batch_progress() && it->batch_progress().epoch() > 2);
  }
  // Gradient snapshots stay in step order, each step once.
  int64_t previous_step = 0;
  for (auto next = log->NextGradients(0); next.event != nullptr;
       next = log->NextGradients(next.event->step() + 1)) {
    EXPECT_GT(next.event->step(), previous_step);
    previous_step = next.event->step();
  }
  // While running: the last two and the best; finished: --keep_checkpoints (last, best).
  std::set<int> kept;
  for (int epoch : CheckpointFiles((fs::path(StateDir()) / "checkpoints" / id).string()).Epochs()) {
    kept.insert(epoch);
  }
  EXPECT_EQ(kept, (std::set<int>{4, done.best_epoch()}));
}

TEST_F(RegistryPersistenceTest, ARunInterruptedAgainBeforeItResumedStillEndsAsIfUninterrupted) {
  const v1::StartExperimentRequest request = Quick(3);
  const std::vector<v1::EpochMetrics> expected = Uninterrupted(request);
  const std::string id = InterruptInEpoch(request, 2);
  {
    // Restored (queued again, or already resumed) and stopped at once.
    auto registry = Open(StateDir());
    EXPECT_FALSE(IsFinished(registry->GetExperiment(id)->state()));
  }
  auto registry = Open(StateDir());
  WaitForState(*registry, id, v1::SUCCEEDED);
  ExpectSameEpochs(Epochs(**registry->EventLog(id)), expected);
}

TEST_F(RegistryPersistenceTest, ADamagedCheckpointFallsBackToThePreviousOne) {
  const v1::StartExperimentRequest request = Quick(4);
  const std::vector<v1::EpochMetrics> expected = Uninterrupted(request);
  const std::string id = InterruptInEpoch(request, 3);
  CheckpointFiles files((fs::path(StateDir()) / "checkpoints" / id).string());
  ASSERT_EQ(files.Epochs().front(), 2);
  fs::resize_file(files.PathOf(2), 100);
  auto registry = Open(StateDir());
  WaitForState(*registry, id, v1::SUCCEEDED);
  std::shared_ptr<ExperimentLog> log = *registry->EventLog(id);
  ExpectSameEpochs(Epochs(*log), expected);
  EXPECT_THAT(StateReasons(*log)[3],
              ::testing::AllOf(HasSubstr("resumed after a restart from the checkpoint of epoch 1"),
                               HasSubstr("the checkpoint of epoch 2 is unusable"),
                               HasSubstr("holds 80 bytes")));
}

TEST_F(RegistryPersistenceTest, WithoutAUsableCheckpointTheRunStartsAgainFromEpochOne) {
  const v1::StartExperimentRequest request = Quick(2);
  const std::vector<v1::EpochMetrics> expected = Uninterrupted(request);
  const std::string id = InterruptInEpoch(request, 2);
  const fs::path dir = fs::path(StateDir()) / "checkpoints" / id;
  std::ofstream(dir / "epoch-0001.ckpt", std::ios::trunc) << "garbage";
  auto registry = Open(StateDir());
  WaitForState(*registry, id, v1::SUCCEEDED);
  std::shared_ptr<ExperimentLog> log = *registry->EventLog(id);
  ExpectSameEpochs(Epochs(*log), expected);
  EXPECT_THAT(StateReasons(*log)[3],
              ::testing::AllOf(HasSubstr("started again from epoch 1 after a restart"),
                               HasSubstr("does not start with a gradlab checkpoint header")));
  EXPECT_EQ(log->NextGradients(0).event->step(), 1);
}

// A write that fails for lack of space sends the run back to the queue, to go on from its
// last checkpoint when there is room: a disk that was full once costs an attempt, not the run.
TEST_F(RegistryPersistenceTest, ACheckpointWriteWithoutRoomRequeuesTheRunWhichThenFinishes) {
  RegistryOptions options;
  options.state_room_poll = absl::Milliseconds(20);
  std::atomic<int> failures_left{1};
  options.checkpoint_hook = [&](absl::string_view step) {
    if (step == "written" && failures_left.fetch_sub(1) > 0) {
      return absl::ResourceExhaustedError("No space left on device");
    }
    return absl::OkStatus();
  };
  auto registry = Open(StateDir(), options);
  const std::string id = registry->StartExperiment(Quick(2))->id();
  WaitForState(*registry, id, v1::SUCCEEDED);
  std::vector<std::string> reasons = StateReasons(**registry->EventLog(id));
  EXPECT_THAT(
      reasons,
      ::testing::Contains("QUEUED: cannot save the checkpoint of epoch 1: No space left on device; "
                          "queued again to go on from epoch 1 when the state folder has room"));
  EXPECT_THAT(reasons, ::testing::Contains(
                           "RUNNING: the state folder has room again; goes on from epoch 1"));
  EXPECT_EQ(Epochs(**registry->EventLog(id)).size(), 2u);
}

TEST_F(RegistryPersistenceTest, ARunThatNeverFindsRoomFailsAfterItsAttemptsAndTheServerGoesOn) {
  RegistryOptions options;
  options.state_room_poll = absl::Milliseconds(20);
  options.checkpoint_hook = [](absl::string_view step) {
    return step == "written" ? absl::ResourceExhaustedError("No space left on device")
                             : absl::OkStatus();
  };
  auto registry = Open(StateDir(), options);
  const std::string id = registry->StartExperiment(Quick(2))->id();
  const v1::Experiment failed = WaitForState(*registry, id, v1::FAILED);
  EXPECT_EQ(failed.error(),
            "gave up after 3 attempts in a row that finished no epoch, each stopped by a full "
            "state folder; the last: cannot save the checkpoint of epoch 1: No space left on "
            "device");
  EXPECT_TRUE(Epochs(**registry->EventLog(id)).empty());
  EXPECT_TRUE(registry->StartExperiment(Quick(1)).ok());
}

TEST_F(RegistryPersistenceTest, AFullDatabaseFailsTheExperimentAndTheServerGoesOn) {
  std::string id;
  {
    // Room for the schema and the experiment's state changes, little more: the run's
    // events fill it within its first epochs (with 40 pages it took 20 s of training).
    StoreOptions store_options;
    store_options.max_pages = 12;
    auto registry = Open(StateDir(), {}, store_options);
    v1::StartExperimentRequest request = Quick(100);
    request.mutable_spec()->set_gradient_every_n_steps(1);
    id = registry->StartExperiment(request)->id();
    const v1::Experiment failed = WaitForState(*registry, id, v1::FAILED);
    EXPECT_THAT(failed.error(), HasSubstr("cannot store the run's events: state database"));
    EXPECT_THAT(failed.error(), HasSubstr("disk full"));
    EXPECT_EQ(registry->ServerInfo().workers(), 1);
    EXPECT_TRUE(registry->ListExperiments({}).ok());
  }
}

TEST_F(RegistryPersistenceTest, DeletingAFinishedExperimentRemovesItsRowsAndFiles) {
  std::string id;
  const fs::path state = StateDir();
  {
    auto registry = Open(StateDir());
    id = registry->StartExperiment(Quick(1, "request-d"))->id();
    const absl::Status refused = registry->DeleteExperiment(id);
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(refused.message()),
                HasSubstr("only finished experiments can be deleted (cancel it first)"));
    WaitForState(*registry, id, v1::SUCCEEDED);
    ASSERT_TRUE(fs::exists(state / "checkpoints" / id));
    ASSERT_TRUE(registry->DeleteExperiment(id).ok());
    EXPECT_FALSE(fs::exists(state / "checkpoints" / id));
    EXPECT_EQ(registry->GetExperiment(id).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(registry->DeleteExperiment(id).code(), absl::StatusCode::kNotFound);
    // The request id is free again.
    EXPECT_NE(registry->StartExperiment(Quick(1, "request-d"))->id(), id);
  }
  auto registry = Open(StateDir());
  EXPECT_EQ(registry->GetExperiment(id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry->ListExperiments({})->experiments_size(), 1);
}

TEST_F(RegistryPersistenceTest, ExportsTheBestOrTheLastEpochsModel) {
  RegistryOptions options;
  options.keep_checkpoints = KeepCheckpoints{/*last=*/true, /*best=*/false};
  auto registry = Open(StateDir(), options);
  const std::string id = registry->StartExperiment(Quick(3))->id();
  EXPECT_EQ(registry->ExportModel(id, v1::ExportModelRequest::BEST).status().code(),
            absl::StatusCode::kFailedPrecondition);  // no epoch yet
  const v1::Experiment done = WaitForState(*registry, id, v1::SUCCEEDED);
  absl::StatusOr<ExportedModel> last = registry->ExportModel(id, v1::ExportModelRequest::LAST);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->epoch, 3);
  EXPECT_GT(last->bytes.size(), 175'178u * 4);  // simple_cnn's parameters, as floats
  absl::StatusOr<ExportedModel> best = registry->ExportModel(id, v1::ExportModelRequest::BEST);
  if (done.best_epoch() == 3) {
    EXPECT_EQ(best->epoch, 3);
  } else {
    EXPECT_EQ(best.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(best.status().message()), HasSubstr("was not kept"));
  }
  EXPECT_EQ(registry->ExportModel("nosuchid", v1::ExportModelRequest::LAST).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RegistryPersistenceTest, WithoutAStoreThereIsNothingToExport) {
  RegistryOptions options;
  options.threads_per_job = 1;
  ExperimentRegistry registry(options);
  const std::string id = registry.StartExperiment(Quick(1))->id();
  WaitForState(registry, id, v1::SUCCEEDED);
  absl::StatusOr<ExportedModel> model = registry.ExportModel(id, v1::ExportModelRequest::LAST);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(model.status().message()), HasSubstr("keeps no checkpoints"));
}

}  // namespace
}  // namespace gradlab

namespace gradlab {
namespace {

// A write held on the disk (as a slow or busy volume holds it) stalls only the run that
// made it: every read of the API answers meanwhile.
TEST_F(RegistryPersistenceTest, ReadersNeverWaitForAWriteOnTheDisk) {
  std::atomic<bool> hold{false};
  absl::Notification held;
  absl::Notification release;
  StoreOptions store_options;
  store_options.before_write = [&](absl::string_view what) {
    if (what != "record" || !hold.exchange(false)) return;
    held.Notify();
    release.WaitForNotification();
  };
  std::unique_ptr<ExperimentRegistry> registry = Open(StateDir(), {}, store_options);
  ASSERT_NE(registry, nullptr);
  const std::string id = registry->StartExperiment(Quick(1000))->id();
  WaitFor(*registry, id, [](const v1::Experiment& e) { return e.current_epoch() >= 1; });
  // The next record the run stores (at its next epoch's end) stays held on the disk.
  hold.store(true);
  ASSERT_TRUE(held.WaitForNotificationWithTimeout(absl::Seconds(120)));

  absl::Notification answered;
  std::thread reader([&] {
    EXPECT_TRUE(registry->GetExperiment(id).ok());
    EXPECT_TRUE(registry->ListExperiments({}).ok());
    EXPECT_EQ(registry->AllExperiments().size(), 1u);
    EXPECT_EQ(registry->ServerInfo().queue_length(), 0);
    EXPECT_NE(registry->changes().NewCursor([] {})->Read().experiment, nullptr);
    EXPECT_TRUE(registry->EventLog(id).ok());
    answered.Notify();
  });
  // Not a timing assertion: a reader that waited for the held write would wait forever.
  EXPECT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(60)))
      << "a read waited for the held disk write";
  release.Notify();
  reader.join();
  registry->CancelExperiment(id, [](absl::StatusOr<v1::Experiment>) {});
}

}  // namespace
}  // namespace gradlab
