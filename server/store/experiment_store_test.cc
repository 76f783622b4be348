#include "server/store/experiment_store.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

v1::Experiment Record(const std::string& id, v1::ExperimentState state) {
  v1::Experiment record;
  record.set_id(id);
  record.set_state(state);
  record.mutable_spec()->set_model("resnet");
  return record;
}

v1::MetricsEvent Epoch(int64_t sequence, int epoch) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.mutable_epoch_metrics()->set_epoch(epoch);
  event.mutable_epoch_metrics()->set_test_accuracy(0.1 * epoch);
  return event;
}

v1::MetricsEvent Progress(int64_t sequence, int epoch) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.mutable_batch_progress()->set_epoch(epoch);
  return event;
}

v1::GradientSnapshot Snapshot(int64_t sequence, int64_t step, int epoch) {
  v1::GradientSnapshot snapshot;
  snapshot.set_sequence(sequence);
  snapshot.set_step(step);
  snapshot.set_epoch(epoch);
  snapshot.add_layers()->set_name("conv1.weight");
  return snapshot;
}

class ExperimentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = FreshTestDir("gradlab_store").string(); }
  std::unique_ptr<ExperimentStore> Open(StoreOptions options = {}) {
    absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  // The newest event sequence another connection to the database sees (the store holds
  // the folder's lock, so this one reads the file directly).
  int64_t CommittedLastSequence() const {
    SQLite::Database db((fs::path(dir_) / "gradlab.db").string(), SQLite::OPEN_READONLY);
    return db.execAndGet("SELECT COALESCE(MAX(sequence), 0) FROM events").getInt64();
  }
  std::string dir_;
};

TEST_F(ExperimentStoreTest, RecordsAndEventsSurviveReopening) {
  {
    auto store = Open();
    ASSERT_TRUE(store->SaveExperiment(1, "req-1", Record("aaaa", v1::RUNNING)).ok());
    ASSERT_TRUE(store->SaveExperiment(2, "", Record("bbbb", v1::QUEUED)).ok());
    v1::Experiment updated = Record("aaaa", v1::SUCCEEDED);
    updated.set_best_test_accuracy(0.5);
    ASSERT_TRUE(store->SaveExperiment(1, "req-1", updated).ok());
    std::unique_ptr<EventJournal> journal = store->Journal("aaaa");
    ASSERT_TRUE(journal->Record(Progress(1, 1)).ok());
    ASSERT_TRUE(journal->Record(Snapshot(2, 1, 1)).ok());
    ASSERT_TRUE(journal->Record(Epoch(3, 1)).ok());
    ASSERT_TRUE(journal->Record(Progress(4, 2)).ok());
    ASSERT_TRUE(journal->Flush().ok());
  }
  auto store = Open();
  absl::StatusOr<std::vector<StoredExperiment>> all = store->LoadAll();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  const StoredExperiment& a = (*all)[0];
  EXPECT_EQ(a.ordinal, 1);
  EXPECT_EQ(a.request_id, "req-1");
  EXPECT_EQ(a.record.state(), v1::SUCCEEDED);
  EXPECT_EQ(a.record.best_test_accuracy(), 0.5);
  ASSERT_EQ(a.metrics.size(), 3u);
  EXPECT_EQ(a.metrics[0].sequence(), 1);
  EXPECT_EQ(a.metrics[1].epoch_metrics().epoch(), 1);
  EXPECT_EQ(a.metrics[2].sequence(), 4);
  ASSERT_EQ(a.gradients.size(), 1u);
  EXPECT_EQ(a.gradients[0].layers(0).name(), "conv1.weight");
  EXPECT_EQ(a.last_sequence, 4);
  EXPECT_EQ((*all)[1].record.id(), "bbbb");
  EXPECT_TRUE((*all)[1].metrics.empty());
}

TEST_F(ExperimentStoreTest, EpochsAreDurableAtOnceProgressInBatches) {
  auto store = Open();
  std::unique_ptr<EventJournal> journal = store->Journal("aaaa");
  int64_t sequence = 0;
  ASSERT_TRUE(store->SaveExperiment(1, "", Record("aaaa", v1::RUNNING)).ok());
  for (int i = 0; i < kMaxUncommittedEvents - 1; ++i) {
    ASSERT_TRUE(journal->Record(Progress(++sequence, 1)).ok());
  }
  // Another connection sees only what is committed.
  EXPECT_EQ(CommittedLastSequence(), 0);
  ASSERT_TRUE(journal->Record(Snapshot(++sequence, 1, 1)).ok());  // the batch is full
  EXPECT_EQ(CommittedLastSequence(), kMaxUncommittedEvents);
  ASSERT_TRUE(journal->Record(Progress(++sequence, 1)).ok());
  EXPECT_EQ(CommittedLastSequence(), kMaxUncommittedEvents);
  ASSERT_TRUE(journal->Record(Epoch(++sequence, 1)).ok());  // commits the batch with it
  EXPECT_EQ(CommittedLastSequence(), sequence);
}

TEST_F(ExperimentStoreTest, DropsThePartialEpochAndDeletesExperiments) {
  auto store = Open();
  ASSERT_TRUE(store->SaveExperiment(1, "", Record("aaaa", v1::RUNNING)).ok());
  ASSERT_TRUE(store->SaveExperiment(2, "", Record("bbbb", v1::SUCCEEDED)).ok());
  std::unique_ptr<EventJournal> journal = store->Journal("aaaa");
  v1::MetricsEvent running;
  running.set_sequence(1);
  running.mutable_state_change()->set_state(v1::RUNNING);
  ASSERT_TRUE(journal->Record(running).ok());
  ASSERT_TRUE(journal->Record(Snapshot(2, 1, 1)).ok());
  ASSERT_TRUE(journal->Record(Epoch(3, 1)).ok());
  ASSERT_TRUE(journal->Record(Snapshot(4, 5, 2)).ok());
  ASSERT_TRUE(journal->Record(Progress(5, 2)).ok());
  ASSERT_TRUE(journal->Record(Epoch(6, 2)).ok());
  ASSERT_TRUE(journal->Record(Progress(7, 3)).ok());
  ASSERT_TRUE(journal->Flush().ok());
  ASSERT_TRUE(store->Journal("bbbb")->Record(Epoch(1, 1)).ok());

  ASSERT_TRUE(store->DropEventsAfterEpoch("aaaa", 1).ok());
  std::vector<StoredExperiment> all = *store->LoadAll();
  std::vector<int64_t> sequences;
  for (const auto& event : all[0].metrics) sequences.push_back(event.sequence());
  EXPECT_EQ(sequences, (std::vector<int64_t>{1, 3}));
  ASSERT_EQ(all[0].gradients.size(), 1u);
  EXPECT_EQ(all[0].gradients[0].step(), 1);

  ASSERT_TRUE(store->DeleteExperiment("bbbb").ok());
  all = *store->LoadAll();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].record.id(), "aaaa");
}

TEST_F(ExperimentStoreTest, AFullDiskFailsTheWriteAndKeepsWhatWasCommitted) {
  auto store = Open();
  ASSERT_TRUE(store->SaveExperiment(1, "", Record("aaaa", v1::RUNNING)).ok());
  std::unique_ptr<ExperimentStore> small;
  {
    store.reset();
    StoreOptions options;
    options.max_pages = 8;
    small = Open(options);
  }
  std::unique_ptr<EventJournal> journal = small->Journal("aaaa");
  absl::Status status;
  int64_t sequence = 0;
  v1::MetricsEvent big = Epoch(0, 1);
  big.mutable_state_change()->set_reason(std::string(2000, 'r'));
  while (status.ok() && sequence < 1000) {
    big.set_sequence(++sequence);
    status = journal->Record(big);
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("disk full"));
  small.reset();
  std::vector<StoredExperiment> all = *Open()->LoadAll();
  EXPECT_EQ(all[0].last_sequence, sequence - 1);
}

TEST_F(ExperimentStoreTest, ADamagedDatabaseIsRefusedAndLeftUntouched) {
  fs::create_directories(dir_);
  const std::string path = (fs::path(dir_) / "gradlab.db").string();
  const std::string garbage(8192, 'g');
  std::ofstream(path, std::ios::binary) << garbage;
  absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir_);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("has not changed it"));
  // Nothing written: the file is as it was, and no journal or index appeared beside it
  // (only the folder's lock file, which Open takes before it reads anything).
  std::ifstream in(path, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), garbage);
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_)) {
    names.insert(entry.path().filename().string());
  }
  EXPECT_EQ(names, (std::set<std::string>{"LOCK", "gradlab.db"}));
}

TEST_F(ExperimentStoreTest, ATruncatedDatabaseIsRefused) {
  {
    auto store = Open();
    for (int i = 1; i <= 50; ++i) {
      v1::Experiment record = Record("id" + std::to_string(i), v1::SUCCEEDED);
      record.set_error(std::string(3000, 'e'));
      ASSERT_TRUE(store->SaveExperiment(i, "", record).ok());
    }
  }
  // Closing the last connection folds the WAL into the database file; then cut it short.
  const std::string path = (fs::path(dir_) / "gradlab.db").string();
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(path + suffix);
  fs::resize_file(path, fs::file_size(path) / 2);
  absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir_);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
}

TEST_F(ExperimentStoreTest, AnotherProgramsDatabaseIsRefused) {
  fs::create_directories(dir_);
  const std::string path = (fs::path(dir_) / "gradlab.db").string();
  {
    SQLite::Database other(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    other.exec("CREATE TABLE notes (text TEXT)");
  }
  absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir_);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("another program"));
}

}  // namespace
}  // namespace gradlab
