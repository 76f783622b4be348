// store_history: what a long history costs gradlabd. Fills a state folder through the
// store's own API (ExperimentStore::SaveExperiment and the journal's WriteEvents, as a
// server writes them) with --experiments finished experiments of --events_per_experiment
// events each, shaped as a 20-epoch simple_cnn run leaves them after retention (state
// changes, epoch metrics, the 256 newest batch progress events, gradient snapshots of 10
// layers). Then starts the real gradlabd on it --starts times and measures each time:
//   - startup: from exec to its "listening on port" line (the store checked and every
//     experiment's summary read);
//   - resident memory (VmRSS) once it listens;
//   - p50/p99 of GetExperiment on random ids, and of ListExperiments over every page;
//   - replaying one experiment's whole history (StreamMetrics and StreamGradients from
//     the start): the first time (its events read from the store) and again (in memory).
//
//   build/bench/store_history [--experiments=10000] [--events_per_experiment=1000]
//       [--state_dir=/var/tmp/gradlab_history] [--reuse] [--starts=3]
//       [--gradlabd=build/server/gradlabd]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "server/store/experiment_store.h"
#include "tests/testing/child_process.h"

ABSL_FLAG(int, experiments, 10000, "finished experiments in the store");
ABSL_FLAG(int, events_per_experiment, 1000, "stored events of each (at least 300)");
ABSL_FLAG(std::string, state_dir, "/var/tmp/gradlab_history",
          "the state folder (emptied and filled first unless --reuse)");
ABSL_FLAG(bool, reuse, false, "measure the folder as it is (filled by an earlier run)");
ABSL_FLAG(int, starts, 3, "gradlabd starts to measure");
ABSL_FLAG(std::string, gradlabd, "build/server/gradlabd", "the gradlabd binary");

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kEpochs = 20;
constexpr int kProgressKept = 256;  // LogRetention's default

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values.empty()
             ? 0
             : values[std::min(values.size() - 1, static_cast<size_t>(p * values.size()))];
}

std::string IdOf(int i) { return absl::StrFormat("h%07d", i); }

v1::Experiment Record(int i) {
  v1::Experiment record;
  record.set_id(IdOf(i));
  record.set_name(absl::StrCat("history ", i));
  record.set_state(v1::SUCCEEDED);
  v1::ExperimentSpec* spec = record.mutable_spec();
  spec->set_model("simple_cnn");
  spec->set_dataset("cifar10");
  spec->set_epochs(kEpochs);
  spec->set_batch_size(128);
  spec->set_learning_rate(0.001);
  spec->set_momentum(0.9);
  spec->set_seed(42 + i);
  record.mutable_created_time()->set_seconds(1'700'000'000 + i);
  record.mutable_started_time()->set_seconds(1'700'000'000 + i);
  record.mutable_finished_time()->set_seconds(1'700'000'000 + i + 600);
  record.set_current_epoch(kEpochs);
  record.set_best_test_accuracy(0.7 + 0.0001 * (i % 100));
  record.set_best_epoch(kEpochs - 1);
  v1::EpochMetrics* last = record.mutable_last_metrics();
  last->set_epoch(kEpochs);
  last->set_train_loss(0.8);
  last->set_test_accuracy(0.69 + 0.0001 * (i % 100));
  record.set_dataset_location("/var/lib/gradlab/data/cifar-10-batches-bin");
  record.set_estimated_peak_bytes(400 << 20);
  return record;
}

// The events a 20-epoch run leaves after retention, `count` in all.
std::vector<ExperimentStore::EventRow> Events(int count) {
  using Kind = ExperimentStore::EventKind;
  std::vector<ExperimentStore::EventRow> rows;
  int64_t sequence = 0;
  auto state = [&](v1::ExperimentState to) {
    v1::MetricsEvent event;
    event.set_sequence(++sequence);
    event.mutable_state_change()->set_state(to);
    event.mutable_state_change()->set_reason("a reason of a few words");
    rows.push_back({sequence, Kind::kStateChange, 0, event.SerializeAsString()});
  };
  state(v1::QUEUED);
  state(v1::RUNNING);
  const int snapshots = count - 3 - kEpochs - kProgressKept;
  const int snapshots_per_epoch = (snapshots + kEpochs - 1) / kEpochs;
  int snapshots_left = snapshots;
  int64_t step = 0;
  for (int epoch = 1; epoch <= kEpochs; ++epoch) {
    for (int s = 0; s < snapshots_per_epoch && snapshots_left > 0; ++s, --snapshots_left) {
      v1::GradientSnapshot snapshot;
      snapshot.set_sequence(++sequence);
      snapshot.set_step(++step);
      snapshot.set_epoch(epoch);
      snapshot.set_batch(s + 1);
      snapshot.mutable_time()->set_seconds(1'700'000'000 + step);
      for (const char* name : {"conv1", "conv2", "conv3", "fc1", "fc2"}) {
        for (const char* part : {".weight", ".bias"}) {
          v1::LayerGradient* layer = snapshot.add_layers();
          layer->set_name(absl::StrCat(name, part));
          layer->set_grad_norm(0.01 * static_cast<double>(step % 97));
          layer->set_weight_norm(1.5 + 0.001 * static_cast<double>(step % 89));
          layer->set_ratio(layer->grad_norm() / layer->weight_norm());
        }
        v1::LayerActivation* activation = snapshot.add_activations();
        activation->set_name(name);
        activation->set_std(0.5 + 0.001 * static_cast<double>(step % 83));
      }
      rows.push_back({sequence, step == 1 ? Kind::kFirstSnapshot : Kind::kSnapshot, epoch,
                      snapshot.SerializeAsString()});
    }
    const int progress_this_epoch = epoch > kEpochs - 2 ? kProgressKept / 2 : 0;
    for (int b = 0; b < progress_this_epoch; ++b) {
      v1::MetricsEvent event;
      event.set_sequence(++sequence);
      event.mutable_batch_progress()->set_epoch(epoch);
      event.mutable_batch_progress()->set_batch(b + 1);
      event.mutable_batch_progress()->set_batches(391);
      event.mutable_batch_progress()->set_running_loss(1.2);
      event.mutable_batch_progress()->set_running_accuracy(0.6);
      rows.push_back({sequence, Kind::kProgress, epoch, event.SerializeAsString()});
    }
    v1::MetricsEvent metrics;
    metrics.set_sequence(++sequence);
    v1::EpochMetrics* m = metrics.mutable_epoch_metrics();
    m->set_epoch(epoch);
    m->set_train_loss(2.0 / epoch);
    m->set_train_accuracy(0.3 + 0.02 * epoch);
    m->set_test_loss(2.1 / epoch);
    m->set_test_accuracy(0.3 + 0.02 * epoch);
    rows.push_back({sequence, Kind::kEpochMetrics, epoch, metrics.SerializeAsString()});
  }
  state(v1::SUCCEEDED);
  return rows;
}

int Fill(const std::string& state_dir, int experiments, int events_per_experiment) {
  fs::remove_all(state_dir);
  absl::StatusOr<std::unique_ptr<ExperimentStore>> store = ExperimentStore::Open(state_dir);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  const std::vector<ExperimentStore::EventRow> rows = Events(events_per_experiment);
  const LogRetention retention;
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < experiments; ++i) {
    absl::Status status = (*store)->SaveExperiment(i + 1, "", Record(i));
    if (status.ok()) status = (*store)->WriteEvents(IdOf(i), rows, &retention);
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
      return 1;
    }
    if ((i + 1) % 500 == 0 || i + 1 == experiments) {
      std::fprintf(stderr, "\rfilled %d/%d experiments (%.0f s)", i + 1, experiments,
                   Millis(Clock::now() - start) / 1000);
    }
  }
  std::fprintf(stderr, "\n");
  std::printf("filled: %d experiments x %zu events in %.1f s\n", experiments, rows.size(),
              Millis(Clock::now() - start) / 1000);
  return 0;
}

int64_t ResidentKiB(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    int64_t kib = 0;
    if (line.rfind("VmRSS:", 0) == 0 &&
        absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(line.substr(6)), " kB"),
                         &kib)) {
      return kib;
    }
  }
  return -1;
}

struct Replay {
  int64_t events = 0;
  double millis = 0;
};

Replay ReplayHistory(v1::ExperimentService::Stub& stub, const std::string& id) {
  Replay replay;
  const Clock::time_point start = Clock::now();
  {
    grpc::ClientContext context;
    v1::StreamMetricsRequest request;
    request.set_id(id);
    auto stream = stub.StreamMetrics(&context, request);
    for (v1::MetricsEvent event; stream->Read(&event);) ++replay.events;
    stream->Finish();
  }
  {
    grpc::ClientContext context;
    v1::StreamGradientsRequest request;
    request.set_id(id);
    auto stream = stub.StreamGradients(&context, request);
    for (v1::GradientSnapshot snapshot; stream->Read(&snapshot);) ++replay.events;
    stream->Finish();
  }
  replay.millis = Millis(Clock::now() - start);
  return replay;
}

// gradlabd started on `state_dir`, with the time it took to listen and its VmRSS then.
struct Started {
  std::optional<ChildProcess> process;
  std::string port;
  double startup_millis = 0;
  int64_t rss_kib = 0;
};

absl::StatusOr<Started> StartServer(const std::string& state_dir) {
  Started started;
  const Clock::time_point spawned = Clock::now();
  absl::StatusOr<ChildProcess> server =
      ChildProcess::Start({absl::GetFlag(FLAGS_gradlabd), "--listen=127.0.0.1:0",
                           "--http_listen=", "--state_dir=" + state_dir});
  if (!server.ok()) return server.status();
  absl::StatusOr<std::string> line =
      server->ReadLineContaining("listening on port", absl::Minutes(10));
  if (!line.ok()) return line.status();
  started.startup_millis = Millis(Clock::now() - spawned);
  started.rss_kib = ResidentKiB(server->pid());
  started.port = line->substr(line->rfind(' ') + 1);
  started.process.emplace(*std::move(server));
  return started;
}

int Measure(const std::string& state_dir, int experiments, int starts) {
  {
    // What gradlabd costs with no history at all, for comparison.
    const std::string empty = state_dir + "-empty";
    std::error_code error;
    fs::remove_all(empty, error);
    absl::StatusOr<Started> baseline = StartServer(empty);
    if (!baseline.ok()) {
      std::fprintf(stderr, "gradlabd did not start: %s\n",
                   std::string(baseline.status().message()).c_str());
      return 1;
    }
    std::printf("empty state folder: startup %.0f ms, RSS %.0f MiB\n", baseline->startup_millis,
                baseline->rss_kib / 1024.0);
    baseline->process->Signal(SIGTERM);
    baseline->process->Wait(absl::Minutes(1));
    fs::remove_all(empty, error);
  }
  std::mt19937 random(42);
  for (int run = 1; run <= starts; ++run) {
    absl::StatusOr<Started> started = StartServer(state_dir);
    if (!started.ok()) {
      std::fprintf(stderr, "gradlabd did not start: %s\n",
                   std::string(started.status().message()).c_str());
      return 1;
    }
    ChildProcess* server = &*started->process;
    const double startup = started->startup_millis;
    const int64_t rss_kib = started->rss_kib;
    auto stub = v1::ExperimentService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + started->port, grpc::InsecureChannelCredentials()));

    std::vector<double> gets;
    std::uniform_int_distribution<int> pick(0, experiments - 1);
    for (int i = 0; i < 2000; ++i) {
      grpc::ClientContext context;
      v1::GetExperimentRequest request;
      request.set_id(IdOf(pick(random)));
      v1::Experiment experiment;
      const Clock::time_point t = Clock::now();
      const grpc::Status status = stub->GetExperiment(&context, request, &experiment);
      gets.push_back(Millis(Clock::now() - t));
      if (!status.ok()) {
        std::fprintf(stderr, "GetExperiment: %s\n", status.error_message().c_str());
        return 1;
      }
    }
    std::vector<double> pages;
    std::string token;
    int listed = 0;
    do {
      grpc::ClientContext context;
      v1::ListExperimentsRequest request;
      request.set_page_token(token);
      v1::ListExperimentsResponse response;
      const Clock::time_point t = Clock::now();
      const grpc::Status status = stub->ListExperiments(&context, request, &response);
      pages.push_back(Millis(Clock::now() - t));
      if (!status.ok()) {
        std::fprintf(stderr, "ListExperiments: %s\n", status.error_message().c_str());
        return 1;
      }
      listed += response.experiments_size();
      token = response.next_page_token();
    } while (!token.empty());
    const std::string replayed_id = IdOf(pick(random));
    const Replay first = ReplayHistory(*stub, replayed_id);
    const Replay again = ReplayHistory(*stub, replayed_id);
    const int64_t rss_after_kib = ResidentKiB(server->pid());
    // Many histories read: what stays in memory is bounded (RegistryOptions'
    // loaded_events_budget), not their sum.
    const int many = std::min(experiments, 500);
    for (int i = 0; i < many; ++i) ReplayHistory(*stub, IdOf(i));
    const int64_t rss_after_many_kib = ResidentKiB(server->pid());
    std::printf(
        "start %d: startup %.0f ms, RSS %.0f MiB (%.0f MiB after the calls below, %.0f MiB "
        "after replaying %d histories); "
        "GetExperiment p50 %.2f ms p99 %.2f ms (2000 calls); ListExperiments page p50 %.2f "
        "ms p99 %.2f ms (%zu pages, %d experiments); replay of %s (%lld events) %.0f ms "
        "from the store, %.0f ms again\n",
        run, startup, rss_kib / 1024.0, rss_after_kib / 1024.0, rss_after_many_kib / 1024.0, many,
        Percentile(gets, 0.5), Percentile(gets, 0.99), Percentile(pages, 0.5),
        Percentile(pages, 0.99), pages.size(), listed, replayed_id.c_str(),
        static_cast<long long>(first.events), first.millis, again.millis);
    std::fflush(stdout);
    server->Signal(SIGTERM);
    server->Wait(absl::Minutes(1));
  }
  return 0;
}

}  // namespace
}  // namespace gradlab

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  const int experiments = absl::GetFlag(FLAGS_experiments);
  if (absl::GetFlag(FLAGS_events_per_experiment) < 300) {
    std::fprintf(stderr, "--events_per_experiment must be at least 300\n");
    return 2;
  }
  if (!absl::GetFlag(FLAGS_reuse)) {
    if (int failed =
            gradlab::Fill(state_dir, experiments, absl::GetFlag(FLAGS_events_per_experiment));
        failed != 0) {
      return failed;
    }
  }
  std::error_code error;
  std::printf("state folder %s: %.0f MiB\n", state_dir.c_str(),
              std::filesystem::file_size(std::filesystem::path(state_dir) / "gradlab.db", error) /
                  1048576.0);
  return gradlab::Measure(state_dir, experiments, absl::GetFlag(FLAGS_starts));
}
