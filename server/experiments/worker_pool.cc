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
                     WorkerPool::kMaxAddressCharacters,
                     " characters (given: ", QuoteClientText(request.address()), ")"));
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

// `result` as a response, `set` putting its value in.
template <typename T, typename Setter>
absl::StatusOr<v1::RendezvousResponse> Answer(absl::StatusOr<T> result, Setter set) {
  if (!result.ok()) return result.status();
  v1::RendezvousResponse response;
  set(response, *std::move(result));
  return response;
}

// Whether a Rendezvous request is well formed: an operation c10d has, with its keys.
absl::Status CheckRendezvousRequest(const v1::RendezvousRequest& request) {
  using Request = v1::RendezvousRequest;
  const Request::Operation operation = request.operation();
  if (operation < Request::SET || operation > Request::KEY_COUNT) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rendezvous operation ", operation,
        " is not one of SET, GET, ADD, COMPARE_SET, DELETE_KEY, CHECK, KEY_COUNT (1 to 7)"));
  }
  if (operation == Request::CHECK || operation == Request::KEY_COUNT) {
    if (request.keys_size() > static_cast<int>(MemoryRendezvousStore::kMaxKeys)) {
      return absl::InvalidArgumentError(absl::StrCat("a rendezvous CHECK takes at most ",
                                                     MemoryRendezvousStore::kMaxKeys, " keys"));
    }
  } else if (request.keys_size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous operation ", Request::Operation_Name(operation),
                     " takes one key (given: ", request.keys_size(), ")"));
  }
  return absl::OkStatus();
}

// One well-formed WorkerService Rendezvous operation on `store`.
absl::StatusOr<v1::RendezvousResponse> ApplyRendezvous(RendezvousStore& store,
                                                       const v1::RendezvousRequest& request) {
  using Request = v1::RendezvousRequest;
  using Response = v1::RendezvousResponse;
  const std::string key = request.keys_size() == 1 ? request.keys(0) : std::string();
  switch (request.operation()) {
    case Request::SET:
      if (absl::Status set = store.Set(key, request.value()); !set.ok()) return set;
      return Response();
    case Request::GET:
      return Answer(store.Get(key), [](Response& r, std::string v) { r.set_value(std::move(v)); });
    case Request::ADD:
      return Answer(store.Add(key, request.amount()),
                    [](Response& r, int64_t n) { r.set_number(n); });
    case Request::COMPARE_SET:
      return Answer(store.CompareSet(key, request.expected(), request.value()),
                    [](Response& r, std::string v) { r.set_value(std::move(v)); });
    case Request::DELETE_KEY:
      return Answer(store.Delete(key), [](Response& r, bool was) { r.set_present(was); });
    case Request::CHECK:
      return Answer(store.Check({request.keys().begin(), request.keys().end()}),
                    [](Response& r, bool all) { r.set_present(all); });
    case Request::KEY_COUNT:
      return Answer(store.KeyCount(), [](Response& r, int64_t n) { r.set_number(n); });
    default:
      return absl::InternalError("a rendezvous operation was not checked");
  }
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
      if (old.info.name() != request.name() || (owner.empty() && old.info.address() != address)) {
        ++it;
        continue;
      }
      if (old.owner != owner) {
        return absl::AlreadyExistsError(
            absl::StrCat("a worker named ", QuoteClientText(request.name()),
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
      return absl::NotFoundError(
          absl::StrCat("worker ", QuoteClientText(request.worker_id()),
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
                           CutClientText(outcome.message(), kMaxOutcomeCharacters));
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

absl::StatusOr<std::shared_ptr<RendezvousStore>> WorkerPool::Reserve(const RankRequest& request) {
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
    assignment.set_timeout_ms(absl::ToInt64Milliseconds(request.timeout));
    worker.assignment = std::move(assignment);
    worker.handed_out = false;
    worker.released = false;
    worker.info.set_experiment_id(request.experiment_id);
    worker.info.set_rank(rank);
  }
  Attempt& attempt = attempts_[{request.experiment_id, request.attempt}];
  attempt.store = std::make_shared<MemoryRendezvousStore>();
  return std::shared_ptr<RendezvousStore>(attempt.store);
}

absl::StatusOr<v1::RendezvousResponse> WorkerPool::Rendezvous(const v1::RendezvousRequest& request,
                                                              absl::string_view owner) {
  if (absl::Status valid = CheckRendezvousRequest(request); !valid.ok()) return valid;
  std::shared_ptr<RendezvousStore> store;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<const Worker*> holder =
        RankHolderLocked(request.worker_id(), owner, request.experiment_id(), request.attempt());
    if (!holder.ok()) return holder.status();
    store = attempts_.at({request.experiment_id(), request.attempt()}).store;
  }
  // The store has its own lock: the pool's is not held while it works.
  return ApplyRendezvous(*store, request);
}

absl::StatusOr<v1::ExperimentSpec> WorkerPool::AssignedSpec(const v1::FetchModelRequest& request,
                                                            absl::string_view owner) const {
  if (request.worker_id().empty() || request.experiment_id().empty() || request.attempt() < 1) {
    return absl::InvalidArgumentError(
        "FetchModel needs the worker's id, and the experiment and attempt it holds a rank of");
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<const Worker*> holder =
      RankHolderLocked(request.worker_id(), owner, request.experiment_id(), request.attempt());
  if (!holder.ok()) return holder.status();
  return (*holder)->assignment->spec();
}

absl::StatusOr<const WorkerPool::Worker*> WorkerPool::RankHolderLocked(
    const std::string& worker_id, absl::string_view owner, const std::string& experiment_id,
    int attempt) const {
  auto worker = workers_.find(worker_id);
  const bool holds_rank = worker != workers_.end() && worker->second.owner == owner &&
                          worker->second.assignment.has_value() && worker->second.handed_out &&
                          !worker->second.released &&
                          Matches(*worker->second.assignment, experiment_id, attempt) &&
                          attempts_.count({experiment_id, attempt}) > 0;
  if (!holds_rank) {
    return absl::PermissionDeniedError(
        absl::StrCat("worker ", QuoteClientText(worker_id), " holds no rank of attempt ", attempt,
                     " of experiment ", QuoteClientText(experiment_id),
                     ": only the ranks of a running attempt may use its rendezvous and model"));
  }
  return &worker->second;
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
    auto it = attempts_.find({experiment_id, attempt});
    if (it != attempts_.end()) {
      notes = std::move(it->second.notes);
      attempts_.erase(it);
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
  auto it = attempts_.find(key);
  if (it != attempts_.end()) it->second.notes.push_back(std::move(what));
}

}  // namespace gradlab
