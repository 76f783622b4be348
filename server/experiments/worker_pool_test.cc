// WorkerPool with a fake clock: registration, heartbeats, ranks handed out and taken back,
// and silent workers dropped.
#include "server/experiments/worker_pool.h"

#include <atomic>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

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

  static std::string Register(WorkerPool& pool, const std::string& name,
                              const std::string& address = "") {
    v1::RegisterWorkerRequest request;
    request.set_name(name);
    request.set_cpus(4);
    request.set_threads_per_job(2);
    request.set_address(address);
    absl::StatusOr<v1::RegisterWorkerResponse> response = pool.Register(request, "10.0.0.9");
    EXPECT_TRUE(response.ok()) << response.status();
    return response->worker_id();
  }

  static v1::HeartbeatResponse Beat(WorkerPool& pool, const std::string& id,
                                    const v1::RankAssignment* running = nullptr,
                                    const v1::RankOutcome* outcome = nullptr) {
    v1::HeartbeatRequest request;
    request.set_worker_id(id);
    if (running != nullptr) *request.mutable_running() = *running;
    if (outcome != nullptr) *request.mutable_last_outcome() = *outcome;
    absl::StatusOr<v1::HeartbeatResponse> response = pool.Heartbeat(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.value_or(v1::HeartbeatResponse());
  }

  static RankRequest Request(const std::string& id, int attempt, int world_size) {
    RankRequest request;
    request.experiment_id = id;
    request.attempt = attempt;
    request.world_size = world_size;
    request.store_port = 50052;
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
  v1::RegisterWorkerRequest request;
  request.set_cpus(0);
  absl::Status status = pool->Register(request, "10.0.0.9").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("cpus >= 1 (given: 0)"));
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_worker_id("w99");
  status = pool->Heartbeat(heartbeat).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("register again"));
}

TEST_F(WorkerPoolTest, ReservedWorkersGetTheirRanksAtTheNextHeartbeatAndAreIdleAfterReporting) {
  auto pool = NewPool();
  const std::string a = Register(*pool, "host-a");
  const std::string b = Register(*pool, "host-b");
  Register(*pool, "host-c");
  const absl::Status too_many = pool->Reserve(Request("exp1", 1, 5));
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
  EXPECT_EQ(to_a.assignment().store_port(), 50052);
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
  EXPECT_EQ(pool->Heartbeat(late).status().code(), absl::StatusCode::kNotFound);
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
