#include "server/store/experiment_store.h"

#include <SQLiteCpp/SQLiteCpp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/checkpoint_files.h"
#include "server/store/model_files.h"
#include "server/store/state_maintenance.h"
#include "server/store/state_marker.h"
#include "tests/testing/small_disk.h"
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

v1::MetricsEvent Predicted(int64_t sequence, int epoch) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.mutable_predictions()->set_epoch(epoch);
  event.mutable_predictions()->add_confusion(epoch);
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

// Every file in a folder (recursively) with its contents.
std::map<std::string, std::string> FolderContents(const fs::path& dir) {
  std::map<std::string, std::string> contents;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    contents[fs::relative(entry.path(), dir).string()] =
        std::string(std::istreambuf_iterator<char>(in), {});
  }
  return contents;
}

// Open must refuse, naming `file` and `what`, pointing to --check_state, and change no
// file in the folder.
void ExpectRefusedUntouched(const fs::path& dir, const std::string& file,
                            const std::string& what = "") {
  const std::map<std::string, std::string> before = FolderContents(dir);
  absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir.string());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << store.status();
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(file));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(what));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("--check_state"));
  EXPECT_TRUE(FolderContents(dir) == before) << "a refusal changed the folder";
}

class ExperimentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = FreshTestDir("gradlab_store").string(); }
  std::unique_ptr<ExperimentStore> Open(StoreOptions options = {}) {
    absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  // Every experiment's summary and events, as a restart reads them.
  struct Loaded {
    StoredExperiment summary;
    StoredEvents events;
  };
  static std::vector<Loaded> LoadAll(const ExperimentStore& store) {
    absl::StatusOr<std::vector<StoredExperiment>> summaries = store.LoadExperiments();
    EXPECT_TRUE(summaries.ok()) << summaries.status();
    std::vector<Loaded> all;
    for (StoredExperiment& summary : *summaries) {
      absl::StatusOr<StoredEvents> events = store.LoadEvents(summary.record.id());
      EXPECT_TRUE(events.ok()) << events.status();
      all.push_back({std::move(summary), *std::move(events)});
    }
    return all;
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
  std::vector<Loaded> all = LoadAll(*store);
  ASSERT_EQ(all.size(), 2u);
  const StoredExperiment& a = all[0].summary;
  EXPECT_EQ(a.ordinal, 1);
  EXPECT_EQ(a.request_id, "req-1");
  EXPECT_EQ(a.record.state(), v1::SUCCEEDED);
  EXPECT_EQ(a.record.best_test_accuracy(), 0.5);
  EXPECT_EQ(a.last_sequence, 4);
  const StoredEvents& events = all[0].events;
  EXPECT_TRUE(events.damage.ok());
  ASSERT_EQ(events.metrics.size(), 3u);
  EXPECT_EQ(events.metrics[0].sequence(), 1);
  EXPECT_EQ(events.metrics[1].epoch_metrics().epoch(), 1);
  EXPECT_EQ(events.metrics[2].sequence(), 4);
  ASSERT_EQ(events.gradients.size(), 1u);
  EXPECT_EQ(events.gradients[0].layers(0).name(), "conv1.weight");
  EXPECT_EQ(all[1].summary.record.id(), "bbbb");
  EXPECT_TRUE(all[1].events.metrics.empty());
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
  // Predictions are as durable as the epoch they come just before.
  ASSERT_TRUE(journal->Record(Progress(++sequence, 2)).ok());
  ASSERT_TRUE(journal->Record(Predicted(++sequence, 2)).ok());
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
  ASSERT_TRUE(journal->Record(Predicted(2, 0)).ok());
  ASSERT_TRUE(journal->Record(Snapshot(3, 1, 1)).ok());
  ASSERT_TRUE(journal->Record(Predicted(4, 1)).ok());
  ASSERT_TRUE(journal->Record(Epoch(5, 1)).ok());
  ASSERT_TRUE(journal->Record(Snapshot(6, 5, 2)).ok());
  ASSERT_TRUE(journal->Record(Progress(7, 2)).ok());
  ASSERT_TRUE(journal->Record(Predicted(8, 2)).ok());
  ASSERT_TRUE(journal->Record(Epoch(9, 2)).ok());
  ASSERT_TRUE(journal->Record(Progress(10, 3)).ok());
  ASSERT_TRUE(journal->Flush().ok());
  ASSERT_TRUE(store->Journal("bbbb")->Record(Epoch(1, 1)).ok());

  // Resuming from epoch 1's checkpoint: epoch 2's predictions go with its metrics.
  ASSERT_TRUE(store->DropEventsAfterEpoch("aaaa", 1).ok());
  std::vector<Loaded> all = LoadAll(*store);
  std::vector<int64_t> sequences;
  for (const auto& event : all[0].events.metrics) sequences.push_back(event.sequence());
  EXPECT_EQ(sequences, (std::vector<int64_t>{1, 2, 4, 5}));
  ASSERT_EQ(all[0].events.gradients.size(), 1u);
  EXPECT_EQ(all[0].events.gradients[0].step(), 1);

  ASSERT_TRUE(store->DeleteExperiment("bbbb").ok());
  all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].summary.record.id(), "aaaa");
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
  EXPECT_EQ(LoadAll(*Open())[0].summary.last_sequence, sequence - 1);
}

TEST_F(ExperimentStoreTest, ADamagedDatabaseIsRefusedAndLeftUntouched) {
  fs::create_directories(dir_);
  const std::string path = (fs::path(dir_) / "gradlab.db").string();
  const std::string garbage(8192, 'g');
  std::ofstream(path, std::ios::binary) << garbage;
  absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(dir_);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("changed nothing"));
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
  ExpectRefusedUntouched(dir_, "gradlab.db");
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

// A store with two experiments and a few epochs of events, as a server leaves it.
class DamagedStoreTest : public ExperimentStoreTest {
 protected:
  void Fill(ExperimentStore& store) {
    ASSERT_TRUE(store.SaveExperiment(1, "", Record("aaaa", v1::SUCCEEDED)).ok());
    ASSERT_TRUE(store.SaveExperiment(2, "", Record("bbbb", v1::SUCCEEDED)).ok());
    std::unique_ptr<EventJournal> journal = store.Journal("aaaa");
    int64_t sequence = 0;
    for (int epoch = 1; epoch <= 3; ++epoch) {
      ASSERT_TRUE(journal->Record(Snapshot(++sequence, epoch * 10 - 9, epoch)).ok());
      ASSERT_TRUE(journal->Record(Progress(++sequence, epoch)).ok());
      ASSERT_TRUE(journal->Record(Epoch(++sequence, epoch)).ok());
    }
  }
  // The folder as a SIGKILL leaves it: copied while the store is open, so that the
  // committed transactions are in the WAL, not yet in the database file.
  fs::path CrashImage() {
    const fs::path image = fs::path(dir_ + "-crash");
    fs::remove_all(image);
    auto store = Open();
    Fill(*store);
    fs::copy(dir_, image, fs::copy_options::recursive);
    return image;
  }
  // Changes one byte of a column of one row, behind the store's back.
  void FlipByte(const std::string& sql_select_rowid, const std::string& table,
                const std::string& column) {
    SQLite::Database db((fs::path(dir_) / "gradlab.db").string(), SQLite::OPEN_READWRITE);
    SQLite::Statement read(
        db, absl::StrCat("SELECT ", column, " FROM ", table, " WHERE ", sql_select_rowid));
    ASSERT_TRUE(read.executeStep());
    std::string bytes(static_cast<const char*>(read.getColumn(0).getBlob()),
                      read.getColumn(0).getBytes());
    read.reset();
    bytes[bytes.size() / 2] ^= 0x10;
    SQLite::Statement write(
        db, absl::StrCat("UPDATE ", table, " SET ", column, " = ? WHERE ", sql_select_rowid));
    write.bind(1, bytes.data(), static_cast<int>(bytes.size()));
    ASSERT_EQ(write.exec(), 1);
  }
};

TEST_F(DamagedStoreTest, AHealthyCrashImageOpensWithItsWholeHistory) {
  const fs::path image = CrashImage();
  ASSERT_GT(fs::file_size(image / "gradlab.db-wal"), 0u);
  dir_ = image.string();
  std::vector<Loaded> all = LoadAll(*Open());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].events.metrics.size(), 6u);
  EXPECT_EQ(all[0].summary.last_sequence, 9);
}

TEST_F(DamagedStoreTest, ADeletedWalThatHeldCommittedTransactionsIsRefused) {
  const fs::path image = CrashImage();
  fs::remove(image / "gradlab.db-wal");
  ExpectRefusedUntouched(image, "gradlab.db", "committed transactions: its -wal file");
}

TEST_F(DamagedStoreTest, AGarbledWalIsRefused) {
  const fs::path image = CrashImage();
  const fs::path wal = image / "gradlab.db-wal";
  {
    std::fstream file(wal, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(fs::file_size(wal) * 2 / 3));  // past the schema
    file << std::string(64, 'x');
  }
  ExpectRefusedUntouched(image, "gradlab.db", "missing committed transactions");
}

TEST_F(DamagedStoreTest, AnEmptiedOrMissingDatabaseNextToItsMarkerIsRefused) {
  { Fill(*Open()); }
  const fs::path db = fs::path(dir_) / "gradlab.db";
  fs::resize_file(db, 0);
  ExpectRefusedUntouched(dir_, "gradlab.db", "missing or empty");
  fs::remove(db);
  ExpectRefusedUntouched(dir_, "gradlab.db", "missing or empty");
}

TEST_F(DamagedStoreTest, AnotherStoresDatabaseIsRefusedAsReplaced) {
  { Fill(*Open()); }
  const std::string mine = dir_;
  // Fresh, as dir_ is: one left by an earlier run (of another schema version) is not this
  // test's other store.
  dir_ = FreshTestDir("gradlab_store_other").string();
  { Fill(*Open()); }
  fs::copy_file(fs::path(dir_) / "gradlab.db", fs::path(mine) / "gradlab.db",
                fs::copy_options::overwrite_existing);
  ExpectRefusedUntouched(mine, "gradlab.db", "was replaced");
}

TEST_F(DamagedStoreTest, AFlippedBitInTheMarkerIsRefused) {
  { Fill(*Open()); }
  const fs::path marker = fs::path(dir_) / "gradlab.marker";
  {
    std::fstream file(marker, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(30);
    file << 'Z';
  }
  ExpectRefusedUntouched(dir_, "gradlab.marker", "checksum does not match");
}

TEST_F(DamagedStoreTest, AFlippedBitInASummaryIsRefusedNamingTheExperiment) {
  { Fill(*Open()); }
  FlipByte("id = 'bbbb'", "experiments", "record");
  ExpectRefusedUntouched(dir_, "gradlab.db", "the summary of experiment bbbb fails its checksum");
}

TEST_F(DamagedStoreTest, AFlippedBitInASweepIsRefusedNamingIt) {
  {
    auto store = Open();
    StoredSweep sweep;
    sweep.ordinal = 1;
    sweep.record.set_id("swp1");
    sweep.record.set_name("a study with a name long enough to flip a byte of");
    ASSERT_TRUE(store->SaveSweep(sweep).ok());
  }
  FlipByte("id = 'swp1'", "sweeps", "record");
  ExpectRefusedUntouched(dir_, "gradlab.db", "the summary of sweep swp1 fails its checksum");
}

TEST_F(DamagedStoreTest, AFlippedBitInAModelIsRefusedNamingIt) {
  const std::string id(64, 'c');
  {
    auto store = Open();
    StoredModel model;
    model.ordinal = 1;
    model.record.set_id(id);
    model.record.set_name("a network with a name long enough to flip a byte of");
    ASSERT_TRUE(store->SaveModel(model).ok());
  }
  FlipByte("id = '" + id + "'", "models", "record");
  ExpectRefusedUntouched(dir_, "gradlab.db", "the summary of model " + id + " fails its checksum");
}

TEST_F(DamagedStoreTest, AFlippedBitInAnEventEndsThatExperimentsEventsBeforeIt) {
  { Fill(*Open()); }
  FlipByte("experiment_id = 'aaaa' AND sequence = 5", "events", "body");
  auto store = Open();
  absl::StatusOr<StoredEvents> events = store->LoadEvents("aaaa");
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->damage.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(events->damage.message()),
              HasSubstr("experiment aaaa: its stored event 5 fails its checksum"));
  std::vector<int64_t> sequences;
  for (const auto& event : events->metrics) sequences.push_back(event.sequence());
  for (const auto& snapshot : events->gradients) sequences.push_back(snapshot.sequence());
  std::sort(sequences.begin(), sequences.end());
  EXPECT_EQ(sequences, (std::vector<int64_t>{1, 2, 3, 4}));
  // The other experiment, and new writes, are unaffected.
  EXPECT_TRUE(store->LoadEvents("bbbb")->damage.ok());
  EXPECT_TRUE(store->SaveExperiment(3, "", Record("cccc", v1::QUEUED)).ok());
}

TEST_F(DamagedStoreTest, ANewerSchemaIsRefusedUntouched) {
  { Fill(*Open()); }
  {
    SQLite::Database db((fs::path(dir_) / "gradlab.db").string(), SQLite::OPEN_READWRITE);
    db.exec("PRAGMA user_version=99");
  }
  ExpectRefusedUntouched(dir_, "gradlab.db", "schema version 99, written by a newer gradlabd");
}

TEST_F(ExperimentStoreTest, TheMarkerFollowsEveryDurableCommit) {
  auto store = Open();
  const std::string marker_path = (fs::path(dir_) / "gradlab.marker").string();
  const int64_t at_open = (*ReadStateMarker(marker_path))->commits;
  ASSERT_TRUE(store->SaveExperiment(1, "", Record("aaaa", v1::RUNNING)).ok());
  EXPECT_EQ((*ReadStateMarker(marker_path))->commits, at_open + 1);
  std::unique_ptr<EventJournal> journal = store->Journal("aaaa");
  ASSERT_TRUE(journal->Record(Progress(1, 1)).ok());
  ASSERT_TRUE(journal->Record(Epoch(2, 1)).ok());
  EXPECT_EQ((*ReadStateMarker(marker_path))->commits, at_open + 2);
}

TEST_F(ExperimentStoreTest, KeepsOfTheBoundedKindsWhatTheLogKeeps) {
  auto store = Open();
  ASSERT_TRUE(store->SaveExperiment(1, "", Record("aaaa", v1::RUNNING)).ok());
  std::unique_ptr<EventJournal> journal =
      store->Journal("aaaa", LogRetention{/*batch_progress=*/3, /*gradient_snapshots=*/2});
  int64_t sequence = 0;
  ASSERT_TRUE(journal->Record(Predicted(++sequence, 0)).ok());  // kept: never pruned
  for (int step = 1; step <= 10; ++step) {
    ASSERT_TRUE(journal->Record(Snapshot(++sequence, step, 1)).ok());
    ASSERT_TRUE(journal->Record(Progress(++sequence, 1)).ok());
  }
  ASSERT_TRUE(journal->Record(Epoch(++sequence, 1)).ok());
  StoredEvents events = *store->LoadEvents("aaaa");
  std::vector<int64_t> steps;
  for (const auto& snapshot : events.gradients) steps.push_back(snapshot.step());
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 9, 10}));  // step 1 always, then the newest 2
  std::vector<int64_t> sequences;
  for (const auto& event : events.metrics) sequences.push_back(event.sequence());
  // The predictions, the newest 3 progress events, the epoch.
  EXPECT_EQ(sequences, (std::vector<int64_t>{1, 17, 19, 21, 22}));
}

// A state folder written by gradlab before schema version 2 (tests/fixtures/state-v1: a
// SIGKILL image, its history still in the WAL) migrates with all of it.
TEST_F(ExperimentStoreTest, TheVersion1FixtureMigratesWithEveryRow) {
  fs::copy(fs::path(FIXTURES_DIR) / "state-v1" / "state", dir_, fs::copy_options::recursive);
  int64_t v1_experiments = 0;
  int64_t v1_events = 0;
  {
    const fs::path copy = dir_ + "-read";
    fs::remove_all(copy);
    fs::copy(dir_, copy, fs::copy_options::recursive);
    SQLite::Database v1((copy / "gradlab.db").string(), SQLite::OPEN_READWRITE);
    EXPECT_EQ(v1.execAndGet("PRAGMA user_version").getInt(), 1);
    v1_experiments = v1.execAndGet("SELECT count(*) FROM experiments").getInt64();
    v1_events = v1.execAndGet("SELECT count(*) FROM events").getInt64();
  }
  ASSERT_GT(v1_events, 0);
  auto store = Open();
  std::vector<Loaded> all = LoadAll(*store);
  ASSERT_EQ(static_cast<int64_t>(all.size()), v1_experiments);
  int64_t events = 0;
  for (const Loaded& loaded : all) {
    EXPECT_TRUE(loaded.events.damage.ok()) << loaded.events.damage;
    events += static_cast<int64_t>(loaded.events.metrics.size() + loaded.events.gradients.size());
  }
  EXPECT_EQ(events, v1_events);  // the fixture is within the default retention
  SQLite::Database v2(store->database_path(), SQLite::OPEN_READONLY);
  EXPECT_EQ(v2.execAndGet("PRAGMA user_version").getInt(), ExperimentStore::kSchemaVersion);
}

// A sweep and its new runs are stored in one transaction: a restart finds all or none.
TEST_F(ExperimentStoreTest, ASweepIsStoredWithItsRunsAndDeletedWithoutThem) {
  StoredSweep sweep;
  sweep.ordinal = 1;
  sweep.request_id = "study-1";
  sweep.record.set_id("swp1");
  sweep.record.add_cells()->add_experiment_ids("run1");
  sweep.record.mutable_cells(0)->add_experiment_ids("run2");
  std::vector<StoredExperiment> runs(2);
  runs[0].ordinal = 1;
  runs[0].record = Record("run1", v1::QUEUED);
  runs[1].ordinal = 2;
  runs[1].record = Record("run2", v1::QUEUED);
  {
    auto store = Open();
    ASSERT_TRUE(store->SaveSweep(sweep, runs).ok());
    sweep.record.set_runs_done(1);  // an aggregate's change: the sweep alone
    ASSERT_TRUE(store->SaveSweep(sweep).ok());
  }
  auto store = Open();
  absl::StatusOr<std::vector<StoredSweep>> sweeps = store->LoadSweeps();
  ASSERT_TRUE(sweeps.ok()) << sweeps.status();
  ASSERT_EQ(sweeps->size(), 1u);
  EXPECT_EQ((*sweeps)[0].request_id, "study-1");
  EXPECT_EQ((*sweeps)[0].record.SerializeAsString(), sweep.record.SerializeAsString());
  EXPECT_EQ(LoadAll(*store).size(), 2u);

  ASSERT_TRUE(store->DeleteSweep("swp1").ok());
  EXPECT_TRUE(store->LoadSweeps()->empty());
  EXPECT_EQ(LoadAll(*store).size(), 2u);  // its runs stay, as plain experiments
}

TEST_F(ExperimentStoreTest, AFullDiskStoresNeitherTheSweepNorAnyOfItsRuns) {
  StoreOptions options;
  options.reserve_bytes = 0;
  options.max_pages = 20;
  auto store = Open(options);
  StoredSweep sweep;
  sweep.ordinal = 1;
  sweep.record.set_id("swp1");
  std::vector<StoredExperiment> runs(1000);
  for (size_t i = 0; i < runs.size(); ++i) {
    runs[i].ordinal = static_cast<int64_t>(i + 1);
    runs[i].record = Record(absl::StrCat("run", i), v1::QUEUED);
    runs[i].record.set_error(std::string(200, 'x'));  // bulk: more than 20 pages in all
  }
  const absl::Status status = store->SaveSweep(sweep, runs);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(store->LoadSweeps()->empty());
  EXPECT_TRUE(store->LoadExperiments()->empty());
}

// A version 2 database (before sweeps and models) gains their tables and keeps every row.
TEST_F(ExperimentStoreTest, AVersion2DatabaseMigrates) {
  {
    auto store = Open();
    ASSERT_TRUE(store->SaveExperiment(1, "", Record("aaaa", v1::SUCCEEDED)).ok());
  }
  {
    SQLite::Database db((fs::path(dir_) / "gradlab.db").string(), SQLite::OPEN_READWRITE);
    db.exec("DROP TABLE sweeps");
    db.exec("DROP TABLE models");
    db.exec("PRAGMA user_version=2");
  }
  auto store = Open();
  EXPECT_EQ(LoadAll(*store).size(), 1u);
  StoredSweep sweep;
  sweep.ordinal = 1;
  sweep.record.set_id("swp1");
  EXPECT_TRUE(store->SaveSweep(sweep).ok());
  StoredModel model;
  model.ordinal = 1;
  model.record.set_id(std::string(64, 'a'));
  EXPECT_TRUE(store->SaveModel(model).ok());
  SQLite::Database db(store->database_path(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA user_version").getInt(), 4);
}

// A version 3 database (before models) gains their table and keeps its sweeps.
TEST_F(ExperimentStoreTest, AVersion3DatabaseMigrates) {
  {
    auto store = Open();
    StoredSweep sweep;
    sweep.ordinal = 1;
    sweep.record.set_id("swp1");
    ASSERT_TRUE(store->SaveSweep(sweep).ok());
  }
  {
    SQLite::Database db((fs::path(dir_) / "gradlab.db").string(), SQLite::OPEN_READWRITE);
    db.exec("DROP TABLE models");
    db.exec("PRAGMA user_version=3");
  }
  auto store = Open();
  ASSERT_EQ(store->LoadSweeps()->size(), 1u);
  EXPECT_TRUE(store->LoadModels()->empty());
}

TEST_F(ExperimentStoreTest, ModelsAreStoredInUploadOrderAndDeleted) {
  {
    auto store = Open();
    for (int i = 1; i <= 2; ++i) {
      StoredModel model;
      model.ordinal = i;
      model.record.set_id(std::string(64, i == 1 ? 'b' : 'a'));
      model.record.set_name(absl::StrCat("net", i));
      model.record.set_parameter_count(1000 * i);
      ASSERT_TRUE(store->SaveModel(model).ok());
    }
  }
  auto store = Open();
  absl::StatusOr<std::vector<StoredModel>> models = store->LoadModels();
  ASSERT_TRUE(models.ok()) << models.status();
  ASSERT_EQ(models->size(), 2u);
  EXPECT_EQ((*models)[0].record.name(), "net1");
  EXPECT_EQ((*models)[1].record.parameter_count(), 2000);
  ASSERT_TRUE(store->DeleteModel(std::string(64, 'b')).ok());
  ASSERT_EQ(store->LoadModels()->size(), 1u);
  EXPECT_EQ(store->LoadModels()->front().record.name(), "net2");
}

TEST_F(DamagedStoreTest, TheFullCheckReportsAHealthyFolderAndEachDamageWithoutWriting) {
  {
    auto store = Open();
    Fill(*store);
  }
  CheckpointFiles checkpoints((fs::path(dir_) / "checkpoints" / "aaaa").string());
  ASSERT_TRUE(checkpoints.Save(2, "model and optimizer").ok());
  ASSERT_TRUE(checkpoints.Save(3, "model and optimizer").ok());
  absl::StatusOr<StateReport> healthy = VerifyStateDir(dir_);
  ASSERT_TRUE(healthy.ok()) << healthy.status();
  EXPECT_TRUE(healthy->problems.empty()) << healthy->problems[0];
  EXPECT_THAT(healthy->checked, ::testing::Contains("9 events"));
  EXPECT_THAT(healthy->checked, ::testing::Contains("2 checkpoint files"));

  FlipByte("experiment_id = 'aaaa' AND sequence = 7", "events", "body");
  FlipByte("id = 'bbbb'", "experiments", "record");
  {
    std::fstream file(checkpoints.PathOf(3), std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-3, std::ios::end);
    file << "xyz";
  }
  const std::map<std::string, std::string> before = FolderContents(dir_);
  absl::StatusOr<StateReport> damaged = VerifyStateDir(dir_);
  ASSERT_TRUE(damaged.ok()) << damaged.status();
  EXPECT_THAT(damaged->problems,
              ::testing::UnorderedElementsAre(
                  "experiment aaaa: its stored event 7 fails its checksum",
                  "the summary of experiment bbbb fails its checksum",
                  HasSubstr("epoch-0003.ckpt is damaged: its checksum does not match")));
  EXPECT_TRUE(FolderContents(dir_) == before) << "the check changed the folder";
}

// An uploaded model: its record and its file, checked by hashing it again, and copied by
// a backup.
TEST_F(DamagedStoreTest, UploadedModelsAreCheckedAndBackedUpWithTheirFiles) {
  const ModelFiles files((fs::path(dir_) / "models").string());
  std::string id;
  {
    auto store = Open();
    absl::StatusOr<std::unique_ptr<ModelUpload>> upload = files.BeginUpload();
    ASSERT_TRUE(upload.ok());
    ASSERT_TRUE((*upload)->Append("torchscript bytes").ok());
    id = *(*upload)->Finish();
    ASSERT_TRUE((*upload)->Keep().ok());
    StoredModel model;
    model.ordinal = 1;
    model.record.set_id(id);
    model.record.set_name("net");
    ASSERT_TRUE(store->SaveModel(model).ok());
  }
  absl::StatusOr<StateReport> healthy = VerifyStateDir(dir_);
  ASSERT_TRUE(healthy.ok()) << healthy.status();
  EXPECT_TRUE(healthy->problems.empty()) << healthy->problems[0];
  EXPECT_THAT(healthy->checked, ::testing::Contains("1 uploaded models"));
  EXPECT_THAT(healthy->checked, ::testing::Contains("1 model files"));

  const std::string backup = dir_ + "-backup";
  fs::remove_all(backup);
  ASSERT_TRUE(BackUpStateDir(dir_, backup).ok());
  EXPECT_TRUE(fs::exists(fs::path(backup) / "models" / (id + ".pt")));
  absl::StatusOr<StateReport> copied = VerifyStateDir(backup);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_TRUE(copied->problems.empty()) << copied->problems[0];

  std::ofstream(*files.PathOf(id), std::ios::binary | std::ios::trunc) << "torchscript bytez";
  absl::StatusOr<StateReport> damaged = VerifyStateDir(dir_);
  ASSERT_TRUE(damaged.ok()) << damaged.status();
  EXPECT_THAT(damaged->problems,
              ::testing::ElementsAre(HasSubstr("uploaded model " + id + ": model file ")));
  fs::remove(*files.PathOf(id));
  EXPECT_THAT(VerifyStateDir(dir_)->problems, ::testing::ElementsAre(HasSubstr("no model file")));
}

TEST_F(DamagedStoreTest, TheFullCheckWaitsForNoServerAndSaysTheFolderIsInUse) {
  auto store = Open();
  absl::StatusOr<StateReport> report = VerifyStateDir(dir_);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("in use by another gradlabd"));
}

// A backup of a folder that a store is writing to opens as the store was at one moment.
TEST_F(DamagedStoreTest, ABackupOfAFolderInUseOpensWithItsHistory) {
  auto store = Open();
  Fill(*store);
  CheckpointFiles checkpoints((fs::path(dir_) / "checkpoints" / "aaaa").string());
  ASSERT_TRUE(checkpoints.Save(3, "epoch 3").ok());
  ASSERT_TRUE(checkpoints.Save(4, "epoch 4, newer than any stored event").ok());
  const std::string backup = dir_ + "-backup";
  fs::remove_all(backup);
  ASSERT_TRUE(BackUpStateDir(dir_, backup).ok());
  // Written after the backup: not in it.
  ASSERT_TRUE(store->SaveExperiment(3, "", Record("cccc", v1::QUEUED)).ok());
  EXPECT_EQ(BackUpStateDir(dir_, backup).code(), absl::StatusCode::kInvalidArgument);

  dir_ = backup;
  EXPECT_TRUE(VerifyStateDir(backup)->problems.empty());
  std::vector<Loaded> all = LoadAll(*Open());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].events.metrics.size(), 6u);
  CheckpointFiles copied((fs::path(backup) / "checkpoints" / "aaaa").string());
  EXPECT_EQ(copied.Epochs(), (std::vector<int>{3}));
  EXPECT_EQ(*copied.Read(3), "epoch 3");
}

// On a disk that fills (a small tmpfs), the reserve keeps room for state changes: events
// fail, a state change after them is stored, events are refused until there is room for
// the reserve again.
TEST_F(ExperimentStoreTest, OnAFullDiskTheReserveStoresStateChangesUntilThereIsRoom) {
  SmallDisk disk(dir_, 4);
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.why_not();
  StoreOptions options;
  options.reserve_bytes = 1 << 20;
  auto store = Open(options);
  ASSERT_TRUE(fs::exists(fs::path(dir_) / "gradlab.reserve"));
  ASSERT_TRUE(store->SaveExperiment(1, "", Record("aaaa", v1::RUNNING)).ok());
  std::unique_ptr<EventJournal> journal = store->Journal("aaaa");
  int64_t sequence = 0;
  v1::GradientSnapshot big = Snapshot(0, 2, 1);
  big.mutable_layers(0)->set_name(std::string(4000, 'n'));
  absl::Status status;
  while (status.ok() && sequence < 100000) {
    big.set_sequence(++sequence);
    status = journal->Record(big);
    if (status.ok()) status = journal->Flush();
  }
  ASSERT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(dir_));
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "gradlab.reserve"));  // events never take it

  v1::MetricsEvent queued;
  queued.set_sequence(++sequence);
  queued.mutable_state_change()->set_state(v1::QUEUED);
  EXPECT_TRUE(journal->Record(queued).ok());
  EXPECT_TRUE(store->SaveExperiment(1, "", Record("aaaa", v1::QUEUED)).ok());
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "gradlab.reserve"));
  big.set_sequence(++sequence);
  status = journal->Record(big);
  if (status.ok()) status = journal->Flush();
  EXPECT_THAT(std::string(status.message()), HasSubstr("kept for state changes"));
  EXPECT_EQ(store->RestoreReserve().code(), absl::StatusCode::kResourceExhausted);

  ASSERT_TRUE(disk.Resize(16));
  EXPECT_TRUE(store->RestoreReserve().ok());
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "gradlab.reserve"));
  big.set_sequence(++sequence);
  EXPECT_TRUE(journal->Record(big).ok());
  EXPECT_TRUE(journal->Flush().ok());
  store.reset();
  journal.reset();
  EXPECT_EQ(LoadAll(*Open(options))[0].summary.record.state(), v1::QUEUED);
}

}  // namespace
}  // namespace gradlab
