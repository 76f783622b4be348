#include "server/experiments/experiment_registry.h"

#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/experiments/testing/read_log.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

RegistryOptions SmallOptions(int max_queue = 100) {
  RegistryOptions options;
  options.training_slots = 1;
  options.threads_per_job = 1;
  options.max_queue = max_queue;
  // The fake datasets the tests write, and a folder that is not there.
  options.allowed_data_dirs = {::testing::TempDir(), "/nonexistent"};
  return options;
}

// A synthetic experiment that trains in well under a second per epoch.
v1::StartExperimentRequest Quick(int epochs = 1) {
  v1::StartExperimentRequest request;
  request.mutable_spec()->set_model("mlp");
  request.mutable_spec()->set_dataset("synthetic");
  request.mutable_spec()->set_epochs(epochs);
  request.mutable_spec()->set_max_train_samples(256);
  request.mutable_spec()->set_max_test_samples(64);
  request.mutable_spec()->set_batch_size(64);
  return request;
}

v1::Experiment WaitForState(const ExperimentRegistry& registry, const std::string& id,
                            v1::ExperimentState state) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    absl::StatusOr<v1::Experiment> experiment = registry.GetExperiment(id);
    EXPECT_TRUE(experiment.ok());
    if (experiment->state() == state) return *experiment;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ADD_FAILURE() << "experiment " << id << " never reached " << v1::ExperimentState_Name(state);
  return {};
}

absl::StatusOr<v1::Experiment> CancelAndWait(ExperimentRegistry& registry, const std::string& id) {
  absl::Notification done;
  absl::StatusOr<v1::Experiment> result;
  registry.CancelExperiment(id, [&](absl::StatusOr<v1::Experiment> answer) {
    result = std::move(answer);
    done.Notify();
  });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  return result;
}

TEST(ExperimentRegistryTest, RunsAnExperimentThroughItsLifecycle) {
  ExperimentRegistry registry(SmallOptions());
  absl::StatusOr<v1::Experiment> started = registry.StartExperiment(Quick(2));
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->id().size(), 8u);
  // The resolved spec carries every default and where the data came from.
  EXPECT_EQ(started->spec().learning_rate(), 0.001);
  EXPECT_TRUE(started->spec().has_batch_norm());
  EXPECT_EQ(started->spec().threads(), 1);

  v1::Experiment done = WaitForState(registry, started->id(), v1::SUCCEEDED);
  EXPECT_EQ(done.current_epoch(), 2);
  EXPECT_EQ(done.last_metrics().epoch(), 2);
  EXPECT_GT(done.best_test_accuracy(), 0);
  EXPECT_GT(done.finished_time().seconds(), 0);

  std::vector<v1::MetricsEvent> events = AllMetrics(**registry.EventLog(started->id()));
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.front().state_change().state(), v1::QUEUED);
  EXPECT_EQ(events[1].state_change().state(), v1::RUNNING);
  EXPECT_EQ(events.back().state_change().state(), v1::SUCCEEDED);
  int epochs = 0;
  for (const auto& event : events) epochs += event.has_epoch_metrics();
  EXPECT_EQ(epochs, 2);
  auto snapshot = (*registry.EventLog(started->id()))->NextGradients(0);
  ASSERT_NE(snapshot.event, nullptr);
  EXPECT_EQ(snapshot.event->step(), 1);
  EXPECT_EQ(snapshot.event->layers(0).name(), "fc1.weight");
}

TEST(ExperimentRegistryTest, InvalidSpecsAreRefusedAndChangeNothing) {
  ExperimentRegistry registry(SmallOptions());
  v1::StartExperimentRequest request = Quick();
  request.mutable_spec()->set_model("vgg");
  absl::StatusOr<v1::Experiment> bad = registry.StartExperiment(request);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("spec.model: unknown value \"vgg\""));

  request = Quick();
  request.mutable_spec()->set_threads(4);
  EXPECT_THAT(std::string(registry.StartExperiment(request).status().message()),
              HasSubstr("spec.threads: 4 is more than this server's threads per job (1)"));

  request = Quick();
  request.mutable_spec()->set_dataset("cifar10");
  request.mutable_spec()->set_data_dir("/nonexistent/cifar");
  absl::StatusOr<v1::Experiment> missing = registry.StartExperiment(request);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      std::string(missing.status().message()),
      HasSubstr("dataset cifar10 is not present: no data_batch_1.bin in /nonexistent/cifar"));
  EXPECT_TRUE(registry.AllExperiments().empty());
}

// A spec's data_dir names only the allowed folders, symlinks resolved; the refusal says
// nothing of what is outside them.
TEST(ExperimentRegistryTest, DataDirsOutsideTheAllowedFoldersAreRefusedWithoutAWordOnThem) {
  ExperimentRegistry registry(SmallOptions());
  const std::filesystem::path escape = std::filesystem::path(::testing::TempDir()) / "escape";
  std::filesystem::remove(escape);
  std::filesystem::create_directory_symlink("/etc", escape);
  for (const std::string& data_dir :
       {std::string("/etc"), escape.string(), (escape / "..").string(),
        std::string("/nonexistent/../etc")}) {
    SCOPED_TRACE(data_dir);
    v1::StartExperimentRequest request = Quick();
    request.mutable_spec()->set_dataset("mnist");
    request.mutable_spec()->set_data_dir(data_dir);
    const absl::Status refused = registry.StartExperiment(request).status();
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(refused.message()),
                HasSubstr("spec.data_dir: \"" + data_dir +
                          "\" is outside the folders this server reads datasets from"));
  }
  EXPECT_TRUE(registry.AllExperiments().empty());
}

// Over the per-run memory limit: refused before anything of its size is allocated,
// saying by how much and what to lower; nothing is stored or queued.
TEST(ExperimentRegistryTest, ARunEstimatedOverTheMemoryLimitIsRefused) {
  RegistryOptions options = SmallOptions();
  options.max_run_memory = int64_t{2} << 30;
  ExperimentRegistry registry(options);
  absl::StatusOr<v1::Experiment> small = registry.StartExperiment(Quick());
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_GT(small->estimated_peak_bytes(), 0);
  EXPECT_LT(small->estimated_peak_bytes(), options.max_run_memory);
  EXPECT_EQ(registry.ServerInfo().max_run_memory_bytes(), int64_t{2} << 30);

  v1::StartExperimentRequest big = Quick();
  big.mutable_spec()->set_model("resnet");
  big.mutable_spec()->set_batch_size(4096);
  absl::StatusOr<v1::Experiment> refused = registry.StartExperiment(big);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::AllOf(HasSubstr("the run is estimated to need "),
                               HasSubstr(" at batch_size 4096, dataset "),
                               HasSubstr("more than the 2.0 GiB this server allows a run "
                                         "(gradlabd --max_run_memory); lower batch_size (4096) "
                                         "or train in precision bf16")));

  v1::StartExperimentRequest many = Quick();
  many.mutable_spec()->set_max_train_samples(2'000'000);
  EXPECT_THAT(std::string(registry.StartExperiment(many).status().message()),
              HasSubstr("lower max_train_samples or max_test_samples"));
  EXPECT_EQ(registry.AllExperiments().size(), 1u);
}

// Runs that do not fit beside those running wait; one alone always runs.
TEST(ExperimentRegistryTest, RunsWaitUntilTheyFitInTheMemoryBudget) {
  RegistryOptions options = SmallOptions();
  options.training_slots = 2;
  ExperimentRegistry probe(SmallOptions());
  const int64_t one_run = probe.StartExperiment(Quick())->estimated_peak_bytes();
  options.memory_budget = one_run + one_run / 2;  // room for one at a time
  ExperimentRegistry registry(options);
  const std::string first = registry.StartExperiment(Quick(/*epochs=*/1000))->id();
  const std::string second = registry.StartExperiment(Quick())->id();
  WaitForState(registry, first, v1::RUNNING);
  absl::SleepFor(absl::Milliseconds(500));
  absl::StatusOr<v1::Experiment> waiting = registry.GetExperiment(second);
  EXPECT_EQ(waiting->state(), v1::QUEUED) << "a free slot, but not the memory";
  EXPECT_EQ(waiting->queue_position(), 1);
  ASSERT_TRUE(CancelAndWait(registry, first).ok());
  WaitForState(registry, second, v1::SUCCEEDED);
}

TEST(ExperimentRegistryTest, SameRequestIdGivesTheSameExperiment) {
  ExperimentRegistry registry(SmallOptions());
  v1::StartExperimentRequest request = Quick();
  request.set_request_id("retry-1");
  absl::StatusOr<v1::Experiment> first = registry.StartExperiment(request);
  absl::StatusOr<v1::Experiment> second = registry.StartExperiment(request);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->id(), second->id());
  EXPECT_EQ(registry.AllExperiments().size(), 1u);
}

TEST(ExperimentRegistryTest, QueueFullCancelQueuedAndRunning) {
  ExperimentRegistry registry(SmallOptions(/*max_queue=*/2));
  absl::StatusOr<v1::Experiment> running = registry.StartExperiment(Quick(/*epochs=*/1000));
  ASSERT_TRUE(running.ok());
  WaitForState(registry, running->id(), v1::RUNNING);
  absl::StatusOr<v1::Experiment> queued1 = registry.StartExperiment(Quick());
  absl::StatusOr<v1::Experiment> queued2 = registry.StartExperiment(Quick());
  ASSERT_TRUE(queued1.ok() && queued2.ok());
  EXPECT_EQ(queued1->queue_position(), 1);
  EXPECT_EQ(queued2->queue_position(), 2);
  absl::StatusOr<v1::Experiment> full = registry.StartExperiment(Quick());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.status().message()), HasSubstr("the queue is full"));

  absl::StatusOr<v1::Experiment> cancelled = CancelAndWait(registry, queued1->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::CANCELLED);
  EXPECT_EQ(registry.GetExperiment(queued2->id())->queue_position(), 1);

  absl::StatusOr<v1::Experiment> stopped = CancelAndWait(registry, running->id());
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->state(), v1::CANCELLED);

  absl::StatusOr<v1::Experiment> again = CancelAndWait(registry, running->id());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CancelAndWait(registry, "nosuchid").status().code(), absl::StatusCode::kNotFound);
  WaitForState(registry, queued2->id(), v1::SUCCEEDED);
}

// A folder that LocateDataset takes for MNIST: its four files, each holding `content`.
std::filesystem::path FakeMnist(const std::string& name, const std::string& content) {
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / name;
  std::filesystem::create_directories(dir);
  for (const char* file : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    std::ofstream(dir / file) << content;
  }
  return dir;
}

TEST(ExperimentRegistryTest, CorruptDatasetFailsTheExperimentAndTheServerGoesOn) {
  const std::filesystem::path dir = FakeMnist("corrupt_mnist", "this is not an IDX file at all");
  ExperimentRegistry registry(SmallOptions());
  v1::StartExperimentRequest request = Quick();
  request.mutable_spec()->set_dataset("mnist");
  request.mutable_spec()->set_data_dir(dir.string());
  absl::StatusOr<v1::Experiment> started = registry.StartExperiment(request);
  ASSERT_TRUE(started.ok()) << started.status();
  v1::Experiment failed = WaitForState(registry, started->id(), v1::FAILED);
  EXPECT_THAT(failed.error(), HasSubstr("train-images-idx3-ubyte: bad magic number"));

  absl::StatusOr<v1::Experiment> next = registry.StartExperiment(Quick());
  ASSERT_TRUE(next.ok());
  WaitForState(registry, next->id(), v1::SUCCEEDED);
}

// The record shows the spec as the client sent it, with every default filled in, and
// where the server found the dataset as a field of its own.
TEST(ExperimentRegistryTest, TheRecordKeepsTheClientsDataDirAndSaysWhereTheDatasetIs) {
  const std::filesystem::path dir = FakeMnist("own_mnist", "found, not read");
  RegistryOptions options = SmallOptions();
  options.data_dir = (dir.parent_path() / "nothing_here").string();
  ExperimentRegistry registry(std::move(options));
  v1::StartExperimentRequest request = Quick(1000);
  request.mutable_spec()->set_dataset("mnist");
  request.mutable_spec()->set_data_dir(dir.string());
  absl::StatusOr<v1::Experiment> with_dir = registry.StartExperiment(request);
  ASSERT_TRUE(with_dir.ok()) << with_dir.status();
  EXPECT_EQ(with_dir->spec().data_dir(), dir.string());
  EXPECT_EQ(with_dir->dataset_location(), dir.string());

  absl::StatusOr<v1::Experiment> synthetic = registry.StartExperiment(Quick(1000));
  ASSERT_TRUE(synthetic.ok());
  EXPECT_EQ(synthetic->spec().data_dir(), "");
  EXPECT_EQ(synthetic->dataset_location(), "");
  EXPECT_EQ(synthetic->spec().batch_size(), 64);  // what Quick asked
  EXPECT_EQ(synthetic->spec().momentum(), 0.9);   // a default, filled in
  EXPECT_EQ(registry.GetExperiment(synthetic->id())->spec().data_dir(), "");
}

TEST(ExperimentRegistryTest, ListsNewestFirstInPagesAndByState) {
  ExperimentRegistry registry(SmallOptions());
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(registry.StartExperiment(Quick())->id());
  WaitForState(registry, ids.back(), v1::SUCCEEDED);

  v1::ListExperimentsRequest request;
  request.set_page_size(2);
  std::vector<std::string> listed;
  do {
    absl::StatusOr<v1::ListExperimentsResponse> page = registry.ListExperiments(request);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const auto& experiment : page->experiments()) listed.push_back(experiment.id());
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(listed, std::vector<std::string>(ids.rbegin(), ids.rend()));

  request = {};
  request.set_state(v1::SUCCEEDED);
  EXPECT_EQ(registry.ListExperiments(request)->experiments_size(), 5);
  request.set_state(v1::RUNNING);
  EXPECT_EQ(registry.ListExperiments(request)->experiments_size(), 0);

  request = {};
  request.set_page_token("garbage");
  EXPECT_EQ(registry.ListExperiments(request).status().code(), absl::StatusCode::kInvalidArgument);
  request = {};
  request.set_page_size(-1);
  EXPECT_EQ(registry.ListExperiments(request).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ExperimentRegistryTest, TheChangeFeedCarriesCreationStatesEpochsAndDeletion) {
  ExperimentRegistry registry(SmallOptions());
  std::unique_ptr<ChangeCursor> cursor = registry.changes().NewCursor([] {});
  const int64_t before = registry.changes().last_sequence();
  absl::StatusOr<v1::Experiment> started = registry.StartExperiment(Quick(2));
  // The record says SUCCEEDED a moment before the feed does: read the feed until it does.
  ChangeCursor::Next next;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (absl::Now() < deadline &&
         (next.experiment == nullptr || next.experiment->state() != v1::SUCCEEDED)) {
    if (ChangeCursor::Next read = cursor->Read(); read.experiment != nullptr) {
      next = std::move(read);
    } else {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  ASSERT_NE(next.experiment, nullptr);
  EXPECT_EQ(next.experiment->id(), started->id());
  EXPECT_EQ(next.experiment->state(), v1::SUCCEEDED);
  EXPECT_FALSE(next.experiment->deleted());
  EXPECT_EQ(cursor->Read().experiment, nullptr);
  // Created (queued), running, two epochs, succeeded: one change each.
  EXPECT_EQ(registry.changes().last_sequence() - before, 5);

  ASSERT_TRUE(registry.DeleteExperiment(started->id()).ok());
  next = cursor->Read();
  ASSERT_NE(next.experiment, nullptr);
  EXPECT_EQ(next.experiment->id(), started->id());
  EXPECT_TRUE(next.experiment->deleted());
  EXPECT_EQ(next.experiment->state(), v1::SUCCEEDED);  // its last state
  // A watcher that comes later never hears of it.
  EXPECT_EQ(registry.changes().NewCursor([] {})->Read().experiment, nullptr);
}

TEST(ExperimentRegistryTest, ShutdownStopsTrainingEndsStreamsAndRefusesNewWork) {
  ExperimentRegistry registry(SmallOptions());
  absl::StatusOr<v1::Experiment> running = registry.StartExperiment(Quick(1000));
  absl::StatusOr<v1::Experiment> queued = registry.StartExperiment(Quick());
  WaitForState(registry, running->id(), v1::RUNNING);
  const absl::Time start = absl::Now();
  registry.Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_TRUE(registry.shutting_down());
  EXPECT_EQ(registry.GetExperiment(running->id())->state(), v1::RUNNING);
  EXPECT_EQ(registry.GetExperiment(queued->id())->state(), v1::QUEUED);
  auto end = (*registry.EventLog(running->id()))->NextMetrics(0);
  ASSERT_TRUE(end.end.has_value());
  EXPECT_EQ(end.end->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(registry.StartExperiment(Quick()).status().code(), absl::StatusCode::kUnavailable);
  ChangeCursor::Next watch_end = registry.changes().NewCursor([] {})->Read();
  ASSERT_TRUE(watch_end.end.has_value());
  EXPECT_EQ(watch_end.end->code(), absl::StatusCode::kUnavailable);
}

// The nice values of this process's threads, from /proc.
std::vector<int> ThreadNiceValues() {
  std::vector<int> values;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream stat(task.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    // Fields after the command name, which is in parentheses: nice is the 19th field.
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i) {
      if (i == 19) values.push_back(std::stoi(field));
    }
  }
  return values;
}

TEST(ExperimentRegistryTest, TrainingThreadsRunAtALowerPriority) {
  const int base = getpriority(PRIO_PROCESS, 0);
  RegistryOptions options = SmallOptions();
  options.training_niceness = 3;
  ExperimentRegistry registry(options);
  absl::StatusOr<v1::Experiment> running = registry.StartExperiment(Quick(1000));
  WaitForState(registry, running->id(), v1::RUNNING);
  std::vector<int> nice = ThreadNiceValues();
  EXPECT_THAT(nice, ::testing::Contains(base + 3));
  EXPECT_THAT(nice, ::testing::Contains(base));  // the rest of the server
  registry.Shutdown();
}

TEST(ExperimentRegistryTest, ServerInfoListsModelsAndDatasets) {
  ExperimentRegistry registry(SmallOptions());
  v1::ServerInfo info = registry.ServerInfo();
  EXPECT_FALSE(info.version().empty());
  ASSERT_EQ(info.models_size(), 5);
  EXPECT_EQ(info.models(0).name(), "simple_cnn");
  EXPECT_EQ(info.models(0).parameter_count(), 175'178);
  EXPECT_EQ(info.models(2).parameter_count(), 2'777'674);
  // cifar_resnet at its default depth, 20: the paper's 0.27M.
  EXPECT_EQ(info.models(3).name(), "cifar_resnet");
  EXPECT_EQ(info.models(3).parameter_count(), 269'722);
  EXPECT_EQ(info.models(3).default_spec().depth(), 20);
  EXPECT_EQ(info.models(3).default_spec().shortcut(), "zero_pad");
  EXPECT_EQ(info.models(4).parameter_count(), 235'402);
  EXPECT_EQ(info.models(4).input_shape(), "1x28x28");
  EXPECT_TRUE(info.models(2).default_spec().batch_norm());
  ASSERT_EQ(info.datasets_size(), 4);
  EXPECT_EQ(info.datasets(3).name(), "synthetic");
  EXPECT_TRUE(info.datasets(3).present());
  EXPECT_TRUE(info.datasets(1).present()) << info.datasets(1).location();  // fashion_mnist
  EXPECT_EQ(info.workers(), 1);
  EXPECT_EQ(info.queue_capacity(), 100);
}

}  // namespace
}  // namespace gradlab
