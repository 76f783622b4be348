// Data-parallel pieces: batch sharding, and the gradient average over c10d's Gloo process
// group with each rank a separate process (server/engine/testing/data_parallel_rank.cc)
// talking over loopback, and the in-memory rendezvous store the coordinator keeps.
#include "server/engine/data_parallel.h"

#include <filesystem>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/rendezvous_store.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

TEST(ShardOfBatchTest, RanksTakeEveryNthSampleAndCoverTheBatchOnce) {
  const torch::Tensor batch = torch::tensor({7, 3, 9, 1, 4, 8, 2}, torch::kInt64);
  EXPECT_TRUE(ShardOfBatch(batch, 0, 1).equal(batch));
  EXPECT_TRUE(ShardOfBatch(batch, 0, 2).equal(torch::tensor({7, 9, 4, 2}, torch::kInt64)));
  EXPECT_TRUE(ShardOfBatch(batch, 1, 2).equal(torch::tensor({3, 1, 8}, torch::kInt64)));
  for (int world_size : {2, 3, 7, 8}) {
    std::vector<torch::Tensor> shards;
    for (int rank = 0; rank < world_size; ++rank) {
      shards.push_back(ShardOfBatch(batch, rank, world_size));
      EXPECT_LE(std::abs(shards.back().size(0) - batch.size(0) / world_size), 1);
    }
    EXPECT_TRUE(std::get<0>(torch::cat(shards).sort()).equal(std::get<0>(batch.sort())))
        << "world size " << world_size;
  }
}

TEST(GradientAveragerTest, OptionsOutOfRangeAreRefusedByName) {
  ProcessGroupOptions options;
  options.store = std::make_shared<MemoryRendezvousStore>();
  options.rank = 2;
  options.world_size = 2;
  EXPECT_EQ(GradientAverager::Join(options).status().message(),
            "rank 2 of world size 2: the rank must be in [0, world size)");
  options.rank = 0;
  options.store = nullptr;
  EXPECT_EQ(GradientAverager::Join(options).status().message(),
            "a process group needs a rendezvous store");
}

// Two ranks as threads of one process, meeting in one MemoryRendezvousStore: rank 0's
// store on the coordinator, which the other ranks reach over the WorkerService.
TEST(GradientAveragerTest, RanksMeetInAMemoryRendezvousStore) {
  auto store = std::make_shared<MemoryRendezvousStore>();
  std::vector<absl::StatusOr<double>> averaged(2, absl::UnknownError("not run"));
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ranks.emplace_back([&, rank] {
      ProcessGroupOptions options;
      options.store = store;
      options.store_name = "memory";
      options.rank = rank;
      options.world_size = 2;
      options.local_address = "127.0.0.1";
      options.timeout = absl::Seconds(30);
      absl::StatusOr<std::unique_ptr<GradientAverager>> averager = GradientAverager::Join(options);
      if (!averager.ok()) {
        averaged[rank] = averager.status();
        return;
      }
      torch::Tensor weight = torch::zeros({1});
      weight.mutable_grad() = torch::full({1}, rank == 0 ? 1.0 : 4.0);
      absl::StatusOr<int> votes = (*averager)->Average({weight}, rank + 1, 3, false);
      if (!votes.ok()) {
        averaged[rank] = votes.status();
        return;
      }
      averaged[rank] = weight.grad().item<double>();
    });
  }
  for (std::thread& rank : ranks) rank.join();
  for (const absl::StatusOr<double>& value : averaged) {
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_DOUBLE_EQ(*value, (1.0 * 1 + 4.0 * 2) / 3);
  }
  EXPECT_GT(*store->KeyCount(), 0) << "the ranks met in the store";
}

// A file of its own for the ranks of one group to meet in.
std::string StoreFile() {
  static int groups = 0;
  const std::filesystem::path dir = FreshSuiteDir("data_parallel_test");
  std::filesystem::create_directories(dir);
  return (dir / ("group-" + std::to_string(++groups))).string();
}

// Rank `rank` of `world_size` as its own process, meeting the others in `store_file`.
ChildProcess StartRank(int rank, int world_size, const std::string& store_file,
                       const std::vector<std::string>& extra_flags = {}) {
  std::vector<std::string> argv = {DATA_PARALLEL_RANK_PATH, "--rank=" + std::to_string(rank),
                                   "--world_size=" + std::to_string(world_size),
                                   "--store_file=" + store_file};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  absl::StatusOr<ChildProcess> child = ChildProcess::Start(argv);
  if (!child.ok()) ADD_FAILURE() << child.status();
  return *std::move(child);
}

std::vector<double> Values(const std::string& line) {
  std::vector<double> values;
  const std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
  for (size_t i = 2; i < words.size(); ++i) {  // after "step N:"
    double value = 0;
    EXPECT_TRUE(absl::SimpleAtod(words[i], &value)) << line;
    values.push_back(value);
  }
  return values;
}

class GradientAverageTest : public ::testing::TestWithParam<int> {};

TEST_P(GradientAverageTest, EveryRankGetsTheSampleWeightedMeanOfAllRanksGradients) {
  const int world_size = GetParam();
  const std::string store = StoreFile();
  std::vector<ChildProcess> ranks;
  for (int rank = 0; rank < world_size; ++rank) ranks.push_back(StartRank(rank, world_size, store));
  std::vector<std::vector<std::string>> outputs;
  for (ChildProcess& rank : ranks) {
    outputs.push_back(absl::StrSplit(rank.ReadAll(absl::Seconds(60)), '\n', absl::SkipEmpty()));
    EXPECT_EQ(rank.Wait(absl::Seconds(10)), 0);
  }
  // Rank r's gradients are (r + 1)(step + 1) x [0 1 2] and -(r + 1)(step + 1) x [0 1 2 3],
  // means over r + 1 samples: the mean over all samples weights rank r by r + 1.
  double weighted = 0, samples = 0;
  for (int r = 0; r < world_size; ++r) {
    weighted += (r + 1.0) * (r + 1.0);
    samples += r + 1.0;
  }
  for (int step = 0; step < 3; ++step) {
    const double scale = weighted / samples * (step + 1);
    const std::vector<double> expected = {0, scale, 2 * scale, 0, -scale, -2 * scale, -3 * scale};
    for (int r = 0; r < world_size; ++r) {
      ASSERT_EQ(outputs[r].size(), 3u) << "rank " << r;
      EXPECT_THAT(Values(outputs[r][step]),
                  ::testing::Pointwise(::testing::FloatNear(1e-5 * (step + 1) * 4), expected))
          << "rank " << r << ", " << outputs[r][step];
      EXPECT_EQ(outputs[r][step], outputs[0][step]) << "ranks disagree";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TwoAndThreeRanks, GradientAverageTest, ::testing::Values(2, 3));

TEST(GradientAveragerTest, AStopVoteOfAnyRankReachesEveryRankInTheSameStep) {
  const std::string store = StoreFile();
  std::vector<ChildProcess> ranks;
  for (int rank = 0; rank < 3; ++rank) {
    ranks.push_back(StartRank(rank, 3, store, {"--steps=5", "--stop_rank=2", "--stop_at_step=1"}));
  }
  for (int rank = 0; rank < 3; ++rank) {
    const std::string out = ranks[rank].ReadAll(absl::Seconds(60));
    EXPECT_EQ(ranks[rank].Wait(absl::Seconds(10)), 0) << out;
    const std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
    ASSERT_EQ(lines.size(), 2u) << "rank " << rank << ": " << out;
    EXPECT_EQ(lines[1], "stopped at step 1: 1 votes") << "rank " << rank;
  }
}

TEST(GradientAveragerTest, BroadcastGivesEveryRankRankZerosBytes) {
  for (const int64_t size : {int64_t{0}, int64_t{5'000'000}}) {
    const std::string store = StoreFile();
    std::vector<ChildProcess> ranks;
    const std::string flag = "--broadcast_bytes=" + std::to_string(size);
    for (int rank = 0; rank < 3; ++rank) ranks.push_back(StartRank(rank, 3, store, {flag}));
    int64_t expected_sum = 0;
    for (int64_t i = 0; i < size; ++i) expected_sum += i * 7 % 251;
    for (int rank = 0; rank < 3; ++rank) {
      const std::string out = ranks[rank].ReadAll(absl::Seconds(60));
      EXPECT_EQ(ranks[rank].Wait(absl::Seconds(10)), 0) << out;
      EXPECT_THAT(out,
                  ::testing::StartsWith(absl::StrCat("broadcast: ", size, " ", expected_sum, "\n")))
          << "rank " << rank;
    }
  }
}

TEST(GradientAveragerFailureTest, ARankThatNeverComesFailsTheRendezvousWithinTheTimeout) {
  const std::string store = StoreFile();
  ChildProcess alone = StartRank(0, 2, store, {"--timeout_ms=2000"});
  const std::string out = alone.ReadAll(absl::Seconds(30));
  EXPECT_EQ(alone.Wait(absl::Seconds(10)), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("rank 0 of 2 could not join the group at " + store));
  EXPECT_THAT(out, ::testing::HasSubstr("within 2s"));
}

TEST(GradientAveragerFailureTest, ARankThatDiesMidRunFailsTheOthersAllReduce) {
  const std::string store = StoreFile();
  ChildProcess survivor = StartRank(0, 2, store, {"--timeout_ms=5000"});
  ChildProcess dying = StartRank(1, 2, store, {"--timeout_ms=5000", "--exit_before_step=1"});
  const std::string out = survivor.ReadAll(absl::Seconds(30));
  EXPECT_EQ(dying.Wait(absl::Seconds(10)), 3);
  EXPECT_EQ(survivor.Wait(absl::Seconds(10)), 1) << out;
  EXPECT_THAT(out, ::testing::HasSubstr("step 0:"));
  EXPECT_THAT(out, ::testing::HasSubstr(
                       "error: UNAVAILABLE: the gradient all-reduce of rank 0 of 2 failed"));
}

// A rank that reports a sample count the batch does not have (out of step, or feeding the
// average a zero to divide by) fails the step on every rank instead of skewing it.
TEST(GradientAveragerFailureTest, SampleCountsThatDoNotAddUpToTheBatchFailEveryRank) {
  const std::string store = StoreFile();
  ChildProcess honest = StartRank(0, 2, store);
  ChildProcess lying = StartRank(1, 2, store, {"--report_samples=0"});
  for (ChildProcess* rank : {&honest, &lying}) {
    const std::string out = rank->ReadAll(absl::Seconds(60));
    EXPECT_EQ(rank->Wait(absl::Seconds(10)), 1) << out;
    EXPECT_THAT(out, ::testing::HasSubstr("error: DATA_LOSS: the ranks' gradients are over 1 "
                                          "samples in all, not the batch's 3"));
  }
}

// Rank 0's lines that start with `kind` ("epoch" or "predictions"), as numbers after
// "kind N:": each epoch's "train_loss train_accuracy test_loss test_accuracy", or each
// Predictions' "samples confusion... mean_softmax..." (from epoch 0).
std::vector<std::vector<double>> LinesOf(const std::string& out, absl::string_view kind) {
  std::vector<std::vector<double>> lines;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(line, "epoch ") || absl::StartsWith(line, "predictions ")) << line;
    if (absl::StartsWith(line, absl::StrCat(kind, " "))) {
      lines.push_back(Values(std::string(line)));
    }
  }
  return lines;
}

// Issue #9's equivalence: simple_cnn (no BatchNorm) on Fashion-MNIST without augmentation,
// global batch 128, as one process and as two (64 samples each per step).
TEST(DataParallelTrainingTest, TwoRanksGiveTheEpochMetricsOfOneProcess) {
  const std::vector<std::string> train = {"--train=simple_cnn", "--epochs=2"};
  ChildProcess single = StartRank(0, 1, StoreFile(), train);
  const std::string single_out = single.ReadAll(absl::Seconds(300));
  ASSERT_EQ(single.Wait(absl::Seconds(10)), 0) << single_out;

  const std::string store = StoreFile();
  ChildProcess rank0 = StartRank(0, 2, store, train);
  ChildProcess rank1 = StartRank(1, 2, store, train);
  const std::string out0 = rank0.ReadAll(absl::Seconds(300));
  const std::string out1 = rank1.ReadAll(absl::Seconds(300));
  ASSERT_EQ(rank0.Wait(absl::Seconds(10)), 0) << out0;
  ASSERT_EQ(rank1.Wait(absl::Seconds(10)), 0) << out1;
  EXPECT_EQ(out1, "") << "only rank 0 reports";

  const std::vector<std::vector<double>> one = LinesOf(single_out, "epoch");
  const std::vector<std::vector<double>> two = LinesOf(out0, "epoch");
  ASSERT_EQ(one.size(), 2u) << single_out;
  ASSERT_EQ(two.size(), 2u) << out0;
  double largest = 0;
  for (size_t epoch = 0; epoch < one.size(); ++epoch) {
    ASSERT_EQ(one[epoch].size(), 4u);
    ASSERT_EQ(two[epoch].size(), 4u);
    for (size_t i = 0; i < 4; ++i)
      largest = std::max(largest, std::abs(one[epoch][i] - two[epoch][i]));
    // Losses to float rounding (measured: 1.7e-7); accuracies within one sample.
    EXPECT_NEAR(two[epoch][0], one[epoch][0], 1e-5) << "train loss, epoch " << epoch + 1;
    EXPECT_NEAR(two[epoch][1], one[epoch][1], 1.0 / 2000) << "train accuracy";
    EXPECT_NEAR(two[epoch][2], one[epoch][2], 1e-5) << "test loss";
    EXPECT_NEAR(two[epoch][3], one[epoch][3], 1.0 / 500) << "test accuracy";
  }

  // What the model predicts, at initialisation and after each epoch: summed over the
  // ranks, every test image once, as one process counts them.
  const std::vector<std::vector<double>> one_predictions = LinesOf(single_out, "predictions");
  const std::vector<std::vector<double>> two_predictions = LinesOf(out0, "predictions");
  ASSERT_EQ(one_predictions.size(), 3u) << single_out;
  ASSERT_EQ(two_predictions.size(), 3u) << out0;
  for (size_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<double>& a = one_predictions[epoch];
    const std::vector<double>& b = two_predictions[epoch];
    ASSERT_EQ(a.size(), 1u + 100 + 10);
    ASSERT_EQ(b.size(), a.size());
    EXPECT_EQ(b[0], a[0]) << "samples, epoch " << epoch;
    double moved = 0;  // images predicted otherwise: rounding can tip a close arg-max
    for (size_t i = 1; i <= 100; ++i) moved += std::abs(a[i] - b[i]);
    EXPECT_LE(moved, 4) << "confusion, epoch " << epoch;
    for (size_t i = 101; i < a.size(); ++i) {
      EXPECT_NEAR(b[i], a[i], 1e-5) << "mean softmax, epoch " << epoch;
    }
  }
  std::cout << "largest difference between 1 and 2 ranks: " << largest << "\n"
            << "one process:\n"
            << single_out << "two ranks:\n"
            << out0;
}

}  // namespace
}  // namespace gradlab
