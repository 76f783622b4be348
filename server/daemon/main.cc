// gradlabd: trains CNNs on CPU from a job queue and streams their learning curves and
// per-layer gradient norms over gRPC.
//
// Usage:
//   gradlabd [--listen=127.0.0.1:50051] [--workers=1] [--threads_per_job=N]
//            [--max_queue=100] [--max_sweep_runs=100] [--data_dir=data]
//            [--max_request_bytes=262144]
//            [--state_dir=gradlab-state] [--keep_checkpoints=last,best]
//            [--http_listen=127.0.0.1:8080] [--http_max_streams=64]
//            [--tls_cert=FILE --tls_key=FILE [--tls_client_ca=FILE]]
//            [--auth_tokens_file=FILE] [--allow_insecure_remote]
//            [--max_streams_per_client=32] [--max_starts_per_minute=60]
//   gradlabd --check_state=DIR                     (a full offline check of a state folder)
//   gradlabd --state_dir=DIR --backup_state=COPY   (a backup, while a server uses DIR)
//   gradlabd --check_model=FILE                    (UploadModel's helper process)
//
// Then, e.g.: gradlab submit --model=resnet --dataset=fashion_mnist --follow
//             grpcurl -plaintext 127.0.0.1:50051 list
//             open http://127.0.0.1:8080/ (the dashboard)
// SIGINT or SIGTERM shuts it down gracefully: health NOT_SERVING, trainings stop at the
// next batch, open streams end with UNAVAILABLE, exit 0.
#include <glog/logging.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/host_port.h"
#include "common/machine_memory.h"
#include "common/usable_cpus.h"
#include "common/version.h"
#include "server/daemon/options.h"
#include "server/daemon/server.h"
#include "server/models/model_checker.h"
#include "server/store/state_maintenance.h"
#include "server/worker/worker_agent.h"

// One place for the defaults: GradlabdFlags.
static const gradlab::GradlabdFlags kDefaults;

ABSL_FLAG(std::string, listen, kDefaults.listen,
          "host:port to serve gRPC on; port 0 picks a free port (printed at start)");
ABSL_FLAG(int, workers, kDefaults.workers, "trainings that run at once");
ABSL_FLAG(int, threads_per_job, kDefaults.threads_per_job,
          "intra-op threads of each training; 0: the usable CPUs divided by --workers");
ABSL_FLAG(int, max_queue, kDefaults.max_queue,
          "experiments that may wait in the queue; beyond it StartExperiment gives "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_sweep_runs, kDefaults.max_sweep_runs,
          "the most runs (cells times seeds) one sweep may have, at most --max_queue; "
          "beyond it StartSweep gives INVALID_ARGUMENT");
ABSL_FLAG(std::string, max_run_memory, kDefaults.max_run_memory,
          "the most memory one run may be estimated to need (e.g. 6GiB; runs estimated above "
          "it are refused, and runs wait until they fit beside those running); default: "
          "three quarters of what the machine or the cgroup allows, less gradlabd's own, "
          "divided by --workers; 0: no limit");
ABSL_FLAG(std::string, data_dir, kDefaults.data_dir,
          "where datasets are looked for first: cifar10 in DIR or DIR/cifar-10-batches-bin, "
          "fashion_mnist in DIR/fashion-mnist, mnist in DIR/mnist; then the system's copies "
          "(/usr/share/datasets/fashion-mnist)");
ABSL_FLAG(std::string, allowed_data_dirs, kDefaults.allowed_data_dirs,
          "folders, comma-separated, that a spec's data_dir may name (or folders inside them, "
          "symlinks resolved); others are refused without a word on what is there. Empty: "
          "--data_dir and /usr/share/datasets");
ABSL_FLAG(int, max_request_bytes, kDefaults.max_request_bytes, "larger requests are refused");
ABSL_FLAG(std::string, state_dir, kDefaults.state_dir,
          "where experiments, their events and checkpoints are kept (SQLite database "
          "gradlab.db and checkpoints/); a restart with the same folder restores them and "
          "resumes interrupted runs. Empty: keep everything in memory only");
ABSL_FLAG(std::string, state_reserve, kDefaults.state_reserve,
          "disk space kept in reserve in --state_dir (the file gradlab.reserve), so that on a "
          "full disk experiments' state changes are still stored: a run stopped by the full "
          "disk goes back to the queue, and runs wait until there is room for the reserve "
          "again, then go on from their last checkpoint; \"0\": no reserve");
ABSL_FLAG(std::string, max_model_bytes, kDefaults.max_model_bytes,
          "the largest TorchScript file UploadModel takes (e.g. 200MB); larger uploads are "
          "refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(int, model_check_seconds, kDefaults.model_check_seconds,
          "the CPU time an uploaded model's check (one forward and backward per dataset, in a "
          "helper process) may take, and half the wall-clock time the server waits for it");
ABSL_FLAG(std::string, keep_checkpoints, kDefaults.keep_checkpoints,
          "which checkpoints of a finished experiment stay on disk, for ExportModel: "
          "\"last,best\", \"last\", \"best\" or \"none\"");
ABSL_FLAG(int, training_niceness, kDefaults.training_niceness,
          "added to the training threads' nice value, so that RPCs and streams preempt "
          "training on a busy machine (lower stream latency, less training throughput with "
          "hundreds of subscribers); 0 trains at the server's own priority");

ABSL_FLAG(std::string, http_listen, kDefaults.http_listen,
          "host:port to serve the dashboard, the JSON API, event streams, /metrics and "
          "/healthz on; port 0 picks a free port (printed at start); empty: no HTTP");
ABSL_FLAG(int, http_max_streams, kDefaults.http_max_streams,
          "HTTP event streams (dashboards) open at once, at most 512; more are answered 429 "
          "until one closes. Each holds a thread");

ABSL_FLAG(std::string, http_allowed_hosts, kDefaults.http_allowed_hosts,
          "names (or addresses), comma-separated, that HTTP requests may give as their Host "
          "besides the server's own (--http_listen's host, localhost, 127.0.0.1, [::1], on its "
          "port): e.g. the name a proxy, a container network or a Kubernetes Service reaches "
          "it by. Others get 403 on every page but /healthz, against DNS rebinding");

ABSL_FLAG(std::string, tls_cert, kDefaults.tls_cert,
          "PEM certificate chain: gRPC and HTTP serve TLS only (with --tls_key)");
ABSL_FLAG(std::string, tls_key, kDefaults.tls_key, "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, kDefaults.tls_client_ca,
          "PEM CA certificates: clients must present a certificate signed by one (mutual "
          "TLS); needs --tls_cert");
ABSL_FLAG(std::string, auth_tokens_file, kDefaults.auth_tokens_file,
          "\"TOKEN ROLE\" per line (ROLE read or write; # comments): every RPC and HTTP "
          "request but health needs \"authorization: Bearer TOKEN\" of a role that allows it");
ABSL_FLAG(int, max_streams_per_client, kDefaults.max_streams_per_client,
          "streams one client address may have open at once, gRPC and HTTP event streams "
          "together; one more gets RESOURCE_EXHAUSTED (HTTP 429). 0: no limit");
ABSL_FLAG(int, max_starts_per_minute, kDefaults.max_starts_per_minute,
          "StartExperiment calls one caller (its token, or its address without tokens) may "
          "make in a minute; more get RESOURCE_EXHAUSTED. 0: no limit");
ABSL_FLAG(bool, allow_insecure_remote, kDefaults.allow_insecure_remote,
          "listen on an address other machines can reach (not 127.x, ::1, localhost) "
          "without tokens or client certificates (TLS alone encrypts but lets anyone in); "
          "refused otherwise, since anyone who reaches the port could use gradlabd. For a "
          "private network you trust, e.g. a container's");

ABSL_FLAG(std::string, advertise_address, kDefaults.advertise_address,
          "the address other ranks of a data-parallel group reach this gradlabd at (its Gloo "
          "connections bind to it); empty: a coordinator uses the address its hostname "
          "resolves to, a worker the address the coordinator sees its calls come from");
ABSL_FLAG(absl::Duration, collective_timeout, kDefaults.collective_timeout,
          "data-parallel groups: how long the rendezvous and each all-reduce may wait for a "
          "rank; a rank lost mid-run fails the run's attempt within it, and the run goes back "
          "to the queue");
ABSL_FLAG(absl::Duration, worker_timeout, kDefaults.worker_timeout,
          "a worker not heard from for this long is dropped");
ABSL_FLAG(absl::Duration, heartbeat_interval, kDefaults.heartbeat_interval,
          "how often workers are told to heartbeat");
ABSL_FLAG(int, max_workers, kDefaults.max_workers,
          "the most workers that may be registered at once; more are refused");

ABSL_FLAG(std::string, check_state, "",
          "check the state folder DIR offline and exit, writing nothing: SQLite's integrity "
          "check, the marker, every stored row's checksum and every checkpoint file; prints "
          "a report; exit status 0 when intact, 1 when damaged, 2 when it cannot be checked "
          "(missing, or in use by a running gradlabd: check a --backup_state copy instead)");
ABSL_FLAG(std::string, backup_state, "",
          "copy --state_dir into the new folder DIR and exit, while a gradlabd may be using "
          "it: the database as one consistent snapshot (SQLite's backup API), then the "
          "checkpoints it refers to. To restore, stop gradlabd and start it with "
          "--state_dir=DIR (or move DIR into place)");

ABSL_FLAG(std::string, check_model, "",
          "internal, the helper process of UploadModel: check the TorchScript file FILE "
          "within --check_model_memory_bytes of address space and --check_model_cpu_seconds "
          "of CPU time, write the result to stdout and exit");
ABSL_FLAG(int64_t, check_model_memory_bytes, gradlab::ModelCheckLimits().memory_bytes,
          "--check_model: the address space it may use");
ABSL_FLAG(int, check_model_cpu_seconds,
          static_cast<int>(absl::ToInt64Seconds(gradlab::ModelCheckLimits().cpu_time)),
          "--check_model: the CPU time it may use");

ABSL_FLAG(bool, worker, false,
          "run as a worker of the gradlabd at --coordinator: train ranks of its data-parallel "
          "experiments (no gRPC or HTTP listener, no state; uses --data_dir, "
          "--threads_per_job, --training_niceness, --advertise_address)");
ABSL_FLAG(std::string, coordinator, kDefaults.coordinator,
          "--worker: the coordinating gradlabd's gRPC host:port");
ABSL_FLAG(std::string, worker_name, kDefaults.worker_name,
          "--worker: its name at the coordinator; default the hostname");
ABSL_FLAG(std::string, coordinator_token_file, kDefaults.coordinator_token_file,
          "--worker: a file holding a write token of the coordinator's --auth_tokens_file");
ABSL_FLAG(std::string, coordinator_tls_ca, kDefaults.coordinator_tls_ca,
          "--worker: PEM CA certificates to verify a coordinator that serves TLS; empty: "
          "plain TCP");

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

// Test-only fault injection, not a flag: GRADLAB_TESTING_RUN_FAULT=STEP:ACTION acts at
// every STEP of a run (see RunStepHook: "resume", "dataset read"); ACTION "kill" ends
// the process there with SIGKILL (as the kernel's OOM killer would), a number pauses that
// many milliseconds.
gradlab::RunStepHook RunFaultFromEnvironment() {
  const char* text = std::getenv("GRADLAB_TESTING_RUN_FAULT");
  if (text == nullptr) return nullptr;
  std::pair<std::string, std::string> step_and_action = absl::StrSplit(text, ':');
  int millis = 0;
  const bool kill_there = step_and_action.second == "kill";
  if (!kill_there && (!absl::SimpleAtoi(step_and_action.second, &millis) || millis <= 0)) {
    return nullptr;
  }
  return [step = step_and_action.first, kill_there, millis](absl::string_view at) {
    if (at != step) return;
    if (kill_there) {
      LOG(ERROR) << "GRADLAB_TESTING_RUN_FAULT: killing the process at " << at;
      kill(getpid(), SIGKILL);
    }
    absl::SleepFor(absl::Milliseconds(millis));
  };
}

// The flags' values, for ServerOptionsFrom and WorkerOptionsFrom.
gradlab::GradlabdFlags FlagValues() {
  gradlab::GradlabdFlags flags;
  flags.listen = absl::GetFlag(FLAGS_listen);
  flags.workers = absl::GetFlag(FLAGS_workers);
  flags.threads_per_job = absl::GetFlag(FLAGS_threads_per_job);
  flags.max_queue = absl::GetFlag(FLAGS_max_queue);
  flags.max_sweep_runs = absl::GetFlag(FLAGS_max_sweep_runs);
  flags.max_run_memory = absl::GetFlag(FLAGS_max_run_memory);
  flags.data_dir = absl::GetFlag(FLAGS_data_dir);
  flags.allowed_data_dirs = absl::GetFlag(FLAGS_allowed_data_dirs);
  flags.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  flags.state_dir = absl::GetFlag(FLAGS_state_dir);
  flags.state_reserve = absl::GetFlag(FLAGS_state_reserve);
  flags.max_model_bytes = absl::GetFlag(FLAGS_max_model_bytes);
  flags.model_check_seconds = absl::GetFlag(FLAGS_model_check_seconds);
  flags.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  flags.training_niceness = absl::GetFlag(FLAGS_training_niceness);
  flags.http_listen = absl::GetFlag(FLAGS_http_listen);
  flags.http_max_streams = absl::GetFlag(FLAGS_http_max_streams);
  flags.http_allowed_hosts = absl::GetFlag(FLAGS_http_allowed_hosts);
  flags.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  flags.tls_key = absl::GetFlag(FLAGS_tls_key);
  flags.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  flags.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  flags.max_streams_per_client = absl::GetFlag(FLAGS_max_streams_per_client);
  flags.max_starts_per_minute = absl::GetFlag(FLAGS_max_starts_per_minute);
  flags.allow_insecure_remote = absl::GetFlag(FLAGS_allow_insecure_remote);
  flags.advertise_address = absl::GetFlag(FLAGS_advertise_address);
  flags.collective_timeout = absl::GetFlag(FLAGS_collective_timeout);
  flags.worker_timeout = absl::GetFlag(FLAGS_worker_timeout);
  flags.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  flags.max_workers = absl::GetFlag(FLAGS_max_workers);
  flags.coordinator = absl::GetFlag(FLAGS_coordinator);
  flags.worker_name = absl::GetFlag(FLAGS_worker_name);
  flags.coordinator_token_file = absl::GetFlag(FLAGS_coordinator_token_file);
  flags.coordinator_tls_ca = absl::GetFlag(FLAGS_coordinator_tls_ca);
  return flags;
}

// Blocks SIGINT and SIGTERM in every thread (threads inherit the mask) and returns them,
// for one thread of our own to take with sigwait.
sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// --check_state: the report, one line each, problems first.
int CheckState(const std::string& state_dir) {
  absl::StatusOr<gradlab::StateReport> report = gradlab::VerifyStateDir(state_dir);
  if (!report.ok()) {
    std::cerr << "gradlabd: " << report.status().message() << "\n";
    return 2;
  }
  for (const std::string& line : report->checked) std::cout << "checked: " << line << "\n";
  for (const std::string& line : report->problems) std::cout << "DAMAGED: " << line << "\n";
  std::cout << state_dir << ": "
            << (report->problems.empty() ? "intact"
                                         : absl::StrCat(report->problems.size(),
                                                        " problems; restore it from a "
                                                        "backup, or start gradlabd with a new "
                                                        "--state_dir"))
            << std::endl;
  return report->problems.empty() ? 0 : 1;
}

// --backup_state.
int BackUpState(const std::string& state_dir, const std::string& destination) {
  if (absl::Status status = gradlab::BackUpStateDir(state_dir, destination); !status.ok()) {
    std::cerr << "gradlabd: " << status.message() << "\n";
    return 1;
  }
  std::cout << "backed up " << state_dir << " into " << destination << std::endl;
  return 0;
}

int RunWorker(sigset_t signals) {
  absl::StatusOr<gradlab::WorkerAgentOptions> options =
      gradlab::WorkerOptionsFrom(FlagValues(), gradlab::UsableCpus());
  if (!options.ok()) {
    std::cerr << "gradlabd: " << options.status().message() << "\n";
    return 2;
  }
  gradlab::WorkerAgent agent(*options);
  std::thread signal_thread([&signals, &agent] {
    int signal_number = 0;
    sigwait(&signals, &signal_number);
    LOG(INFO) << "received " << strsignal(signal_number);
    agent.Shutdown();
  });
  LOG(INFO) << "gradlabd worker " << options->name << " (" << options->cpus << " CPUs, "
            << options->threads_per_job << " threads per rank) for coordinator "
            << options->coordinator;
  agent.Run();
  signal_thread.join();
  LOG(INFO) << "stopped";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // --help lists the flags defined in this file (absl matches files named after the binary
  // otherwise).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "server/daemon/main.cc");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      absl::StrCat("gradlabd ", gradlab::kGradlabVersion,
                   ": trains CNNs on CPU and streams their metrics and gradients over gRPC; with "
                   "--worker, trains ranks of another gradlabd's data-parallel experiments."));
  absl::ParseCommandLine(argc, argv);
  // Before anything else: the helper limits itself first, and must not start threads.
  if (!absl::GetFlag(FLAGS_check_model).empty()) {
    return gradlab::RunModelCheckHelper(absl::GetFlag(FLAGS_check_model),
                                        absl::GetFlag(FLAGS_check_model_memory_bytes),
                                        absl::GetFlag(FLAGS_check_model_cpu_seconds));
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  // A client that hangs up mid-write must not stop the server (TLS writes would raise it).
  signal(SIGPIPE, SIG_IGN);
  // Before anything starts threads (gRPC does as soon as credentials are made).
  sigset_t signals = BlockShutdownSignals();
  if (absl::GetFlag(FLAGS_worker)) return RunWorker(signals);
  if (!absl::GetFlag(FLAGS_check_state).empty())
    return CheckState(absl::GetFlag(FLAGS_check_state));
  if (!absl::GetFlag(FLAGS_backup_state).empty()) {
    return BackUpState(absl::GetFlag(FLAGS_state_dir), absl::GetFlag(FLAGS_backup_state));
  }

  absl::StatusOr<gradlab::ServerOptions> options =
      gradlab::ServerOptionsFrom(FlagValues(), gradlab::UsableCpus(), gradlab::ReadMachineMemory());
  if (!options.ok()) {
    std::cerr << "gradlabd: " << options.status().message() << "\n";
    return 2;
  }
  options->registry.checkpoint_hook = CheckpointPauseFromEnvironment();
  options->registry.run_step_hook = RunFaultFromEnvironment();
  options->start_training = false;  // after the ports are printed

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
  // Runs interrupted by a crash resume only now, so that one that takes the process down
  // again can be listed and cancelled, and the attempt count ends the loop (see
  // Experiment.attempts_since_epoch).
  (*server)->registry().StartTraining();

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
