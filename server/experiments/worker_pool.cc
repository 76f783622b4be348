#include "server/experiments/worker_pool.h"

#include <glog/logging.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/client_text.h"
#include "google/protobuf/util/time_util.h"

namespace gradlab {
namespace {

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(time));
}

std::string Describe(const v1::WorkerInfo& info) {
  return absl::StrCat("worker ", info.id(), " (", info.name(), " at ", info.address(), ")");
}

absl::Status CheckRegistration(const v1::RegisterWorkerRequest& request) {
  constexpr int kMaxCpus = 4096;
  if (request.name().empty() || CharacterCount(request.name()) > WorkerPool::kMaxNameCharacters) {
    return absl::InvalidArgumentError(
        absl::StrCat("a worker's name must have 1 to ", WorkerPool::kMaxNameCharacters,
                     " characters (given: ", QuoteClientText(request.name()), ")"));
  }
  if (CharacterCount(request.version()) > WorkerPool::kMaxNameCharacters) {
    return absl::InvalidArgumentError(
        absl::StrCat("a worker's version may have at most ", WorkerPool::kMaxNameCharacters,
                     " characters (given: ", QuoteClientText(request.version()), ")"));
  }
  // A host name or an IP address (IPv6 with or without brackets, with a zone): what the
  // worker's Gloo connections bind to.
  const bool address_ok =
      request.address().size() <= WorkerPool::kMaxAddressCharacters &&
      std::all_of(request.address().begin(), request.address().end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
               absl::string_view(".-_:[]%").find(c) != absl::string_view::npos;
      });
  if (!address_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("a worker's address must be a host name or an IP address of at most ",
                     WorkerPool::kMaxAddressCharacters, " characters (given: ",
                     QuoteClientText(request.address()), ")"));
  }
  if (request.cpus() < 1 || request.cpus() > kMaxCpus || request.threads_per_job() < 1 ||
      request.threads_per_job() > kMaxCpus) {
    return absl::InvalidArgumentError(
        absl::StrCat("a worker's cpus and threads_per_job must be 1 to ", kMaxCpus,
                     " (given: ", request.cpus(), " and ", request.threads_per_job(), ")"));
  }
  return absl::OkStatus();
}

// A rank's google.rpc.Code as a status code; one no code has is UNKNOWN.
absl::StatusCode OutcomeCode(int32_t code) {
  constexpr int32_t kLastCode = static_cast<int32_t>(absl::StatusCode::kUnauthenticated);
  return code >= 1 && code <= kLastCode ? static_cast<absl::StatusCode>(code)
                                        : absl::StatusCode::kUnknown;
}

// At most kMaxOutcomeCharacters of a rank's error, never inside a character.
std::string CutOutcomeMessage(absl::string_view message) {
  if (CharacterCount(message) <= WorkerPool::kMaxOutcomeCharacters) return std::string(message);
  size_t end = 0;
  for (size_t kept = 0; end < message.size() && kept < WorkerPool::kMaxOutcomeCharacters; ++kept) {
    ++end;
    while (end < message.size() && (static_cast<unsigned char>(message[end]) & 0xC0) == 0x80) {
      ++end;
    }
  }
  return absl::StrCat(message.substr(0, end), "… (", message.size(), " bytes in all)");
}

}  // namespace

WorkerPool::WorkerPool(WorkerPoolOptions options, std::function<void()> on_change)
    : options_(std::move(options)), on_change_(std::move(on_change)) {
  reaper_ = std::thread([this] {
    const absl::Duration period =
        std::max(absl::Milliseconds(100),
                 std::min(options_.heartbeat_interval, options_.worker_timeout / 4));
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), period)) return;
      }
      if (DropSilentWorkers() && on_change_) on_change_();
    }
  });
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  reaper_.join();
}

absl::StatusOr<v1::RegisterWorkerResponse> WorkerPool::Register(
    const v1::RegisterWorkerRequest& request, absl::string_view peer_host,
    absl::string_view owner) {
  if (absl::Status valid = CheckRegistration(request); !valid.ok()) return valid;
  const std::string address =
      request.address().empty() ? std::string(peer_host) : request.address();
  v1::RegisterWorkerResponse response;
  {
    absl::MutexLock lock(&mu_);
    // A worker that restarted registers again under the same name (and, without tokens,
    // from the same address): its old entry, and any rank it held, is gone with the old
    // process. A name another token registered is not this caller's to replace.
    for (auto it = workers_.begin(); it != workers_.end();) {
      const Worker& old = it->second;
      if (old.info.name() != request.name() ||
          (owner.empty() && old.info.address() != address)) {
        ++it;
        continue;
      }
      if (old.owner != owner) {
        return absl::AlreadyExistsError(absl::StrCat(
            "a worker named ", QuoteClientText(request.name()),
            " is registered with another worker token; give this worker another name "
            "(--worker_name)"));
      }
      if (old.assignment.has_value()) {
        Note({old.assignment->experiment_id(), old.assignment->attempt()},
             absl::UnavailableError(absl::StrCat(Describe(old.info), " restarted")));
      }
      it = workers_.erase(it);
    }
    if (static_cast<int>(workers_.size()) >= options_.max_workers) {
      return absl::ResourceExhaustedError(
          absl::StrCat("this coordinator has as many workers as it takes (", options_.max_workers,
                       ", its --max_workers)"));
    }
    Worker worker;
    worker.owner = std::string(owner);
    worker.info.set_id(absl::StrCat("w", next_worker_++));
    worker.info.set_name(request.name());
    worker.info.set_address(address);
    worker.info.set_cpus(request.cpus());
    worker.info.set_threads_per_job(request.threads_per_job());
    worker.info.set_version(request.version());
    const absl::Time now = options_.clock();
    *worker.info.mutable_registered_time() = ToTimestamp(now);
    *worker.info.mutable_last_heartbeat_time() = ToTimestamp(now);
    worker.last_heartbeat = now;
    response.set_worker_id(worker.info.id());
    response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
    response.set_address(address);
    LOG(INFO) << Describe(worker.info) << " registered: " << request.cpus() << " CPUs, "
              << request.threads_per_job() << " threads per rank, version " << request.version();
    workers_.emplace(worker.info.id(), std::move(worker));
  }
  if (on_change_) on_change_();
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> WorkerPool::Heartbeat(const v1::HeartbeatRequest& request,
                                                            absl::string_view owner) {
  v1::HeartbeatResponse response;
  bool became_idle = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(request.worker_id());
    if (it == workers_.end() || it->second.owner != owner) {
      return absl::NotFoundError(absl::StrCat(
          "worker ", QuoteClientText(request.worker_id()),
          " is not registered here (the coordinator restarted, dropped it after ",
          absl::FormatDuration(options_.worker_timeout),
          " without a heartbeat, or another token registered it); register again"));
    }
    Worker& worker = it->second;
    worker.last_heartbeat = options_.clock();
    *worker.info.mutable_last_heartbeat_time() = ToTimestamp(worker.last_heartbeat);
    const bool ours = worker.assignment.has_value() && !worker.released;
    if (request.has_running()) {
      // A rank of an attempt the run has given up (or never gave this worker) must stop.
      if (!ours || !Matches(*worker.assignment, request.running().experiment_id(),
                            request.running().attempt())) {
        response.set_stop_running(true);
      }
    } else if (worker.assignment.has_value()) {
      const v1::RankOutcome& outcome = request.last_outcome();
      const bool ended = worker.handed_out && request.has_last_outcome() &&
                         Matches(*worker.assignment, outcome.experiment_id(), outcome.attempt());
      if (ended || (worker.released && worker.handed_out)) {
        if (ended && outcome.code() != 0) {
          const std::string what =
              absl::StrCat(Describe(worker.info), ", rank ", worker.assignment->rank(), ": ",
                           CutOutcomeMessage(outcome.message()));
          LOG(WARNING) << "experiment " << outcome.experiment_id() << " attempt "
                       << outcome.attempt() << ": " << what;
          Note({outcome.experiment_id(), outcome.attempt()},
               absl::Status(OutcomeCode(outcome.code()), what));
        }
        worker.assignment.reset();
        worker.info.clear_experiment_id();
        worker.info.set_rank(0);
        became_idle = true;
      } else if (!worker.released) {
        // Handed out again should the answer that carried it have been lost.
        *response.mutable_assignment() = *worker.assignment;
        worker.handed_out = true;
      }
    }
  }
  if (became_idle && on_change_) on_change_();
  return response;
}

int WorkerPool::IdleCount() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(std::count_if(workers_.begin(), workers_.end(), [](const auto& entry) {
    return !entry.second.assignment.has_value();
  }));
}

int WorkerPool::Count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(workers_.size());
}

absl::Status WorkerPool::Reserve(const RankRequest& request) {
  absl::MutexLock lock(&mu_);
  std::vector<Worker*> idle;
  for (auto& [id, worker] : workers_) {
    if (!worker.assignment.has_value()) idle.push_back(&worker);
  }
  const int needed = request.world_size - 1;
  if (static_cast<int>(idle.size()) < needed) {
    return absl::FailedPreconditionError(
        absl::StrCat("world_size ", request.world_size, " needs ", needed, " idle workers; ",
                     idle.size(), " of ", workers_.size(), " registered are idle"));
  }
  for (int rank = 1; rank <= needed; ++rank) {
    Worker& worker = *idle[rank - 1];
    v1::RankAssignment assignment;
    assignment.set_experiment_id(request.experiment_id);
    assignment.set_attempt(request.attempt);
    *assignment.mutable_spec() = request.spec;
    assignment.set_rank(rank);
    assignment.set_world_size(request.world_size);
    assignment.set_store_host(request.store_host);
    assignment.set_store_port(request.store_port);
    assignment.set_timeout_ms(absl::ToInt64Milliseconds(request.timeout));
    worker.assignment = std::move(assignment);
    worker.handed_out = false;
    worker.released = false;
    worker.info.set_experiment_id(request.experiment_id);
    worker.info.set_rank(rank);
  }
  notes_[{request.experiment_id, request.attempt}];
  return absl::OkStatus();
}

std::vector<absl::Status> WorkerPool::Release(const std::string& experiment_id, int attempt) {
  std::vector<absl::Status> notes;
  bool became_idle = false;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, worker] : workers_) {
      if (!worker.assignment.has_value() || !Matches(*worker.assignment, experiment_id, attempt)) {
        continue;
      }
      if (worker.handed_out) {
        worker.released = true;  // idle once it reports the rank ended
      } else {
        worker.assignment.reset();
        worker.info.clear_experiment_id();
        worker.info.set_rank(0);
        became_idle = true;
      }
    }
    auto it = notes_.find({experiment_id, attempt});
    if (it != notes_.end()) {
      notes = std::move(it->second);
      notes_.erase(it);
    }
  }
  if (became_idle && on_change_) on_change_();
  return notes;
}

std::vector<v1::WorkerInfo> WorkerPool::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::WorkerInfo> list;
  for (const auto& [id, worker] : workers_) list.push_back(worker.info);
  return list;
}

bool WorkerPool::DropSilentWorkers() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock();
  bool dropped = false;
  for (auto it = workers_.begin(); it != workers_.end();) {
    const Worker& worker = it->second;
    const absl::Duration silent = now - worker.last_heartbeat;
    if (silent <= options_.worker_timeout) {
      ++it;
      continue;
    }
    const std::string what = absl::StrCat(
        Describe(worker.info), " sent no heartbeat for ",
        absl::FormatDuration(absl::Trunc(silent, absl::Milliseconds(100))), " and was dropped");
    LOG(WARNING) << what;
    if (worker.assignment.has_value()) {
      Note({worker.assignment->experiment_id(), worker.assignment->attempt()},
           absl::UnavailableError(what));
    }
    it = workers_.erase(it);
    dropped = true;
  }
  return dropped;
}

void WorkerPool::Note(const AttemptKey& key, absl::Status what) {
  auto it = notes_.find(key);
  if (it != notes_.end()) it->second.push_back(std::move(what));
}

}  // namespace gradlab
