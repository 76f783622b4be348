// registry_latency: how long GetExperiment and ListExperiments take while a run commits
// its epochs to disk. Starts gradlabd's server in this process on a free port, over a
// state directory on a real disk (so every epoch end syncs SQLite and writes a
// checkpoint), starts one training of many short epochs, and polls both RPCs over gRPC
// from --pollers threads until it finishes, each calling on a fixed schedule (one call
// every --interval_ms): a call's latency counts from when it was due, so that a call
// stuck behind a disk sync also delays the ones due after it, as it would for clients
// calling independently (no coordinated omission). Run it under bench/slow_disk to see
// what a slow volume costs. Prints the latency percentiles of each RPC,
// twice: over every call, and over the calls that began within 100 ms after an epoch
// ended (the epoch metrics event's time), when the run commits the epoch, its record
// and its checkpoint to disk; and how many calls took longer than 5 ms.
//
//   build/bench/registry_latency [--epochs=30] [--train_samples=1024] [--pollers=1]
//       [--interval_ms=2] [--experiments=20] [--state_dir=DIR]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "server/daemon/server.h"

ABSL_FLAG(int, epochs, 30, "epochs of the measured training (each ends with a synced commit)");
ABSL_FLAG(int, train_samples, 1024, "training images per epoch (fewer: more epoch ends)");
ABSL_FLAG(int, pollers, 1, "client threads, each calling GetExperiment and ListExperiments");
ABSL_FLAG(double, interval_ms, 2, "each poller calls each RPC this often");
ABSL_FLAG(int, experiments, 20,
          "finished experiments the server holds besides the running one (ListExperiments "
          "returns them all)");
ABSL_FLAG(std::string, state_dir, "",
          "the server's --state_dir (must not exist); empty: a new one under /var/tmp");

namespace gradlab {
namespace {

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()))];
}

struct Call {
  absl::Time start;
  double millis;
};

void PrintRow(const std::string& rpc, std::vector<double> millis) {
  std::sort(millis.begin(), millis.end());
  const auto slow = std::count_if(millis.begin(), millis.end(), [](double ms) { return ms > 5; });
  std::printf("| %s | %zu | %.3f | %.3f | %.3f | %.2f | %ld |\n", rpc.c_str(), millis.size(),
              Percentile(millis, 0.5), Percentile(millis, 0.99), Percentile(millis, 0.999),
              millis.empty() ? 0.0 : millis.back(), static_cast<long>(slow));
}

v1::StartExperimentRequest Request(int epochs, int train_samples) {
  v1::StartExperimentRequest request;
  v1::ExperimentSpec* spec = request.mutable_spec();
  spec->set_model("simple_cnn");
  spec->set_dataset("synthetic");
  spec->set_epochs(epochs);
  spec->set_max_train_samples(train_samples);
  spec->set_max_test_samples(256);
  return request;
}

int Run() {
  std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  if (state_dir.empty()) {
    state_dir = absl::StrFormat("/var/tmp/registry_latency.%d", static_cast<int>(getpid()));
  }
  if (std::filesystem::exists(state_dir)) {
    std::fprintf(stderr, "registry_latency: --state_dir=%s exists; give a new path\n",
                 state_dir.c_str());
    return 2;
  }
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.state_dir = state_dir;
  options.registry.threads_per_job = 1;
  options.limits.max_starts_per_minute = 0;
  absl::StatusOr<std::unique_ptr<GradlabServer>> server = GradlabServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "registry_latency: %s\n", server.status().ToString().c_str());
    return 1;
  }
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::ExperimentService::NewStub(channel);

  // The finished experiments ListExperiments pages through: one-epoch runs of few images.
  std::fprintf(stderr, "registry_latency: running %d small experiments first\n",
               absl::GetFlag(FLAGS_experiments));
  for (int i = 0; i < absl::GetFlag(FLAGS_experiments); ++i) {
    grpc::ClientContext context;
    v1::Experiment started;
    if (!stub->StartExperiment(&context, Request(1, 128), &started).ok()) return 1;
  }
  for (bool idle = false; !idle;) {
    grpc::ClientContext context;
    v1::ServerInfo info;
    if (!stub->GetServerInfo(&context, {}, &info).ok()) return 1;
    grpc::ClientContext list_context;
    v1::ListExperimentsRequest running;
    running.set_state(v1::RUNNING);
    v1::ListExperimentsResponse list;
    if (!stub->ListExperiments(&list_context, running, &list).ok()) return 1;
    idle = info.queue_length() == 0 && list.experiments_size() == 0;
    absl::SleepFor(absl::Milliseconds(50));
  }

  grpc::ClientContext start_context;
  v1::Experiment measured;
  if (!stub->StartExperiment(
               &start_context,
               Request(absl::GetFlag(FLAGS_epochs), absl::GetFlag(FLAGS_train_samples)), &measured)
           .ok()) {
    return 1;
  }
  std::fprintf(stderr, "registry_latency: polling while %s trains %d epochs\n",
               measured.id().c_str(), absl::GetFlag(FLAGS_epochs));
  std::atomic<bool> finished{false};
  const int pollers = absl::GetFlag(FLAGS_pollers);
  std::vector<std::vector<Call>> get_calls(pollers), list_calls(pollers);
  std::vector<std::thread> threads;
  for (int p = 0; p < pollers; ++p) {
    threads.emplace_back([&, p] {
      const absl::Duration interval = absl::Milliseconds(absl::GetFlag(FLAGS_interval_ms));
      for (absl::Time due = absl::Now(); !finished.load(); due += interval) {
        absl::SleepFor(due - absl::Now());
        v1::GetExperimentRequest get;
        get.set_id(measured.id());
        v1::Experiment experiment;
        grpc::ClientContext get_context;
        if (!stub->GetExperiment(&get_context, get, &experiment).ok()) std::abort();
        get_calls[p].push_back({due, absl::ToDoubleMilliseconds(absl::Now() - due)});
        if (experiment.state() != v1::QUEUED && experiment.state() != v1::RUNNING) {
          finished.store(true);
        }
        v1::ListExperimentsResponse list;
        grpc::ClientContext list_context;
        const absl::Time list_due = due + interval / 2;
        absl::SleepFor(list_due - absl::Now());
        if (!stub->ListExperiments(&list_context, {}, &list).ok()) std::abort();
        list_calls[p].push_back({list_due, absl::ToDoubleMilliseconds(absl::Now() - list_due)});
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  // When each epoch ended: its metrics event's time, stamped before the commit.
  std::vector<absl::Time> epoch_ends;
  v1::StreamMetricsRequest replay;
  replay.set_id(measured.id());
  replay.set_follow(false);
  grpc::ClientContext replay_context;
  auto events = stub->StreamMetrics(&replay_context, replay);
  for (v1::MetricsEvent event; events->Read(&event);) {
    if (event.has_epoch_metrics()) {
      epoch_ends.push_back(absl::FromUnixSeconds(event.time().seconds()) +
                           absl::Nanoseconds(event.time().nanos()));
    }
  }
  if (!events->Finish().ok()) return 1;
  (*server)->Shutdown();
  const auto near_epoch_end = [&](absl::Time start) {
    return std::any_of(epoch_ends.begin(), epoch_ends.end(), [&](absl::Time end) {
      return start >= end && start < end + absl::Milliseconds(100);
    });
  };
  std::printf("| RPC | calls | p50 ms | p99 ms | p99.9 ms | max ms | calls > 5 ms |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const auto& [rpc, calls] :
       {std::pair("GetExperiment", &get_calls), std::pair("ListExperiments", &list_calls)}) {
    std::vector<double> all, at_epoch_end;
    for (const std::vector<Call>& thread_calls : *calls) {
      for (const Call& call : thread_calls) {
        all.push_back(call.millis);
        if (near_epoch_end(call.start)) at_epoch_end.push_back(call.millis);
      }
    }
    PrintRow(rpc, std::move(all));
    PrintRow(absl::StrCat(rpc, ", within 100 ms of an epoch end"), std::move(at_epoch_end));
  }
  std::error_code ignored;
  if (absl::GetFlag(FLAGS_state_dir).empty()) std::filesystem::remove_all(state_dir, ignored);
  return 0;
}

}  // namespace
}  // namespace gradlab

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return gradlab::Run();
}
