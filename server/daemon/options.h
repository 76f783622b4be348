// gradlabd's command line as plain values, and the rules that turn it into the options of
// the server or of a worker: every cross-field check in one function that unit tests call.
// main.cc fills GradlabdFlags from its flags, whose defaults are these.
#ifndef GRADLAB_SERVER_DAEMON_OPTIONS_H_
#define GRADLAB_SERVER_DAEMON_OPTIONS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/machine_memory.h"
#include "server/daemon/server.h"
#include "server/worker/worker_agent.h"

namespace gradlab {

struct GradlabdFlags {
  std::string listen = "127.0.0.1:50051";
  int workers = 1;
  int threads_per_job = 0;
  int max_queue = 100;
  // At most max_queue, so that the largest sweep can be queued on an idle server.
  int max_sweep_runs = 100;
  // A size ("6GiB"); empty: three quarters of the memory the machine or the cgroup allows,
  // less gradlabd's own at start, divided by --workers; "0": no limit.
  std::string max_run_memory;
  std::string data_dir = "data";
  std::string allowed_data_dirs;  // comma-separated; empty: data_dir and /usr/share/datasets
  int max_request_bytes = 256 * 1024;
  std::string max_model_bytes = "200MB";  // a size
  int model_check_seconds = 60;           // of CPU time; twice that of wall-clock time
  std::string state_dir = "gradlab-state";
  std::string state_reserve = "8MiB";  // a size; "0": none
  std::string keep_checkpoints = "last,best";
  int training_niceness = 0;
  std::string http_listen = "127.0.0.1:8080";
  int http_max_streams = 64;
  std::string http_allowed_hosts;  // comma-separated
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string auth_tokens_file;
  int max_streams_per_client = 32;
  int max_starts_per_minute = 60;
  bool allow_insecure_remote = false;
  std::string advertise_address;
  absl::Duration collective_timeout = absl::Seconds(60);
  absl::Duration worker_timeout = absl::Seconds(10);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  int max_workers = 256;
  // gradlabd --worker
  std::string coordinator;
  std::string worker_name;  // empty: the hostname
  std::string coordinator_token_file;
  std::string coordinator_tls_ca;
};

// INVALID_ARGUMENT naming the flag and what it allows. `usable_cpus`: the CPUs this
// process may use (UsableCpus()), which bound --workers and --threads_per_job; `memory`:
// what it may use and holds (ReadMachineMemory()), which make the memory budget of runs
// (none when the limit is not known).
absl::StatusOr<ServerOptions> ServerOptionsFrom(const GradlabdFlags& flags, int usable_cpus,
                                                const MachineMemory& memory = {});
// Reads --coordinator_token_file and --coordinator_tls_ca.
absl::StatusOr<WorkerAgentOptions> WorkerOptionsFrom(const GradlabdFlags& flags, int usable_cpus);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_DAEMON_OPTIONS_H_
