// gradlabd: trains CNNs on CPU from a job queue and streams their learning curves and
// per-layer gradient norms over gRPC.
//
// Usage:
//   gradlabd [--listen=127.0.0.1:50051] [--workers=1] [--threads_per_job=N]
//            [--max_queue=100] [--data_dir=data] [--max_request_bytes=262144]
//            [--state_dir=gradlab-state] [--keep_checkpoints=last,best]
//            [--http_listen=127.0.0.1:8080] [--http_max_streams=64]
//            [--tls_cert=FILE --tls_key=FILE [--tls_client_ca=FILE]]
//            [--auth_tokens_file=FILE] [--allow_insecure_remote]
//            [--max_streams_per_client=32] [--max_starts_per_minute=60]
//
// Then, e.g.: gradlab submit --model=resnet --dataset=fashion_mnist --follow
//             grpcurl -plaintext 127.0.0.1:50051 list
//             open http://127.0.0.1:8080/ (the dashboard)
// SIGINT or SIGTERM shuts it down gracefully: health NOT_SERVING, trainings stop at the
// next batch, open streams end with UNAVAILABLE, exit 0.
#include <glog/logging.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/host_port.h"
#include "common/usable_cpus.h"
#include "common/version.h"
#include "server/service/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "host:port to serve gRPC on; port 0 picks a free port (printed at start)");
ABSL_FLAG(int, workers, 1, "trainings that run at once");
ABSL_FLAG(int, threads_per_job, 0,
          "intra-op threads of each training; 0: the usable CPUs divided by --workers");
ABSL_FLAG(int, max_queue, 100,
          "experiments that may wait in the queue; beyond it StartExperiment gives "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(std::string, data_dir, "data",
          "where datasets are looked for first: cifar10 in DIR or DIR/cifar-10-batches-bin, "
          "fashion_mnist in DIR/fashion-mnist, mnist in DIR/mnist; then the system's copies "
          "(/usr/share/datasets/fashion-mnist)");
ABSL_FLAG(int, max_request_bytes, 256 * 1024, "larger requests are refused");
ABSL_FLAG(std::string, state_dir, "gradlab-state",
          "where experiments, their events and checkpoints are kept (SQLite database "
          "gradlab.db and checkpoints/); a restart with the same folder restores them and "
          "resumes interrupted runs. Empty: keep everything in memory only");
ABSL_FLAG(std::string, keep_checkpoints, "last,best",
          "which checkpoints of a finished experiment stay on disk, for ExportModel: "
          "\"last,best\", \"last\", \"best\" or \"none\"");
ABSL_FLAG(int, training_niceness, 0,
          "added to the training threads' nice value, so that RPCs and streams preempt "
          "training on a busy machine (lower stream latency, less training throughput with "
          "hundreds of subscribers); 0 trains at the server's own priority");

ABSL_FLAG(std::string, http_listen, "127.0.0.1:8080",
          "host:port to serve the dashboard, the JSON API, event streams, /metrics and "
          "/healthz on; port 0 picks a free port (printed at start); empty: no HTTP");
ABSL_FLAG(int, http_max_streams, 64,
          "HTTP event streams (dashboards) open at once, at most 512; more are answered 429 "
          "until one closes. Each holds a thread");

ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain: gRPC and HTTP serve TLS only (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: clients must present a certificate signed by one (mutual "
          "TLS); needs --tls_cert");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "\"TOKEN ROLE\" per line (ROLE read or write; # comments): every RPC and HTTP "
          "request but health needs \"authorization: Bearer TOKEN\" of a role that allows it");
ABSL_FLAG(int, max_streams_per_client, 32,
          "streams one client address may have open at once, gRPC and HTTP event streams "
          "together; one more gets RESOURCE_EXHAUSTED (HTTP 429). 0: no limit");
ABSL_FLAG(int, max_starts_per_minute, 60,
          "StartExperiment calls one caller (its token, or its address without tokens) may "
          "make in a minute; more get RESOURCE_EXHAUSTED. 0: no limit");
ABSL_FLAG(bool, allow_insecure_remote, false,
          "listen on an address other machines can reach (not 127.x, ::1, localhost) "
          "without TLS or tokens; refused otherwise, since anyone who reaches the port could "
          "use gradlabd. For a private network you trust, e.g. a container's");

namespace {

// Test-only fault injection, not a flag: GRADLAB_TESTING_CHECKPOINT_PAUSE=STEP:MS makes
// every checkpoint write pause MS milliseconds after STEP (see WriteStepHook), so that
// end-to-end tests can kill the server at that point of a write.
gradlab::WriteStepHook CheckpointPauseFromEnvironment() {
  const char* text = std::getenv("GRADLAB_TESTING_CHECKPOINT_PAUSE");
  if (text == nullptr) return nullptr;
  std::pair<std::string, std::string> step_and_millis = absl::StrSplit(text, ':');
  int millis = 0;
  if (!absl::SimpleAtoi(step_and_millis.second, &millis) || millis <= 0) return nullptr;
  return [step = step_and_millis.first, millis](absl::string_view done) {
    if (done == step) absl::SleepFor(absl::Milliseconds(millis));
    return absl::OkStatus();
  };
}

absl::StatusOr<gradlab::KeepCheckpoints> ParseKeepCheckpoints(const std::string& text) {
  gradlab::KeepCheckpoints keep{false, false};
  if (text == "none") return keep;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    if (item == "last") {
      keep.last = true;
    } else if (item == "best") {
      keep.best = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--keep_checkpoints: \"", text,
                       "\" is not one of \"last,best\", \"last\", \"best\", \"none\""));
    }
  }
  return keep;
}

// Validates the flags into the server's options.
absl::StatusOr<gradlab::ServerOptions> OptionsFromFlags() {
  gradlab::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  options.http.listen = absl::GetFlag(FLAGS_http_listen);
  options.http.max_streams = absl::GetFlag(FLAGS_http_max_streams);
  gradlab::RegistryOptions& registry = options.registry;
  registry.workers = absl::GetFlag(FLAGS_workers);
  registry.max_queue = absl::GetFlag(FLAGS_max_queue);
  registry.data_dir = absl::GetFlag(FLAGS_data_dir);
  registry.training_niceness = absl::GetFlag(FLAGS_training_niceness);
  options.state_dir = absl::GetFlag(FLAGS_state_dir);
  absl::StatusOr<gradlab::KeepCheckpoints> keep =
      ParseKeepCheckpoints(absl::GetFlag(FLAGS_keep_checkpoints));
  if (!keep.ok()) return keep.status();
  registry.keep_checkpoints = *keep;
  registry.checkpoint_hook = CheckpointPauseFromEnvironment();
  if (registry.training_niceness < 0 || registry.training_niceness > 19) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--training_niceness: ", registry.training_niceness, " is out of range [0, 19]"));
  }
  const int cpus = gradlab::UsableCpus();
  if (registry.workers < 1 || registry.workers > cpus) {
    return absl::InvalidArgumentError(absl::StrCat("--workers: ", registry.workers,
                                                   " is out of range [1, ", cpus,
                                                   "] (the CPUs this process may use)"));
  }
  const int threads = absl::GetFlag(FLAGS_threads_per_job);
  if (threads < 0 || threads * registry.workers > cpus) {
    return absl::InvalidArgumentError(absl::StrCat("--threads_per_job: ", threads, " x ",
                                                   registry.workers, " workers is more than the ",
                                                   cpus, " CPUs this process may use"));
  }
  registry.threads_per_job = threads > 0 ? threads : std::max(1, cpus / registry.workers);
  if (registry.max_queue < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_queue: ", registry.max_queue, " must be 0 or more"));
  }
  options.tls = {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                 absl::GetFlag(FLAGS_tls_client_ca)};
  if (!options.tls.ca.empty() && options.tls.cert.empty()) {
    return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
  }
  options.limits.max_streams_per_client = absl::GetFlag(FLAGS_max_streams_per_client);
  options.limits.max_starts_per_minute = absl::GetFlag(FLAGS_max_starts_per_minute);
  if (options.limits.max_streams_per_client < 0 || options.limits.max_starts_per_minute < 0) {
    return absl::InvalidArgumentError(
        "--max_streams_per_client and --max_starts_per_minute must be 0 (no limit) or more");
  }
  options.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  // Safe by default: what other machines can reach needs TLS or tokens, or a choice.
  std::vector<std::pair<std::string, std::string>> listeners = {{"--listen", options.listen}};
  if (!options.http.listen.empty()) listeners.push_back({"--http_listen", options.http.listen});
  for (const auto& [flag, address] : listeners) {
    if (absl::StartsWith(address, "unix:")) continue;  // gRPC on a local socket file
    absl::StatusOr<gradlab::HostPort> parsed = gradlab::ParseHostPort(address, flag);
    if (!parsed.ok()) return parsed.status();
    if (gradlab::IsLoopbackHost(parsed->host)) continue;
    if (options.tls.cert.empty() && options.auth_tokens_file.empty() &&
        !absl::GetFlag(FLAGS_allow_insecure_remote)) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, "=", address,
          " can be reached from other machines, and without TLS or tokens anyone there could "
          "start, cancel, delete and read experiments: give --tls_cert and --tls_key, or "
          "--auth_tokens_file, listen on 127.0.0.1, or pass --allow_insecure_remote on a "
          "network you trust"));
    }
    if (options.tls.cert.empty() && !options.auth_tokens_file.empty()) {
      LOG(WARNING) << flag << "=" << address
                   << ": tokens cross the network in plain text without TLS (--tls_cert)";
    }
  }
  if (absl::Status status = gradlab::CheckMaxStreams(options.http.max_streams); !status.ok()) {
    return status;
  }
  if (options.max_request_bytes < 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_request_bytes: ", options.max_request_bytes, " must be at least 1024"));
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  // --help lists the flags defined in this file (absl matches files named after the binary
  // otherwise).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/main.cc");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      absl::StrCat("gradlabd ", gradlab::kGradlabVersion,
                   ": trains CNNs on CPU and streams their metrics and gradients over gRPC."));
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);

  absl::StatusOr<gradlab::ServerOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    std::cerr << "gradlabd: " << options.status().message() << "\n";
    return 2;
  }
  // A client that hangs up mid-write must not stop the server (TLS writes would raise it).
  signal(SIGPIPE, SIG_IGN);
  // Block the shutdown signals in every thread (threads inherit the mask), and take them
  // on one thread of our own with sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<gradlab::GradlabServer>> server =
      gradlab::GradlabServer::Start(*options);
  if (!server.ok()) {
    std::cerr << "gradlabd: " << server.status().message() << "\n";
    // Start reads the files the flags name (TLS, tokens) before anything else: a wrong
    // one is a bad flag value like any other.
    return server.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  // Scripts read the port from this line when they pass --listen=...:0.
  std::cout << "gradlabd listening on port " << (*server)->port() << std::endl;
  if ((*server)->http_port() != 0) {
    std::cout << "gradlabd dashboard on http port " << (*server)->http_port() << std::endl;
  }

  std::thread signal_thread([&signals, &server] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    LOG(INFO) << "received " << strsignal(signal_number);
    (*server)->Shutdown();
  });
  (*server)->Wait();
  signal_thread.join();
  LOG(INFO) << "stopped";
  return 0;
}
