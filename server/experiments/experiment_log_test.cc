#include "server/experiments/experiment_log.h"

#include <thread>

#include "gtest/gtest.h"
#include "server/experiments/testing/log_events.h"

namespace gradlab {
namespace {

// Reads every metrics event from `from` on, as a stream would.
std::vector<int64_t> MetricsSequences(const ExperimentLog& log, int64_t from) {
  std::vector<int64_t> sequences;
  while (true) {
    auto next = log.NextMetrics(from);
    if (next.event == nullptr) break;
    sequences.push_back(next.event->sequence());
    from = next.event->sequence() + 1;
  }
  return sequences;
}

TEST(ExperimentLogTest, OneSequenceAcrossBothKinds) {
  ExperimentLog log;
  EXPECT_EQ(*log.Append(Epoch(1)), 1);
  EXPECT_EQ(*log.Append(Snapshot(1)), 2);
  EXPECT_EQ(*log.Append(Progress(1)), 3);
  EXPECT_EQ(*log.Append(Snapshot(50)), 4);
  EXPECT_EQ(MetricsSequences(log, 0), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(MetricsSequences(log, 2), (std::vector<int64_t>{3}));
  auto gradients = log.NextGradients(2);
  ASSERT_NE(gradients.event, nullptr);
  EXPECT_EQ(gradients.event->step(), 50);
  EXPECT_EQ(gradients.event->sequence(), 4);
}

TEST(ExperimentLogTest, GradientsBySequenceFindTheFirstSnapshotAtOrAfterASequence) {
  ExperimentLog log(LogRetention{/*batch_progress=*/8, /*gradient_snapshots=*/2});
  EXPECT_EQ(log.LatestSnapshot(), nullptr);
  (void)log.Append(Snapshot(1));  // 1: kept besides the window
  EXPECT_EQ(log.LatestSnapshot()->step(), 1);
  (void)log.Append(Epoch(1));      // 2
  (void)log.Append(Snapshot(50));  // 3: dropped from the window below
  (void)log.Append(Snapshot(60));  // 4
  (void)log.Append(Progress(1));   // 5
  (void)log.Append(Snapshot(70));  // 6
  EXPECT_EQ(log.NextGradientsBySequence(0).event->step(), 1);
  EXPECT_EQ(log.NextGradientsBySequence(1).event->step(), 1);
  EXPECT_EQ(log.NextGradientsBySequence(2).event->step(), 60);
  EXPECT_EQ(log.NextGradientsBySequence(5).event->step(), 70);
  EXPECT_EQ(log.LatestSnapshot()->step(), 70);
  auto none = log.NextGradientsBySequence(7);
  EXPECT_EQ(none.event, nullptr);
  EXPECT_FALSE(none.end.has_value());
}

TEST(ExperimentLogTest, LatestProgressIsTheNewestBatchProgress) {
  ExperimentLog log;
  EXPECT_EQ(log.LatestProgress(), nullptr);
  (void)log.Append(Progress(1));
  (void)log.Append(Epoch(1));
  (void)log.Append(Progress(2));
  (void)log.Append(Snapshot(3));
  ASSERT_NE(log.LatestProgress(), nullptr);
  EXPECT_EQ(log.LatestProgress()->batch_progress().batch(), 2);
}

TEST(ExperimentLogTest, WaitsUntilClosedThenEndsOkAfterTheLastEvent) {
  ExperimentLog log;
  (void)log.Append(Epoch(1));
  auto waiting = log.NextMetrics(2);
  EXPECT_EQ(waiting.event, nullptr);
  EXPECT_FALSE(waiting.end.has_value());
  log.Close();
  // What is left is still read before the end.
  EXPECT_NE(log.NextMetrics(1).event, nullptr);
  auto end = log.NextMetrics(2);
  ASSERT_TRUE(end.end.has_value());
  EXPECT_TRUE(end.end->ok());
}

TEST(ExperimentLogTest, AbortEndsReadersAtOnce) {
  ExperimentLog log;
  (void)log.Append(Epoch(1));
  log.Abort(absl::UnavailableError("server shutting down"));
  auto next = log.NextMetrics(0);
  EXPECT_EQ(next.event, nullptr);
  ASSERT_TRUE(next.end.has_value());
  EXPECT_EQ(next.end->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(log.NextGradients(0).end->code(), absl::StatusCode::kUnavailable);
}

TEST(ExperimentLogTest, KeepsEpochsInFullAndBoundsProgressAndSnapshots) {
  ExperimentLog log(LogRetention{/*batch_progress=*/3, /*gradient_snapshots=*/2});
  (void)log.Append(Snapshot(1));
  for (int i = 1; i <= 10; ++i) {
    (void)log.Append(Progress(i));
    (void)log.Append(Snapshot(i * 10));
    if (i % 5 == 0) (void)log.Append(Epoch(i / 5));
  }
  std::vector<int> batches;
  std::vector<int> epochs;
  for (int64_t from = 0;;) {
    auto next = log.NextMetrics(from);
    if (next.event == nullptr) break;
    if (next.event->has_batch_progress()) batches.push_back(next.event->batch_progress().batch());
    if (next.event->has_epoch_metrics()) epochs.push_back(next.event->epoch_metrics().epoch());
    from = next.event->sequence() + 1;
  }
  EXPECT_EQ(batches, (std::vector<int>{8, 9, 10}));
  EXPECT_EQ(epochs, (std::vector<int>{1, 2}));
  std::vector<int64_t> steps;
  for (int64_t from = 0;;) {
    auto next = log.NextGradients(from);
    if (next.event == nullptr) break;
    steps.push_back(next.event->step());
    from = next.event->step() + 1;
  }
  // The step-1 snapshot and the newest two.
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 90, 100}));
}

TEST(ExperimentLogTest, ListenersRunOnAppendsOfTheirKindAndOnCloseUntilUnsubscribed) {
  ExperimentLog log;
  int metrics_calls = 0;
  int gradient_calls = 0;
  const int64_t metrics = log.Subscribe(EventKind::kMetrics, [&] { ++metrics_calls; });
  const int64_t gradients = log.Subscribe(EventKind::kGradients, [&] { ++gradient_calls; });
  (void)log.Append(Epoch(1));
  (void)log.Append(Epoch(2));
  (void)log.Append(Snapshot(1));
  log.Close();
  EXPECT_EQ(metrics_calls, 3);
  EXPECT_EQ(gradient_calls, 2);
  log.Unsubscribe(metrics);
  log.Unsubscribe(gradients);
  (void)log.Append(Epoch(3));
  (void)log.Append(Snapshot(2));
  EXPECT_EQ(metrics_calls, 3);
  EXPECT_EQ(gradient_calls, 2);
}

TEST(ExperimentLogTest, WithANotifierListenersRunOnItsThreadNotTheAppender) {
  Notifier notifier;
  auto log = std::make_shared<ExperimentLog>(LogRetention{}, &notifier);
  absl::Mutex mu;
  std::vector<std::thread::id> threads;
  log->Subscribe(EventKind::kMetrics, [&] {
    absl::MutexLock lock(&mu);
    threads.push_back(std::this_thread::get_id());
  });
  for (int i = 0; i < 100; ++i) (void)log->Append(Epoch(i));
  log->Close();
  // Every append is followed by at least one notification; the last one sees Close.
  absl::MutexLock lock(&mu);
  mu.AwaitWithTimeout(absl::Condition(
                          +[](std::vector<std::thread::id>* t) { return !t->empty(); }, &threads),
                      absl::Seconds(10));
  ASSERT_FALSE(threads.empty());
  for (const auto& id : threads) EXPECT_NE(id, std::this_thread::get_id());
}

// Records events, and fails on demand as a full disk would.
class TestJournal : public EventJournal {
 public:
  absl::Status Record(const v1::MetricsEvent& event) override { return Add(event.sequence()); }
  absl::Status Record(const v1::GradientSnapshot& s) override { return Add(s.sequence()); }
  absl::Status Flush() override { return absl::OkStatus(); }
  std::vector<int64_t>* recorded;
  bool* failing;

 private:
  absl::Status Add(int64_t sequence) {
    if (*failing) return absl::ResourceExhaustedError("disk full");
    recorded->push_back(sequence);
    return absl::OkStatus();
  }
};

TEST(ExperimentLogTest, EventsReachTheJournalBeforeReadersAndAFailedOneIsNotLogged) {
  std::vector<int64_t> recorded;
  bool failing = false;
  auto journal = std::make_unique<TestJournal>();
  journal->recorded = &recorded;
  journal->failing = &failing;
  ExperimentLog log(LogRetention{}, nullptr, std::move(journal));
  bool journaled_before_visible = false;
  log.Subscribe(EventKind::kMetrics, [&] { journaled_before_visible = !recorded.empty(); });
  EXPECT_EQ(*log.Append(Epoch(1)), 1);
  EXPECT_TRUE(journaled_before_visible);
  failing = true;
  EXPECT_EQ(log.Append(Epoch(2)).status(), absl::ResourceExhaustedError("disk full"));
  EXPECT_EQ(log.Append(Snapshot(1)).status().code(), absl::StatusCode::kResourceExhausted);
  failing = false;
  EXPECT_EQ(*log.Append(Epoch(3)), 2);  // the failed ones took no number
  EXPECT_EQ(recorded, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(MetricsSequences(log, 0), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(log.NextGradients(0).event, nullptr);
}

TEST(ExperimentLogTest, RestoredEventsReplayAndNumberingGoesOnAfterTheGivenSequence) {
  ExperimentLog log;
  std::vector<v1::MetricsEvent> metrics = {Epoch(1), Progress(1), Epoch(2)};
  for (int i = 0; i < 3; ++i) metrics[i].set_sequence(i * 2 + 1);
  std::vector<v1::GradientSnapshot> gradients = {Snapshot(1), Snapshot(10)};
  gradients[0].set_sequence(2);
  gradients[1].set_sequence(4);
  log.Restore({metrics, gradients, absl::OkStatus()}, /*last_sequence=*/5 + 64);
  EXPECT_EQ(MetricsSequences(log, 0), (std::vector<int64_t>{1, 3, 5}));
  EXPECT_EQ(log.NextGradients(2).event->step(), 10);
  EXPECT_EQ(*log.Append(Epoch(3)), 70);
}

// A finished experiment's log, read from a source the first time a reader asks.
TEST(ExperimentLogTest, RestoredLaterReadsItsSourceOnceWhenFirstAsked) {
  ExperimentLog log;
  int reads = 0;
  log.RestoreLater(
      [&]() -> absl::StatusOr<StoredEvents> {
        ++reads;
        StoredEvents events;
        events.metrics = {Epoch(1), Epoch(2)};
        events.metrics[0].set_sequence(1);
        events.metrics[1].set_sequence(3);
        events.gradients = {Snapshot(1)};
        events.gradients[0].set_sequence(2);
        return events;
      },
      /*last_sequence=*/3);
  log.Close();
  EXPECT_EQ(log.last_sequence(), 3);
  EXPECT_EQ(reads, 0);
  EXPECT_EQ(log.LatestSnapshot()->sequence(), 2);
  EXPECT_EQ(MetricsSequences(log, 0), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(log.NextMetrics(4).end, absl::OkStatus());
  EXPECT_EQ(reads, 1);
}

// Damage found when the events were read: readers get what came before it, then the error.
TEST(ExperimentLogTest, DamagedEventsEndReadersWithDataLossAfterTheIntactOnes) {
  ExperimentLog log;
  log.RestoreLater(
      [] {
        StoredEvents events;
        events.metrics = {Epoch(1)};
        events.metrics[0].set_sequence(1);
        events.damage = absl::DataLossError("experiment x: its stored event 2 fails its checksum");
        return events;
      },
      /*last_sequence=*/5);
  log.Close();
  EXPECT_EQ(log.NextMetrics(0).event->sequence(), 1);
  std::optional<absl::Status> end = log.NextMetrics(2).end;
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(log.NextGradients(0).end->code(), absl::StatusCode::kDataLoss);

  ExperimentLog unreadable;
  unreadable.RestoreLater([] { return absl::InternalError("disk I/O error"); }, 5);
  unreadable.Close();
  EXPECT_EQ(unreadable.NextMetrics(0).end, absl::InternalError("disk I/O error"));
}

TEST(ExperimentLogTest, LogsOverTheLoadedBudgetDropTheOldestReadEventsUntilAskedAgain) {
  auto loaded = std::make_shared<LoadedLogs>(/*budget_bytes=*/1);  // room for one log only
  auto source = [](int* reads) {
    return [reads]() -> absl::StatusOr<StoredEvents> {
      ++*reads;
      StoredEvents events;
      events.metrics = {Epoch(1)};
      events.metrics[0].set_sequence(1);
      return events;
    };
  };
  int reads_a = 0, reads_b = 0;
  auto a = std::make_shared<ExperimentLog>();
  a->RestoreLater(source(&reads_a), 1, loaded);
  a->Close();
  auto b = std::make_shared<ExperimentLog>();
  b->RestoreLater(source(&reads_b), 1, loaded);
  b->Close();
  EXPECT_EQ(MetricsSequences(*a, 0), (std::vector<int64_t>{1}));
  EXPECT_EQ(MetricsSequences(*b, 0), (std::vector<int64_t>{1}));  // a's events are dropped
  EXPECT_EQ(MetricsSequences(*b, 0), (std::vector<int64_t>{1}));  // b's stay
  EXPECT_EQ(reads_b, 1);
  EXPECT_GT(loaded->bytes(), 0);
  EXPECT_EQ(MetricsSequences(*a, 0), (std::vector<int64_t>{1}));  // read again
  EXPECT_EQ(reads_a, 2);
}

TEST(NotifierTest, RunsTasksInOrderAndDrainsOnDestruction) {
  std::vector<int> ran;
  {
    Notifier notifier;
    for (int i = 0; i < 50; ++i) notifier.Schedule([&ran, i] { ran.push_back(i); });
  }
  ASSERT_EQ(ran.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(ran[i], i);
}

TEST(ExperimentLogTest, ConcurrentWritersGiveUniqueRisingSequences) {
  ExperimentLog log;
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&log] {
      for (int i = 0; i < 500; ++i) (void)log.Append(Epoch(i));
    });
  }
  for (auto& writer : writers) writer.join();
  std::vector<int64_t> sequences = MetricsSequences(log, 0);
  ASSERT_EQ(sequences.size(), 2000u);
  for (size_t i = 0; i < sequences.size(); ++i)
    EXPECT_EQ(sequences[i], static_cast<int64_t>(i + 1));
}

}  // namespace
}  // namespace gradlab
