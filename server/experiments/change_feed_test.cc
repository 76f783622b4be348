#include "server/experiments/change_feed.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"

namespace gradlab {
namespace {

v1::Experiment State(const std::string& id, v1::ExperimentState state, bool deleted = false) {
  v1::Experiment experiment;
  experiment.set_id(id);
  experiment.set_state(state);
  experiment.set_deleted(deleted);
  return experiment;
}

// What a cursor has to read now, as "id:STATE" ("id:deleted" for a removal).
std::vector<std::string> ReadAll(ChangeCursor& cursor) {
  std::vector<std::string> read;
  for (ChangeCursor::Next next = cursor.Read(); next.experiment != nullptr; next = cursor.Read()) {
    read.push_back(next.experiment->id() + ":" +
                   (next.experiment->deleted()
                        ? std::string("deleted")
                        : v1::ExperimentState_Name(next.experiment->state())));
  }
  return read;
}

TEST(ChangeFeedTest, ANewCursorReadsTheNewestStateOfEachExperimentThenChanges) {
  ChangeFeed feed;
  feed.Publish(State("a", v1::QUEUED));
  feed.Publish(State("b", v1::QUEUED));
  feed.Publish(State("a", v1::RUNNING));
  std::unique_ptr<ChangeCursor> cursor = feed.NewCursor([] {});
  EXPECT_EQ(ReadAll(*cursor), (std::vector<std::string>{"b:QUEUED", "a:RUNNING"}));
  feed.Publish(State("b", v1::CANCELLED));
  EXPECT_EQ(ReadAll(*cursor), (std::vector<std::string>{"b:CANCELLED"}));
  EXPECT_TRUE(ReadAll(*cursor).empty());
}

TEST(ChangeFeedTest, ASlowReaderGetsEachChangedExperimentOnceInItsNewestState) {
  ChangeFeed feed;
  std::unique_ptr<ChangeCursor> cursor = feed.NewCursor([] {});
  for (int epoch = 0; epoch < 100; ++epoch) {
    feed.Publish(State("a", v1::RUNNING));
    feed.Publish(State("b", v1::RUNNING));
  }
  feed.Publish(State("a", v1::SUCCEEDED));
  EXPECT_EQ(ReadAll(*cursor), (std::vector<std::string>{"b:RUNNING", "a:SUCCEEDED"}));
}

TEST(ChangeFeedTest, DeletionsReachReadersThatSawTheExperimentButNotNewOnes) {
  ChangeFeed feed;
  feed.Publish(State("a", v1::SUCCEEDED));
  feed.Publish(State("b", v1::SUCCEEDED));
  std::unique_ptr<ChangeCursor> before = feed.NewCursor([] {});
  EXPECT_EQ(ReadAll(*before).size(), 2u);
  feed.Publish(State("a", v1::SUCCEEDED, /*deleted=*/true));
  std::unique_ptr<ChangeCursor> after = feed.NewCursor([] {});
  EXPECT_EQ(ReadAll(*before), (std::vector<std::string>{"a:deleted"}));
  EXPECT_EQ(ReadAll(*after), (std::vector<std::string>{"b:SUCCEEDED"}));
}

TEST(ChangeFeedTest, AReaderThatFellBehindStillLearnsOfADeletion) {
  ChangeFeed feed;
  std::unique_ptr<ChangeCursor> cursor = feed.NewCursor([] {});
  feed.Publish(State("a", v1::SUCCEEDED));
  feed.Publish(State("a", v1::SUCCEEDED, /*deleted=*/true));
  // A second reader reads and goes: pruning must keep the tombstone for the first.
  feed.NewCursor([] {})->Read();
  for (int i = 0; i < 10; ++i) feed.Publish(State("b", v1::RUNNING));
  EXPECT_EQ(ReadAll(*cursor), (std::vector<std::string>{"a:deleted", "b:RUNNING"}));
}

TEST(ChangeFeedTest, CloseEndsEveryReaderWithItsStatus) {
  ChangeFeed feed;
  feed.Publish(State("a", v1::RUNNING));
  std::unique_ptr<ChangeCursor> cursor = feed.NewCursor([] {});
  feed.Close(absl::UnavailableError("server shutting down"));
  ChangeCursor::Next next = cursor->Read();
  EXPECT_EQ(next.experiment, nullptr);
  ASSERT_TRUE(next.end.has_value());
  EXPECT_EQ(next.end->code(), absl::StatusCode::kUnavailable);
}

TEST(ChangeFeedTest, WakesEachReaderAfterAChangeAndNeverAfterItsCursorIsGone) {
  ChangeFeed feed;
  absl::Notification woken;
  std::atomic<int> wakes_after_removal{0};
  std::atomic<bool> removed{false};
  std::unique_ptr<ChangeCursor> cursor = feed.NewCursor([&] {
    if (removed.load()) ++wakes_after_removal;
    if (!woken.HasBeenNotified()) woken.Notify();
  });
  feed.Publish(State("a", v1::QUEUED));
  ASSERT_TRUE(woken.WaitForNotificationWithTimeout(absl::Seconds(30)));
  cursor.reset();
  removed.store(true);
  for (int i = 0; i < 100; ++i) feed.Publish(State("a", v1::RUNNING));
  feed.Close(absl::UnavailableError("server shutting down"));
  // The feed's destructor runs every wake-up still scheduled.
  EXPECT_EQ(wakes_after_removal.load(), 0);
}

TEST(ChangeFeedTest, ConcurrentPublishersAndReadersSeeEveryExperimentsLastState) {
  ChangeFeed feed;
  std::atomic<int> wakes{0};
  std::unique_ptr<ChangeCursor> cursor = feed.NewCursor([&] { ++wakes; });
  std::vector<std::thread> publishers;
  for (int p = 0; p < 4; ++p) {
    publishers.emplace_back([&feed, p] {
      const std::string id = "job" + std::to_string(p);
      for (int i = 0; i < 1000; ++i) feed.Publish(State(id, v1::RUNNING));
      feed.Publish(State(id, v1::SUCCEEDED));
    });
  }
  std::map<std::string, v1::ExperimentState> seen;
  std::thread reader([&] {
    while (seen.size() < 4 || std::any_of(seen.begin(), seen.end(), [](const auto& entry) {
             return entry.second != v1::SUCCEEDED;
           })) {
      ChangeCursor::Next next = cursor->Read();
      if (next.experiment != nullptr) seen[next.experiment->id()] = next.experiment->state();
    }
  });
  for (std::thread& publisher : publishers) publisher.join();
  reader.join();
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_GT(wakes.load(), 0);
}

}  // namespace
}  // namespace gradlab
