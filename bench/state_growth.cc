// state_growth: what a run adds to --state_dir, per epoch. Runs one experiment through
// gradlabd's registry and store in this process (default spec unless flags say
// otherwise), then reads back the database: events and their bytes per epoch and kind,
// the database file's size, and the checkpoint files.
//
//   build/bench/state_growth [--model=resnet] [--dataset=cifar10] [--data_dir=data]
//                            [--epochs=2] [--max_train_samples=0]
#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdio>
#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/experiment_state.h"
#include "common/usable_cpus.h"
#include "server/experiments/experiment_registry.h"

ABSL_FLAG(std::string, model, "resnet", "the model");
ABSL_FLAG(std::string, dataset, "cifar10", "the dataset");
ABSL_FLAG(std::string, data_dir, "data", "where the dataset is");
ABSL_FLAG(int, epochs, 2, "epochs to run");
ABSL_FLAG(int64_t, max_train_samples, 0, "0: the whole training split");
ABSL_FLAG(std::string, state_dir, "/tmp/gradlab_state_growth", "emptied first");

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  fs::remove_all(state_dir);
  std::string id;
  int64_t train_samples = 0;
  {
    absl::StatusOr<std::unique_ptr<gradlab::ExperimentStore>> store =
        gradlab::ExperimentStore::Open(state_dir);
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
      return 1;
    }
    gradlab::RegistryOptions options;
    options.threads_per_job = gradlab::UsableCpus();
    options.data_dir = absl::GetFlag(FLAGS_data_dir);
    options.store = *std::move(store);
    auto registry = gradlab::ExperimentRegistry::Open(options);
    if (!registry.ok()) {
      std::fprintf(stderr, "%s\n", std::string(registry.status().message()).c_str());
      return 1;
    }
    (*registry)->StartTraining();
    gradlab::v1::StartExperimentRequest request;
    request.mutable_spec()->set_model(absl::GetFlag(FLAGS_model));
    request.mutable_spec()->set_dataset(absl::GetFlag(FLAGS_dataset));
    request.mutable_spec()->set_epochs(absl::GetFlag(FLAGS_epochs));
    request.mutable_spec()->set_max_train_samples(absl::GetFlag(FLAGS_max_train_samples));
    absl::StatusOr<gradlab::v1::Experiment> started = (*registry)->StartExperiment(request);
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    id = started->id();
    gradlab::v1::Experiment experiment;
    do {
      absl::SleepFor(absl::Seconds(1));
      experiment = *(*registry)->GetExperiment(id);
    } while (!gradlab::IsFinished(experiment.state()));
    if (experiment.state() != gradlab::v1::SUCCEEDED) {
      std::fprintf(stderr, "the run ended %s: %s\n",
                   gradlab::v1::ExperimentState_Name(experiment.state()).c_str(),
                   experiment.error().c_str());
      return 1;
    }
    train_samples = experiment.spec().max_train_samples();
  }  // closing the store folds its WAL into the database file

  const std::string db_path = (fs::path(state_dir) / "gradlab.db").string();
  SQLite::Database db(db_path, SQLite::OPEN_READONLY);
  std::printf("model %s, dataset %s, %s training samples, default spec otherwise\n\n",
              absl::GetFlag(FLAGS_model).c_str(), absl::GetFlag(FLAGS_dataset).c_str(),
              train_samples > 0 ? absl::StrFormat("%d", train_samples).c_str() : "all");
  // kind: ExperimentStore::EventKind (2, 3: gradient snapshots; 0: state changes).
  std::printf("| epoch | kind | events | bytes |\n|---:|---|---:|---:|\n");
  SQLite::Statement rows(db,
                         "SELECT epoch, kind IN (2, 3) AS gradients, "
                         "  CASE WHEN kind IN (2, 3) THEN 'gradient snapshot' "
                         "       WHEN kind = 0 THEN 'state change' ELSE 'progress + epoch' END, "
                         "  count(*), sum(length(body)) "
                         "FROM events GROUP BY epoch, gradients ORDER BY epoch, gradients");
  int64_t last_epoch_bytes = 0;
  while (rows.executeStep()) {
    const int epoch = rows.getColumn(0).getInt();
    const int64_t bytes = rows.getColumn(4).getInt64();
    if (epoch == absl::GetFlag(FLAGS_epochs)) last_epoch_bytes += bytes;
    std::printf("| %d | %s | %d | %lld |\n", epoch, rows.getColumn(2).getString().c_str(),
                rows.getColumn(3).getInt(), static_cast<long long>(bytes));
  }
  const int64_t db_bytes = static_cast<int64_t>(fs::file_size(db_path));
  std::printf("\nevent payload of the last epoch: %lld bytes\n",
              static_cast<long long>(last_epoch_bytes));
  std::printf("database file: %lld bytes for %d epochs (with SQLite's pages and indexes)\n",
              static_cast<long long>(db_bytes), absl::GetFlag(FLAGS_epochs));
  for (const auto& entry : fs::directory_iterator(fs::path(state_dir) / "checkpoints" / id)) {
    std::printf("checkpoint %s: %lld bytes\n", entry.path().filename().c_str(),
                static_cast<long long>(entry.file_size()));
  }
  return 0;
}
