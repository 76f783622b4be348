#include "server/daemon/options.h"

#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/byte_size.h"
#include "common/host_port.h"
#include "common/tls_files.h"

namespace gradlab {
namespace {

absl::StatusOr<KeepCheckpoints> ParseKeepCheckpoints(const std::string& text) {
  KeepCheckpoints keep{false, false};
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

}  // namespace

absl::StatusOr<ServerOptions> ServerOptionsFrom(const GradlabdFlags& flags, int usable_cpus,
                                                const MachineMemory& memory) {
  ServerOptions options;
  options.listen = flags.listen;
  options.max_request_bytes = flags.max_request_bytes;
  options.http.listen = flags.http_listen;
  options.http.max_streams = flags.http_max_streams;
  options.http.allowed_hosts =
      absl::StrSplit(flags.http_allowed_hosts, ',', absl::SkipWhitespace());
  RegistryOptions& registry = options.registry;
  registry.training_slots = flags.workers;
  registry.max_queue = flags.max_queue;
  options.max_sweep_runs = flags.max_sweep_runs;
  registry.data_dir = flags.data_dir;
  registry.allowed_data_dirs = absl::StrSplit(flags.allowed_data_dirs, ',', absl::SkipWhitespace());
  registry.training_niceness = flags.training_niceness;
  registry.rendezvous.advertise_address = flags.advertise_address;
  registry.rendezvous.collective_timeout = flags.collective_timeout;
  registry.worker_pool.worker_timeout = flags.worker_timeout;
  registry.worker_pool.heartbeat_interval = flags.heartbeat_interval;
  registry.worker_pool.max_workers = flags.max_workers;
  if (flags.max_workers < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--max_workers: ", flags.max_workers,
                                                   " must be at least 1 (the most workers that may "
                                                   "register at once)"));
  }
  if (registry.rendezvous.collective_timeout < absl::Seconds(1) ||
      registry.worker_pool.heartbeat_interval < absl::Milliseconds(100) ||
      registry.worker_pool.worker_timeout < 2 * registry.worker_pool.heartbeat_interval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--collective_timeout (", absl::FormatDuration(registry.rendezvous.collective_timeout),
        ") must be at least 1s, --heartbeat_interval (",
        absl::FormatDuration(registry.worker_pool.heartbeat_interval),
        ") at least 100ms, and --worker_timeout (",
        absl::FormatDuration(registry.worker_pool.worker_timeout), ") at least twice that"));
  }
  options.state_dir = flags.state_dir;
  absl::StatusOr<int64_t> reserve = ParseBytes(flags.state_reserve, "--state_reserve");
  if (!reserve.ok()) return reserve.status();
  options.store.reserve_bytes = *reserve;
  absl::StatusOr<int64_t> max_model = ParseBytes(flags.max_model_bytes, "--max_model_bytes");
  if (!max_model.ok()) return max_model.status();
  if (*max_model < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_model_bytes: ", flags.max_model_bytes, " must be at least 1 byte"));
  }
  options.max_model_bytes = *max_model;
  if (flags.model_check_seconds < 1 || flags.model_check_seconds > 3600) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--model_check_seconds: ", flags.model_check_seconds, " is out of range [1, 3600]"));
  }
  options.model_check.cpu_time = absl::Seconds(flags.model_check_seconds);
  options.model_check.wall_time = absl::Seconds(2 * flags.model_check_seconds);
  absl::StatusOr<KeepCheckpoints> keep = ParseKeepCheckpoints(flags.keep_checkpoints);
  if (!keep.ok()) return keep.status();
  registry.keep_checkpoints = *keep;
  if (registry.training_niceness < 0 || registry.training_niceness > 19) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--training_niceness: ", registry.training_niceness, " is out of range [0, 19]"));
  }
  const int cpus = usable_cpus;
  if (registry.training_slots < 1 || registry.training_slots > cpus) {
    return absl::InvalidArgumentError(absl::StrCat("--workers: ", registry.training_slots,
                                                   " is out of range [1, ", cpus,
                                                   "] (the CPUs this process may use)"));
  }
  const int threads = flags.threads_per_job;
  if (threads < 0 || threads * registry.training_slots > cpus) {
    return absl::InvalidArgumentError(
        absl::StrCat("--threads_per_job: ", threads, " x ", registry.training_slots,
                     " workers is more than the ", cpus, " CPUs this process may use"));
  }
  registry.threads_per_job = threads > 0 ? threads : std::max(1, cpus / registry.training_slots);
  if (memory.limit_bytes > 0) {
    registry.memory_budget = memory.limit_bytes / 4 * 3 - memory.resident_bytes;
    if (registry.memory_budget <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--max_run_memory: gradlabd already holds ", FormatBytes(memory.resident_bytes),
          ", more than three quarters of the ", FormatBytes(memory.limit_bytes),
          " it may use; give it more memory or set --max_run_memory=0 (no limit)"));
    }
    registry.max_run_memory = registry.memory_budget / registry.training_slots;
  }
  if (!flags.max_run_memory.empty()) {
    absl::StatusOr<int64_t> bytes = ParseBytes(flags.max_run_memory, "--max_run_memory");
    if (!bytes.ok()) return bytes.status();
    registry.max_run_memory = *bytes;
    if (*bytes == 0) registry.memory_budget = 0;
  }
  if (registry.max_queue < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_queue: ", registry.max_queue,
                     " must be 1 or more (with no room in the queue, every experiment would be "
                     "refused)"));
  }
  if (flags.max_sweep_runs < 1 || flags.max_sweep_runs > registry.max_queue) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_sweep_runs: ", flags.max_sweep_runs, " must be 1 to --max_queue (",
        registry.max_queue, "), so that a sweep that is allowed fits in an empty queue"));
  }
  options.tls = {flags.tls_cert, flags.tls_key, flags.tls_client_ca};
  if (!options.tls.ca.empty() && options.tls.cert.empty()) {
    return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
  }
  options.limits.max_streams_per_client = flags.max_streams_per_client;
  options.limits.max_starts_per_minute = flags.max_starts_per_minute;
  if (options.limits.max_streams_per_client < 0 || options.limits.max_starts_per_minute < 0) {
    return absl::InvalidArgumentError(
        "--max_streams_per_client and --max_starts_per_minute must be 0 (no limit) or more");
  }
  options.auth_tokens_file = flags.auth_tokens_file;
  // Safe by default: what other machines can reach needs to know who calls (tokens or
  // client certificates), or a choice. TLS alone encrypts, and lets anyone in.
  std::vector<std::pair<std::string, std::string>> listeners = {{"--listen", options.listen}};
  if (!options.http.listen.empty()) listeners.push_back({"--http_listen", options.http.listen});
  for (const auto& [flag, address] : listeners) {
    if (absl::StartsWith(address, "unix:")) continue;  // gRPC on a local socket file
    absl::StatusOr<HostPort> parsed = ParseHostPort(address, flag);
    if (!parsed.ok()) return parsed.status();
    if (IsLoopbackHost(parsed->host)) continue;
    const bool authenticated = !options.auth_tokens_file.empty() || !options.tls.ca.empty();
    if (!authenticated && !flags.allow_insecure_remote) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, "=", address, " can be reached from other machines, and ",
          options.tls.cert.empty()
              ? "without tokens or client certificates"
              : "with TLS alone (it encrypts the traffic but does not say who may call)",
          " anyone there could start, cancel, delete and read experiments: give "
          "--auth_tokens_file, or --tls_cert, --tls_key and --tls_client_ca (client "
          "certificates), listen on 127.0.0.1, or pass --allow_insecure_remote on a network "
          "you trust"));
    }
    if (options.tls.cert.empty() && !options.auth_tokens_file.empty()) {
      LOG(WARNING) << flag << "=" << address
                   << ": tokens cross the network in plain text without TLS (--tls_cert)";
    }
  }
  if (absl::Status status = CheckMaxStreams(options.http.max_streams); !status.ok()) {
    return status;
  }
  if (options.max_request_bytes < 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_request_bytes: ", options.max_request_bytes, " must be at least 1024"));
  }
  return options;
}

absl::StatusOr<WorkerAgentOptions> WorkerOptionsFrom(const GradlabdFlags& flags, int usable_cpus) {
  WorkerAgentOptions options;
  options.coordinator = flags.coordinator;
  if (options.coordinator.empty()) {
    return absl::InvalidArgumentError(
        "--worker needs --coordinator=HOST:PORT, the gRPC address "
        "of the gradlabd that coordinates");
  }
  if (absl::StatusOr<HostPort> parsed = ParseHostPort(options.coordinator, "--coordinator");
      !parsed.ok()) {
    return parsed.status();
  }
  options.name = flags.worker_name;
  if (options.name.empty()) {
    char hostname[256] = {};
    gethostname(hostname, sizeof(hostname) - 1);
    options.name = hostname;
  }
  options.address = flags.advertise_address;
  options.data_dir = flags.data_dir;
  options.cpus = usable_cpus;
  const int threads = flags.threads_per_job;
  if (threads < 0 || threads > options.cpus) {
    return absl::InvalidArgumentError(absl::StrCat("--threads_per_job: ", threads,
                                                   " is out of range [0, ", options.cpus,
                                                   "] (the CPUs this process may use)"));
  }
  options.threads_per_job = threads > 0 ? threads : options.cpus;
  options.training_niceness = flags.training_niceness;
  if (options.training_niceness < 0 || options.training_niceness > 19) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--training_niceness: ", options.training_niceness, " is out of range [0, 19]"));
  }
  if (const std::string path = flags.coordinator_token_file; !path.empty()) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    options.token = std::string(absl::StripAsciiWhitespace(text.str()));
    if (!file || options.token.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--coordinator_token_file: cannot read a token from ", path));
    }
  }
  if (const std::string ca = flags.coordinator_tls_ca; !ca.empty()) {
    absl::StatusOr<TlsPem> pem = ReadTlsFiles({"", "", ca}, "--coordinator_tls_ca");
    if (!pem.ok()) return pem.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem->ca_certs;
    options.credentials = grpc::SslCredentials(ssl);
  }
  return options;
}

}  // namespace gradlab
