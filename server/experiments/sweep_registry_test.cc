// Sweeps over the real experiment registry and, where it matters, a real SQLite store:
// expansion into queued runs (all or none), the aggregate as the runs finish, cancelling,
// deleting, and a sweep that survives a restart with the aggregate an uninterrupted one has.
#include "server/experiments/sweep_registry.h"

#include <filesystem>
#include <set>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A sweep of quick synthetic mlp runs: batch_norm {false, true} x `seeds` seeds.
v1::StartSweepRequest QuickSweep(int seeds = 2, int epochs = 2) {
  v1::StartSweepRequest request;
  const std::string json = absl::StrCat(R"({
    "name": "bn study",
    "base": {"model": "mlp", "dataset": "synthetic", "epochs": )",
                                        epochs, R"(, "maxTrainSamples": 256,
             "maxTestSamples": 64, "batchSize": 64},
    "axes": [{"field": "batch_norm", "values": [false, true]}],
    "seedCount": )",
                                        seeds, "}");
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, request.mutable_sweep()).ok());
  return request;
}

class SweepRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = FreshTestDir("gradlab_sweeps"); }

  // A registry and its sweeps, over a store in `state_dir` (none: in memory), training.
  void Open(const std::string& state_dir = "", int max_queue = 100, int64_t max_runs = 100,
            bool train = true) {
    sweeps_.reset();
    registry_.reset();
    RegistryOptions options;
    options.training_slots = 1;
    options.threads_per_job = 1;
    options.max_queue = max_queue;
    if (!state_dir.empty()) {
      absl::StatusOr<std::unique_ptr<ExperimentStore>> store =
          ExperimentStore::Open(state_dir, store_options_);
      ASSERT_TRUE(store.ok()) << store.status();
      options.store = *std::move(store);
    }
    std::shared_ptr<ExperimentStore> store = options.store;
    absl::StatusOr<std::unique_ptr<ExperimentRegistry>> registry =
        ExperimentRegistry::Open(std::move(options));
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
    absl::StatusOr<std::unique_ptr<SweepRegistry>> sweeps =
        SweepRegistry::Open(*registry_, SweepOptions{max_runs, store});
    ASSERT_TRUE(sweeps.ok()) << sweeps.status();
    sweeps_ = *std::move(sweeps);
    if (train) registry_->StartTraining();
  }

  void Close() {
    registry_->Shutdown();
    sweeps_.reset();
    registry_.reset();
  }

  v1::Sweep WaitFor(const std::string& id, const std::function<bool(const v1::Sweep&)>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    absl::StatusOr<v1::Sweep> sweep;
    while (absl::Now() < deadline) {
      sweep = sweeps_->GetSweep(id);
      if (sweep.ok() && done(*sweep)) return *sweep;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "sweep " << id << " did not get there: " << sweep->DebugString();
    return {};
  }
  v1::Sweep WaitForState(const std::string& id, v1::ExperimentState state) {
    return WaitFor(id, [state](const v1::Sweep& s) { return s.state() == state; });
  }

  int ExperimentCount() const {
    v1::ListExperimentsRequest request;
    request.set_page_size(1000);
    return registry_->ListExperiments(request)->experiments_size();
  }

  fs::path root_;
  StoreOptions store_options_;  // for the next Open
  std::unique_ptr<ExperimentRegistry> registry_;
  std::unique_ptr<SweepRegistry> sweeps_;
};

TEST_F(SweepRegistryTest, QueuesEveryCellWithEverySeedFirstSeedsFirstAndAggregates) {
  Open();
  absl::StatusOr<v1::Sweep> started = sweeps_->StartSweep(QuickSweep(2));
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->id().size(), 8u);
  EXPECT_EQ(started->runs_total(), 4);
  EXPECT_THAT(started->seeds(), ::testing::ElementsAre(42, 43));
  ASSERT_EQ(started->cells_size(), 2);
  EXPECT_EQ(started->cells(1).description(), "batch_norm=true");
  EXPECT_TRUE(started->cells(1).values(0).bool_value());

  // Every run is an ordinary experiment, labelled, named, with its cell's value and seed;
  // queued seed-major: both cells' first seeds before either's second.
  std::vector<std::string> order;
  for (int c = 0; c < 2; ++c) {
    for (int s = 0; s < 2; ++s) {
      const std::string& id = started->cells(c).experiment_ids(s);
      absl::StatusOr<v1::Experiment> run = registry_->GetExperiment(id);
      ASSERT_TRUE(run.ok()) << run.status();
      EXPECT_EQ(run->spec().batch_norm(), c == 1);
      EXPECT_EQ(run->spec().seed(), 42u + s);
      EXPECT_EQ(run->spec().labels().at("sweep"), started->id());
      EXPECT_EQ(run->spec().labels().at("sweep_cell"), absl::StrCat(c));
      EXPECT_EQ(run->name(), absl::StrCat("bn study: batch_norm=", c == 1 ? "true" : "false",
                                          ", seed ", 42 + s));
    }
  }
  const v1::ListExperimentsResponse listed_runs = *registry_->ListExperiments({});
  std::vector<std::string> newest_first;
  for (const v1::Experiment& e : listed_runs.experiments()) {
    newest_first.push_back(e.id());
  }
  EXPECT_THAT(newest_first, ::testing::ElementsAre(started->cells(1).experiment_ids(1),
                                                   started->cells(0).experiment_ids(1),
                                                   started->cells(1).experiment_ids(0),
                                                   started->cells(0).experiment_ids(0)));

  const v1::Sweep done = WaitForState(started->id(), v1::SUCCEEDED);
  EXPECT_EQ(done.runs_done(), 4);
  EXPECT_GT(done.finished_time().seconds(), 0);
  for (const v1::SweepCell& cell : done.cells()) {
    EXPECT_EQ(cell.runs_succeeded(), 2);
    EXPECT_EQ(cell.final_test_accuracy().count(), 2);
    ASSERT_EQ(cell.epochs_size(), 2);
    EXPECT_EQ(cell.epochs(1).test_accuracy().count(), 2);
    EXPECT_EQ(cell.first_layer_step1_grad_norm().count(), 2);
    EXPECT_GT(cell.first_layer_step1_grad_norm().mean(), 0);
    EXPECT_GT(cell.step1_gradients_size(), 2);
    // The aggregate is of these runs' own numbers.
    std::vector<double> finals;
    for (const std::string& id : cell.experiment_ids()) {
      finals.push_back(registry_->GetExperiment(id)->last_metrics().test_accuracy());
    }
    EXPECT_DOUBLE_EQ(cell.final_test_accuracy().mean(), (finals[0] + finals[1]) / 2);
  }

  v1::ListSweepsResponse listed = *sweeps_->ListSweeps({});
  ASSERT_EQ(listed.sweeps_size(), 1);
  EXPECT_EQ(listed.sweeps(0).state(), v1::SUCCEEDED);
  EXPECT_EQ(listed.sweeps(0).cells(0).epochs_size(), 0);  // GetSweep has the curves
  EXPECT_EQ(listed.sweeps(0).cells(0).final_test_accuracy().count(), 2);
}

TEST_F(SweepRegistryTest, BadSweepsAreRefusedWholeAndQueueNothing) {
  Open("", /*max_queue=*/5, /*max_runs=*/8);
  v1::StartSweepRequest request = QuickSweep(2);
  request.mutable_sweep()->mutable_axes(0)->set_field("batchnorm");
  absl::Status status = sweeps_->StartSweep(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("sweep.axes[0] (\"batchnorm\")"));

  // A cell whose spec a run refuses: nothing of the sweep is queued.
  request = QuickSweep(1);
  v1::SweepAxis& lr = *request.mutable_sweep()->add_axes();
  lr.set_field("learning_rate");
  lr.add_values()->set_number_value(0.01);
  lr.add_values()->set_number_value(50);
  status = sweeps_->StartSweep(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("learning_rate=50"));

  request = QuickSweep(5);  // 10 runs
  status = sweeps_->StartSweep(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--max_sweep_runs"));

  // 6 runs fit --max_sweep_runs but not the queue of 5: both numbers named.
  request = QuickSweep(3);
  status = sweeps_->StartSweep(request).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("room for 5 more"));
  EXPECT_THAT(status.message(), HasSubstr("the sweep has 6 runs"));

  EXPECT_EQ(ExperimentCount(), 0);
  EXPECT_EQ(sweeps_->ListSweeps({})->sweeps_size(), 0);
  // ... and a sweep that fits is queued after them.
  EXPECT_TRUE(sweeps_->StartSweep(QuickSweep(2)).ok());
  EXPECT_EQ(ExperimentCount(), 4);
}

TEST_F(SweepRegistryTest, TheSameRequestIdGivesTheSameSweep) {
  Open();
  v1::StartSweepRequest request = QuickSweep(1, 1);
  request.set_request_id("study-1");
  const std::string first = sweeps_->StartSweep(request)->id();
  EXPECT_EQ(sweeps_->StartSweep(request)->id(), first);
  EXPECT_EQ(ExperimentCount(), 2);
  EXPECT_EQ(sweeps_->ListSweeps({})->sweeps_size(), 1);
}

TEST_F(SweepRegistryTest, CancelStopsEveryRunAndDeleteRemovesThemAll) {
  Open();
  const v1::Sweep started = *sweeps_->StartSweep(QuickSweep(2, /*epochs=*/200));
  EXPECT_EQ(sweeps_->DeleteSweep(started.id()).code(), absl::StatusCode::kFailedPrecondition);

  absl::Notification cancelled;
  absl::StatusOr<v1::Sweep> answer;
  sweeps_->CancelSweep(started.id(), [&](absl::StatusOr<v1::Sweep> result) {
    answer = std::move(result);
    cancelled.Notify();
  });
  ASSERT_TRUE(cancelled.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->state(), v1::CANCELLED);
  EXPECT_EQ(answer->runs_done(), 4);
  for (const v1::SweepCell& cell : answer->cells()) {
    for (const std::string& id : cell.experiment_ids()) {
      EXPECT_EQ(registry_->GetExperiment(id)->state(), v1::CANCELLED);
    }
  }
  absl::Notification again;
  sweeps_->CancelSweep(started.id(), [&](absl::StatusOr<v1::Sweep> result) {
    EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
    again.Notify();
  });
  again.WaitForNotification();

  ASSERT_TRUE(sweeps_->DeleteSweep(started.id()).ok());
  EXPECT_EQ(sweeps_->GetSweep(started.id()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ExperimentCount(), 0);
}

// A sweep does not starve others: the queue takes turns between each sweep's runs and the
// experiments started alone.
TEST_F(SweepRegistryTest, TheQueueInterleavesSweepsAndSingleExperiments) {
  Open("", 100, 100, /*train=*/false);
  const v1::Sweep big = *sweeps_->StartSweep(QuickSweep(3));  // 6 runs
  v1::StartExperimentRequest alone;
  *alone.mutable_spec() = QuickSweep().sweep().base();
  absl::StatusOr<v1::Experiment> first = registry_->StartExperiment(alone);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->queue_position(), 2);  // after the sweep's first run, not its sixth
  absl::StatusOr<v1::Experiment> second = registry_->StartExperiment(alone);
  EXPECT_EQ(second->queue_position(), 4);
  ASSERT_TRUE(sweeps_->StartSweep(QuickSweep(1)).ok());  // 2 runs
  // The queue now: big, alone, other, big, alone, other, big, big, big, big.
  std::vector<std::string> order(10);
  const v1::ListExperimentsResponse queued = *registry_->ListExperiments({});
  for (const v1::Experiment& e : queued.experiments()) {
    ASSERT_GT(e.queue_position(), 0);
    order[e.queue_position() - 1] =
        e.spec().labels().count("sweep") == 0
            ? "alone"
            : (e.spec().labels().at("sweep") == big.id() ? "big" : "other");
  }
  EXPECT_THAT(order, ::testing::ElementsAre("big", "alone", "other", "big", "alone", "other", "big",
                                            "big", "big", "big"));
}

// A restart in the middle of a sweep (runs RUNNING and QUEUED in the store) ends with the
// aggregate an uninterrupted sweep of the same spec has: the runs resume exactly.
TEST_F(SweepRegistryTest, ASweepSurvivesARestartWithTheSameAggregate) {
  const v1::StartSweepRequest request = QuickSweep(2, /*epochs=*/3);
  Open((root_ / "uninterrupted").string());
  const std::string whole_id = sweeps_->StartSweep(request)->id();
  v1::Sweep whole = WaitForState(whole_id, v1::SUCCEEDED);
  Close();

  const std::string state_dir = (root_ / "restarted").string();
  Open(state_dir);
  const std::string id = sweeps_->StartSweep(request)->id();
  const v1::Sweep before = WaitFor(
      id, [](const v1::Sweep& s) { return s.runs_done() >= 1 && s.state() == v1::RUNNING; });
  Close();

  Open(state_dir);
  absl::StatusOr<v1::Sweep> restored = sweeps_->GetSweep(id);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->name(), "bn study");
  // The stream's position goes on from where it was: a reader resuming misses nothing.
  EXPECT_GE(restored->sequence(), before.sequence());
  v1::Sweep resumed = WaitForState(id, v1::SUCCEEDED);

  ASSERT_EQ(resumed.cells_size(), whole.cells_size());
  for (int c = 0; c < whole.cells_size(); ++c) {
    v1::SweepCell a = whole.cells(c), b = resumed.cells(c);
    a.clear_experiment_ids();
    b.clear_experiment_ids();
    EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString()) << "cell " << c << "\n"
                                                            << a.DebugString() << "\nvs\n"
                                                            << b.DebugString();
  }
  Close();
  // And it was stored as it is served.
  Open(state_dir);
  EXPECT_EQ(sweeps_->GetSweep(id)->SerializeAsString(), resumed.SerializeAsString());
}

// A disk that fills during a sweep: its runs fail as lone experiments do, the sweep
// follows them to FAILED in memory though its own record can no longer be stored, the
// server goes on, and the next start (with room) recomputes the same aggregate.
TEST_F(SweepRegistryTest, OnAFullDiskTheSweepFailsWithItsRunsAndIsTheSameAfterARestart) {
  const std::string state_dir = (root_ / "full").string();
  store_options_.max_pages = 14;  // the schema, the sweep and its runs, little more
  Open(state_dir);
  v1::StartSweepRequest request = QuickSweep(1, /*epochs=*/100);
  request.mutable_sweep()->mutable_base()->set_gradient_every_n_steps(1);
  absl::StatusOr<v1::Sweep> started = sweeps_->StartSweep(request);
  ASSERT_TRUE(started.ok()) << started.status();
  const v1::Sweep failed = WaitForState(started->id(), v1::FAILED);
  EXPECT_EQ(failed.runs_done(), 2);
  for (const v1::SweepCell& cell : failed.cells()) EXPECT_EQ(cell.runs_failed(), 1);
  EXPECT_TRUE(registry_->ListExperiments({}).ok());
  EXPECT_TRUE(sweeps_->ListSweeps({}).ok());
  Close();

  store_options_ = {};
  Open(state_dir);
  const v1::Sweep recomputed = WaitForState(started->id(), v1::FAILED);
  ASSERT_EQ(recomputed.cells_size(), failed.cells_size());
  for (int c = 0; c < failed.cells_size(); ++c) {
    EXPECT_EQ(recomputed.cells(c).SerializeAsString(), failed.cells(c).SerializeAsString())
        << recomputed.cells(c).DebugString() << "\nvs\n"
        << failed.cells(c).DebugString();
  }
}

// Counts a reader's wake-ups and waits for the next one.
class Wakes {
 public:
  std::function<void()> Callback() {
    return [this] {
      absl::MutexLock lock(&mu_);
      ++count_;
    };
  }
  // Waits until there has been a wake-up since the last call.
  bool WaitForMore() {
    absl::MutexLock lock(&mu_);
    const bool woken = mu_.AwaitWithTimeout(absl::Condition(
                                                +[](Wakes* self) {
                                                  self->mu_.AssertHeld();
                                                  return self->count_ > self->seen_;
                                                },
                                                this),
                                            absl::Seconds(120));
    seen_ = count_;
    return woken;
  }

 private:
  absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
  int seen_ ABSL_GUARDED_BY(mu_) = 0;
};

// StreamSweep's reader: the sweep at each change with a rising sequence, ending with OK
// after the finished sweep, which is what GetSweep serves; reconnecting from a sequence
// gives the newest state from there.
TEST_F(SweepRegistryTest, AReaderSeesEachChangeInOrderAndEndsWithTheFinishedSweep) {
  Open();
  const v1::Sweep started = *sweeps_->StartSweep(QuickSweep(2, /*epochs=*/2));
  EXPECT_GE(started.sequence(), 1);
  Wakes wakes;
  absl::StatusOr<std::unique_ptr<SweepReader>> reader =
      sweeps_->WatchSweep(started.id(), 0, /*follow=*/true, wakes.Callback());
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<v1::Sweep> seen;
  std::optional<absl::Status> end;
  while (!end.has_value()) {
    SweepReader::Next next = (*reader)->Read();
    if (next.sweep.has_value()) {
      if (!seen.empty()) {
        EXPECT_GT(next.sweep->sequence(), seen.back().sequence());
      }
      seen.push_back(*next.sweep);
    } else if (next.end.has_value()) {
      end = next.end;
    } else {
      ASSERT_TRUE(wakes.WaitForMore()) << "no wake-up after sequence " << seen.back().sequence();
    }
  }
  EXPECT_TRUE(end->ok()) << *end;
  ASSERT_GE(seen.size(), 2u);  // a slow reader may miss intermediate states, not the last
  EXPECT_EQ(seen.back().state(), v1::SUCCEEDED);
  EXPECT_EQ(seen.back().SerializeAsString(), sweeps_->GetSweep(started.id())->SerializeAsString());
  // Each epoch of each run shows: the epochs aggregated only ever grow along the stream.
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GE(seen[i].cells(0).epochs_size(), seen[i - 1].cells(0).epochs_size());
  }

  // From a sequence already passed: the newest state at once; without follow, then OK.
  const int64_t middle = seen[seen.size() / 2].sequence();
  absl::StatusOr<std::unique_ptr<SweepReader>> late =
      sweeps_->WatchSweep(started.id(), middle, /*follow=*/false, [] {});
  ASSERT_TRUE(late.ok());
  SweepReader::Next first = (*late)->Read();
  ASSERT_TRUE(first.sweep.has_value());
  EXPECT_EQ(first.sweep->sequence(), seen.back().sequence());
  EXPECT_TRUE((*late)->Read().end.value_or(absl::UnknownError("no end")).ok());
  // After the last one: nothing more will come, so the stream ends.
  absl::StatusOr<std::unique_ptr<SweepReader>> after =
      sweeps_->WatchSweep(started.id(), seen.back().sequence() + 1, /*follow=*/true, [] {});
  EXPECT_TRUE((*after)->Read().end.value_or(absl::UnknownError("no end")).ok());

  EXPECT_EQ(sweeps_->WatchSweep("nosuchid", 0, true, [] {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SweepRegistryTest, ReadersEndWhenTheSweepIsDeletedOrTheServerShutsDown) {
  Open("", 100, 100, /*train=*/false);
  const v1::Sweep waiting = *sweeps_->StartSweep(QuickSweep(1));
  Wakes wakes;
  std::unique_ptr<SweepReader> reader =
      *sweeps_->WatchSweep(waiting.id(), 0, /*follow=*/true, wakes.Callback());
  ASSERT_TRUE(reader->Read().sweep.has_value());
  SweepReader::Next idle = reader->Read();
  EXPECT_FALSE(idle.sweep.has_value() || idle.end.has_value());  // queued: waits

  // Cancelled: the finished sweep, then OK.
  absl::Notification cancelled;
  sweeps_->CancelSweep(waiting.id(), [&](absl::StatusOr<v1::Sweep>) { cancelled.Notify(); });
  cancelled.WaitForNotification();
  ASSERT_TRUE(wakes.WaitForMore());
  SweepReader::Next last = reader->Read();
  ASSERT_TRUE(last.sweep.has_value());
  EXPECT_EQ(last.sweep->state(), v1::CANCELLED);
  EXPECT_TRUE(reader->Read().end.value_or(absl::UnknownError("no end")).ok());

  // A reader that has not read the sweep when it is deleted: NOT_FOUND, saying so.
  std::unique_ptr<SweepReader> slow = *sweeps_->WatchSweep(waiting.id(), 0, true, [] {});
  ASSERT_TRUE(sweeps_->DeleteSweep(waiting.id()).ok());
  SweepReader::Next gone = slow->Read();
  ASSERT_TRUE(gone.end.has_value());
  EXPECT_EQ(gone.end->code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(gone.end->message(), HasSubstr("was deleted"));

  // Shutdown wakes and ends a reader waiting on a queued sweep.
  const v1::Sweep other = *sweeps_->StartSweep(QuickSweep(1));
  Wakes other_wakes;
  std::unique_ptr<SweepReader> waiter =
      *sweeps_->WatchSweep(other.id(), other.sequence() + 1, true, other_wakes.Callback());
  SweepReader::Next nothing = waiter->Read();
  EXPECT_FALSE(nothing.sweep.has_value() || nothing.end.has_value());
  sweeps_->Shutdown();
  ASSERT_TRUE(other_wakes.WaitForMore());
  SweepReader::Next ended = waiter->Read();
  ASSERT_TRUE(ended.end.has_value());
  EXPECT_EQ(ended.end->code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace gradlab
