// WorkerPool with a fake clock: registration, heartbeats, ranks handed out and taken back,
// and silent workers dropped.
#include "server/experiments/worker_pool.h"

#include <atomic>
#include <tuple>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class WorkerPoolTest : public ::testing::Test {
 protected:
  WorkerPoolTest() {
    options_.heartbeat_interval = absl::Milliseconds(100);
    options_.worker_timeout = absl::Seconds(5);
    options_.clock = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
  }

  void Advance(absl::Duration duration) {
    absl::MutexLock lock(&clock_mu_);
    now_ += duration;
  }

  std::unique_ptr<WorkerPool> NewPool() {
    return std::make_unique<WorkerPool>(options_, [this] { ++changes_; });
  }

  static v1::RegisterWorkerRequest Registration(const std::string& name,
                                                const std::string& address = "") {
    v1::RegisterWorkerRequest request;
    request.set_name(name);
    request.set_cpus(4);
    request.set_threads_per_job(2);
    request.set_address(address);
    return request;
  }

  // `owner`: the worker token's name, empty as on a coordinator without tokens.
  static std::string Register(WorkerPool& pool, const std::string& name,
                              const std::string& address = "", const std::string& owner = "") {
    absl::StatusOr<v1::RegisterWorkerResponse> response =
        pool.Register(Registration(name, address), "10.0.0.9", owner);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->worker_id() : "";
  }

  static v1::HeartbeatResponse Beat(WorkerPool& pool, const std::string& id,
                                    const v1::RankAssignment* running = nullptr,
                                    const v1::RankOutcome* outcome = nullptr,
                                    const std::string& owner = "") {
    v1::HeartbeatRequest request;
    request.set_worker_id(id);
    if (running != nullptr) *request.mutable_running() = *running;
    if (outcome != nullptr) *request.mutable_last_outcome() = *outcome;
    absl::StatusOr<v1::HeartbeatResponse> response = pool.Heartbeat(request, owner);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.value_or(v1::HeartbeatResponse());
  }

  static RankRequest Request(const std::string& id, int attempt, int world_size) {
    RankRequest request;
    request.experiment_id = id;
    request.attempt = attempt;
    request.world_size = world_size;
    request.timeout = absl::Seconds(30);
    request.spec.set_model("simple_cnn");
    return request;
  }

  static v1::RankOutcome Outcome(const std::string& id, int attempt, absl::Status status) {
    v1::RankOutcome outcome;
    outcome.set_experiment_id(id);
    outcome.set_attempt(attempt);
    outcome.set_code(static_cast<int>(status.code()));
    outcome.set_message(std::string(status.message()));
    return outcome;
  }

  WorkerPoolOptions options_;
  absl::Mutex clock_mu_;
  absl::Time now_ ABSL_GUARDED_BY(clock_mu_) = absl::FromUnixSeconds(1'800'000'000);
  std::atomic<int> changes_{0};
};

TEST_F(WorkerPoolTest, RegisteredWorkersAreListedWithTheAddressTheyAreReachedAt) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a");
  const std::string b = Register(*pool, "host-b", "192.168.1.7");
  EXPECT_NE(a, b);
  EXPECT_EQ(pool->Count(), 2);
  EXPECT_EQ(pool->IdleCount(), 2);
  EXPECT_EQ(changes_.load(), 2);
  std::vector<v1::WorkerInfo> workers = pool->List();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].name(), "host-a");
  EXPECT_EQ(workers[0].address(), "10.0.0.9") << "the address its call came from";
  EXPECT_EQ(workers[1].address(), "192.168.1.7") << "the address it gave";
  EXPECT_EQ(workers[1].cpus(), 4);
  EXPECT_EQ(workers[1].threads_per_job(), 2);
}

TEST_F(WorkerPoolTest, BadRegistrationsAndUnknownWorkersAreRefusedSayingWhy) {
  auto pool = NewPool();
  struct Case {
    v1::RegisterWorkerRequest request;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back(
      {Registration(""), "a worker's name must have 1 to 100 characters (given: \"\")"});
  cases.push_back({Registration(std::string(5000, 'n')),
                   "a worker's name must have 1 to 100 characters (given: \"nnnn"});
  cases.push_back({Registration("host-a", "10.0.0.1; rm -rf /"),
                   "a worker's address must be a host name or an IP address"});
  cases.push_back({Registration("host-a", std::string(300, 'a')), "of at most 255 characters"});
  cases.push_back({Registration("host-a"), "a worker's version may have at most 100 characters"});
  cases.back().request.set_version(std::string(101, 'v'));
  cases.push_back(
      {Registration("host-a"), "cpus and threads_per_job must be 1 to 4096 (given: 0 and 2)"});
  cases.back().request.set_cpus(0);
  cases.push_back({Registration("host-a"), "(given: 4 and 100000)"});
  cases.back().request.set_threads_per_job(100000);
  for (const Case& c : cases) {
    absl::Status status = pool->Register(c.request, "10.0.0.9", "").status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_THAT(status.message(), HasSubstr(c.message));
    EXPECT_LT(status.message().size(), 400u) << "client strings are quoted cut";
  }
  EXPECT_EQ(pool->Count(), 0);
  // Limits count characters: 100 CJK characters (300 bytes) make a name.
  std::string cjk;
  for (int i = 0; i < 100; ++i) cjk += "\u6a5f";
  EXPECT_FALSE(Register(*pool, cjk, "[fe80::1%eth0]").empty());
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_worker_id("w99");
  absl::Status status = pool->Heartbeat(heartbeat, "").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("register again"));
}

TEST_F(WorkerPoolTest, ANameIsBoundToTheTokenThatRegisteredIt) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a", "10.0.0.1", "token on line 1");
  ASSERT_TRUE(pool->Reserve(Request("exp1", 1, 2)).ok());
  ASSERT_TRUE(Beat(*pool, a, nullptr, nullptr, "token on line 1").has_assignment());

  // Another token can neither take the name (which would evict the worker and its rank)
  // nor heartbeat for the worker (which would report outcomes or stop its rank).
  absl::Status taken =
      pool->Register(Registration("host-a", "10.0.0.1"), "10.0.0.66", "token on line 2").status();
  EXPECT_EQ(taken.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(taken.message(), HasSubstr("registered with another worker token"));
  v1::HeartbeatRequest forged;
  forged.set_worker_id(a);
  *forged.mutable_last_outcome() = Outcome("exp1", 1, absl::InternalError("forged"));
  EXPECT_EQ(pool->Heartbeat(forged, "token on line 2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(pool->Heartbeat(forged, "").status().code(), absl::StatusCode::kNotFound);
  ASSERT_EQ(pool->Count(), 1);
  EXPECT_EQ(pool->List()[0].experiment_id(), "exp1") << "the rank is still the worker's";

  // Its own token may: a restarted worker, from any address, replaces its old entry.
  const std::string again = Register(*pool, "host-a", "10.0.0.2", "token on line 1");
  EXPECT_NE(again, a);
  EXPECT_EQ(pool->Count(), 1);
  std::vector<absl::Status> notes = pool->Release("exp1", 1);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_THAT(notes[0].message(), HasSubstr("restarted"));
  EXPECT_THAT(notes[0].message(), Not(HasSubstr("forged")));
}

TEST_F(WorkerPoolTest, OnlyTheRanksOfARunningAttemptMeetInItsRendezvous) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a", "", "token on line 1");
  const std::string idle = Register(*pool, "host-b", "", "token on line 1");
  absl::StatusOr<std::shared_ptr<RendezvousStore>> store = pool->Reserve(Request("exp1", 1, 2));
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Set("rank_0", "10.0.0.1:4000").ok()) << "rank 0, on the coordinator";

  auto request = [](const std::string& worker, const std::string& experiment, int attempt) {
    v1::RendezvousRequest request;
    request.set_worker_id(worker);
    request.set_experiment_id(experiment);
    request.set_attempt(attempt);
    request.set_operation(v1::RendezvousRequest::GET);
    request.add_keys("rank_0");
    return request;
  };
  EXPECT_EQ(pool->Rendezvous(request(a, "exp1", 1), "token on line 1").status().code(),
            absl::StatusCode::kPermissionDenied)
      << "not yet handed its rank";
  ASSERT_TRUE(Beat(*pool, a, nullptr, nullptr, "token on line 1").has_assignment())
      << "workers are reserved in the order they registered";
  absl::StatusOr<v1::RendezvousResponse> got =
      pool->Rendezvous(request(a, "exp1", 1), "token on line 1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->value(), "10.0.0.1:4000") << "the store rank 0 joins";

  v1::RendezvousRequest set = request(a, "exp1", 1);
  set.set_operation(v1::RendezvousRequest::SET);
  set.set_keys(0, "rank_1");
  set.set_value("10.0.0.2:4000");
  ASSERT_TRUE(pool->Rendezvous(set, "token on line 1").ok());
  EXPECT_EQ(*(*store)->Get("rank_1"), "10.0.0.2:4000");

  for (const auto& [what, denied, owner] :
       std::vector<std::tuple<std::string, v1::RendezvousRequest, std::string>>{
           {"a worker without a rank", request(idle, "exp1", 1), "token on line 1"},
           {"another attempt", request(a, "exp1", 2), "token on line 1"},
           {"another experiment", request(a, "exp2", 1), "token on line 1"},
           {"another token", request(a, "exp1", 1), "token on line 2"},
           {"an unknown worker", request("w99", "exp1", 1), "token on line 1"},
       }) {
    absl::Status status = pool->Rendezvous(denied, owner).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << what;
    EXPECT_THAT(status.message(), HasSubstr("only the ranks of a running attempt")) << what;
    // The same holds for the spec (and so the uploaded model) of the attempt.
    v1::FetchModelRequest fetch;
    fetch.set_worker_id(denied.worker_id());
    fetch.set_experiment_id(denied.experiment_id());
    fetch.set_attempt(denied.attempt());
    EXPECT_EQ(pool->AssignedSpec(fetch, owner).status().code(), absl::StatusCode::kPermissionDenied)
        << what;
  }
  v1::FetchModelRequest fetch;
  fetch.set_worker_id(a);
  fetch.set_experiment_id("exp1");
  fetch.set_attempt(1);
  absl::StatusOr<v1::ExperimentSpec> spec = pool->AssignedSpec(fetch, "token on line 1");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model(), "simple_cnn");
  EXPECT_EQ(pool->AssignedSpec(v1::FetchModelRequest(), "token on line 1").status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::RendezvousRequest bad = request(a, "exp1", 1);
  bad.set_operation(v1::RendezvousRequest::OPERATION_UNSPECIFIED);
  EXPECT_EQ(pool->Rendezvous(bad, "token on line 1").status().code(),
            absl::StatusCode::kInvalidArgument);
  bad = request(a, "exp1", 1);
  bad.add_keys("second");
  EXPECT_THAT(pool->Rendezvous(bad, "token on line 1").status().message(),
              HasSubstr("takes one key (given: 2)"));

  pool->Release("exp1", 1);
  EXPECT_EQ(pool->Rendezvous(request(a, "exp1", 1), "token on line 1").status().code(),
            absl::StatusCode::kPermissionDenied)
      << "a released attempt's rendezvous is closed";
}

TEST_F(WorkerPoolTest, RegistrationsBeyondMaxWorkersAreRefused) {
  options_.max_workers = 2;
  auto pool = NewPool();
  Register(*pool, "host-a");
  Register(*pool, "host-b");
  absl::Status full = pool->Register(Registration("host-c"), "10.0.0.9", "").status();
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("(2, its --max_workers)"));
  EXPECT_FALSE(Register(*pool, "host-a").empty()) << "a restart replaces, so it fits";
  EXPECT_EQ(pool->Count(), 2);
}

TEST_F(WorkerPoolTest, ARanksErrorIsCutAndItsCodeChecked) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a");
  ASSERT_TRUE(pool->Reserve(Request("exp1", 1, 2)).ok());
  ASSERT_TRUE(Beat(*pool, a).has_assignment());
  v1::RankOutcome failed = Outcome("exp1", 1, absl::InternalError(std::string(100000, 'x')));
  failed.set_code(999);
  Beat(*pool, a, nullptr, &failed);
  std::vector<absl::Status> notes = pool->Release("exp1", 1);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].code(), absl::StatusCode::kUnknown) << "999 is no code";
  EXPECT_LT(notes[0].message().size(), 1200u);
  EXPECT_THAT(notes[0].message(), HasSubstr("(100000 bytes in all)"));
}

TEST_F(WorkerPoolTest, ReservedWorkersGetTheirRanksAtTheNextHeartbeatAndAreIdleAfterReporting) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a");
  const std::string b = Register(*pool, "host-b");
  Register(*pool, "host-c");
  const absl::Status too_many = pool->Reserve(Request("exp1", 1, 5)).status();
  EXPECT_EQ(too_many.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(too_many.message(), "world_size 5 needs 4 idle workers; 3 of 3 registered are idle");
  EXPECT_EQ(pool->IdleCount(), 3) << "nothing reserved";
  ASSERT_TRUE(pool->Reserve(Request("exp1", 1, 3)).ok());
  EXPECT_EQ(pool->IdleCount(), 1);

  const v1::HeartbeatResponse to_a = Beat(*pool, a);
  const v1::HeartbeatResponse to_b = Beat(*pool, b);
  ASSERT_TRUE(to_a.has_assignment());
  ASSERT_TRUE(to_b.has_assignment());
  EXPECT_EQ(to_a.assignment().experiment_id(), "exp1");
  EXPECT_EQ(to_a.assignment().world_size(), 3);
  EXPECT_EQ(to_a.assignment().spec().model(), "simple_cnn");
  EXPECT_EQ(to_a.assignment().rank() + to_b.assignment().rank(), 1 + 2) << "ranks 1 and 2";
  // While they train, heartbeats say so and get nothing new.
  const v1::HeartbeatResponse again = Beat(*pool, a, &to_a.assignment());
  EXPECT_FALSE(again.has_assignment());
  EXPECT_FALSE(again.stop_running());
  EXPECT_EQ(pool->List()[0].experiment_id(), "exp1");

  // The run ends: a has already reported its outcome, b is told to stop and then reports.
  const v1::RankOutcome a_done = Outcome("exp1", 1, absl::OkStatus());
  Beat(*pool, a, nullptr, &a_done);
  EXPECT_EQ(pool->IdleCount(), 2);
  EXPECT_TRUE(pool->Release("exp1", 1).empty());
  EXPECT_TRUE(Beat(*pool, b, &to_b.assignment()).stop_running());
  EXPECT_EQ(pool->IdleCount(), 2) << "b still trains";
  const v1::RankOutcome b_done =
      Outcome("exp1", 1, absl::UnavailableError("1 rank of the group stopped"));
  Beat(*pool, b, nullptr, &b_done);
  EXPECT_EQ(pool->IdleCount(), 3);
  EXPECT_FALSE(Beat(*pool, b, nullptr, &b_done).has_assignment()) << "nothing left for it";
}

TEST_F(WorkerPoolTest, ARanksOwnErrorIsReportedToTheRunThatReleasesIt) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a");
  ASSERT_TRUE(pool->Reserve(Request("exp1", 1, 2)).ok());
  ASSERT_TRUE(Beat(*pool, a).has_assignment());
  const v1::RankOutcome failed =
      Outcome("exp1", 1, absl::FailedPreconditionError("dataset fashion_mnist is not present"));
  Beat(*pool, a, nullptr, &failed);
  std::vector<absl::Status> notes = pool->Release("exp1", 1);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(notes[0].message(), HasSubstr("host-a"));
  EXPECT_THAT(notes[0].message(), HasSubstr("rank 1: dataset fashion_mnist is not present"));
}

TEST_F(WorkerPoolTest, ARankNotYetHandedOutIsTakenBackAtOnce) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a");
  ASSERT_TRUE(pool->Reserve(Request("exp1", 1, 2)).ok());
  EXPECT_EQ(pool->IdleCount(), 0);
  pool->Release("exp1", 1);
  EXPECT_EQ(pool->IdleCount(), 1);
  EXPECT_FALSE(Beat(*pool, a).has_assignment());
}

TEST_F(WorkerPoolTest, ARankOfAnAttemptTheWorkerDoesNotHoldIsStopped) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a");
  v1::RankAssignment stale;
  stale.set_experiment_id("exp1");
  stale.set_attempt(1);
  EXPECT_TRUE(Beat(*pool, a, &stale).stop_running());
}

TEST_F(WorkerPoolTest, ASilentWorkerIsDroppedAndNamedToItsRun) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a");
  const std::string b = Register(*pool, "host-b");
  ASSERT_TRUE(pool->Reserve(Request("exp1", 1, 2)).ok());
  const v1::HeartbeatResponse to_a = Beat(*pool, a);
  ASSERT_TRUE(to_a.has_assignment());
  Advance(absl::Seconds(4));
  Beat(*pool, b);
  Advance(absl::Seconds(2));  // a: 6 s without a heartbeat; b: 2 s
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (pool->Count() != 1 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_EQ(pool->Count(), 1);
  EXPECT_EQ(pool->List()[0].name(), "host-b");
  std::vector<absl::Status> notes = pool->Release("exp1", 1);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(notes[0].message(), HasSubstr("host-a"));
  EXPECT_THAT(notes[0].message(), HasSubstr("sent no heartbeat for 6s"));
  v1::HeartbeatRequest late;
  late.set_worker_id(a);
  EXPECT_EQ(pool->Heartbeat(late, "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(WorkerPoolTest, AWorkerThatRestartsReplacesItsOldEntry) {
  auto pool = NewPool();
  const std::string old_id = Register(*pool, "host-a");
  ASSERT_TRUE(pool->Reserve(Request("exp1", 1, 2)).ok());
  const std::string new_id = Register(*pool, "host-a");
  EXPECT_NE(new_id, old_id);
  EXPECT_EQ(pool->Count(), 1);
  EXPECT_EQ(pool->IdleCount(), 1);
  std::vector<absl::Status> notes = pool->Release("exp1", 1);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_THAT(notes[0].message(), HasSubstr("restarted"));
}

}  // namespace
}  // namespace gradlab
