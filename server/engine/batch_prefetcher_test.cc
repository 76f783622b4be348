#include "server/engine/batch_prefetcher.h"

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

TrainingBatch BatchNumbered(int index) {
  return TrainingBatch{torch::full({2}, index, torch::kFloat32),
                       torch::full({2}, index, torch::kInt64)};
}

TEST(BatchPrefetcherTest, DeliversEveryBatchOnceInOrderFromAnotherThread) {
  std::vector<int> made;  // only the producer writes it, before handing the batch over
  std::thread::id producer;
  {
    BatchPrefetcher prefetcher(5, [&](int index) {
      made.push_back(index);
      producer = std::this_thread::get_id();
      return BatchNumbered(index);
    });
    for (int i = 0; i < 5; ++i) {
      const TrainingBatch batch = prefetcher.Next();
      EXPECT_EQ(batch.input[0].item<float>(), i);
      EXPECT_EQ(batch.labels[1].item<int64_t>(), i);
    }
  }
  EXPECT_EQ(made, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_NE(producer, std::this_thread::get_id());
}

TEST(BatchPrefetcherTest, WorksAtMostOneBatchAheadOfTheConsumer) {
  std::atomic<int> made{0};
  BatchPrefetcher prefetcher(100, [&](int index) {
    ++made;
    return BatchNumbered(index);
  });
  for (int taken = 0; taken < 3; ++taken) {
    // Give the producer time to run ahead if it would.
    absl::SleepFor(absl::Milliseconds(50));
    // One batch waiting to be taken and one made and waiting for the slot.
    EXPECT_LE(made.load(), taken + 2) << "after " << taken << " batches were taken";
    prefetcher.Next();
  }
}

TEST(BatchPrefetcherTest, RethrowsTheProducersErrorInOrderAndMakesNoMoreBatches) {
  std::atomic<int> made{0};
  BatchPrefetcher prefetcher(10, [&](int index) {
    ++made;
    if (index == 2) throw std::runtime_error("batch 2 cannot be made");
    return BatchNumbered(index);
  });
  EXPECT_EQ(prefetcher.Next().labels[0].item<int64_t>(), 0);
  EXPECT_EQ(prefetcher.Next().labels[0].item<int64_t>(), 1);
  try {
    prefetcher.Next();
    ADD_FAILURE() << "Next() returned a batch the producer failed to make";
  } catch (const std::runtime_error& error) {
    EXPECT_STREQ(error.what(), "batch 2 cannot be made");
  }
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(made.load(), 3);
}

TEST(BatchPrefetcherTest, StopsWhenDestroyedBeforeTheLastBatchIsTaken) {
  std::atomic<int> made{0};
  absl::Notification second_batch_started;
  {
    BatchPrefetcher prefetcher(1000, [&](int index) {
      if (++made == 2) second_batch_started.Notify();
      return BatchNumbered(index);
    });
    prefetcher.Next();
    second_batch_started.WaitForNotification();
  }  // must neither hang nor go on making batches
  const int made_when_destroyed = made.load();
  EXPECT_LE(made_when_destroyed, 3);
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(made.load(), made_when_destroyed);
}

}  // namespace
}  // namespace gradlab
