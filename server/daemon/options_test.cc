#include "server/daemon/options.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

constexpr int kCpus = 8;

// Three quarters of what the machine (or its cgroup) allows, less the server's own, shared
// among the trainings that run at once.
TEST(OptionsTest, TheMemoryBudgetComesFromTheMachineUnlessSet) {
  const MachineMemory memory{int64_t{24} << 30, int64_t{192} << 20};
  const int64_t budget = (int64_t{18} << 30) - (int64_t{192} << 20);
  GradlabdFlags flags;
  flags.workers = 2;
  absl::StatusOr<ServerOptions> options = ServerOptionsFrom(flags, kCpus, memory);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->registry.memory_budget, budget);
  EXPECT_EQ(options->registry.max_run_memory, budget / 2);

  flags.max_run_memory = "6GiB";
  EXPECT_EQ(ServerOptionsFrom(flags, kCpus, memory)->registry.max_run_memory, int64_t{6} << 30);
  EXPECT_EQ(ServerOptionsFrom(flags, kCpus, memory)->registry.memory_budget, budget);
  flags.max_run_memory = "0";
  EXPECT_EQ(ServerOptionsFrom(flags, kCpus, memory)->registry.max_run_memory, 0);
  EXPECT_EQ(ServerOptionsFrom(flags, kCpus, memory)->registry.memory_budget, 0);
  flags.max_run_memory = "lots";
  EXPECT_THAT(std::string(ServerOptionsFrom(flags, kCpus, memory).status().message()),
              HasSubstr("--max_run_memory: \"lots\" is not a size"));

  // Not known (no /proc): no limit unless one is set.
  flags.max_run_memory = "";
  EXPECT_EQ(ServerOptionsFrom(flags, kCpus)->registry.max_run_memory, 0);
  // A server that already holds most of it says so.
  absl::StatusOr<ServerOptions> full =
      ServerOptionsFrom(flags, kCpus, MachineMemory{int64_t{1} << 30, int64_t{900} << 20});
  EXPECT_THAT(std::string(full.status().message()),
              HasSubstr("--max_run_memory: gradlabd already holds 900 MiB, more than three "
                        "quarters of the 1.0 GiB it may use"));
}

TEST(OptionsTest, TheDefaultsMakeALocalServerThatSharesTheCpusAmongItsTrainings) {
  absl::StatusOr<ServerOptions> options = ServerOptionsFrom(GradlabdFlags(), kCpus);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->listen, "127.0.0.1:50051");
  EXPECT_EQ(options->registry.training_slots, 1);
  EXPECT_EQ(options->registry.threads_per_job, kCpus);
  EXPECT_TRUE(options->registry.keep_checkpoints.last);
  EXPECT_TRUE(options->registry.keep_checkpoints.best);

  GradlabdFlags flags;
  flags.workers = 3;
  EXPECT_EQ(ServerOptionsFrom(flags, kCpus)->registry.threads_per_job, 2);  // 8 / 3
  EXPECT_EQ(ServerOptionsFrom(flags, kCpus)->registry.training_slots, 3);
}

struct BadFlags {
  const char* label;
  std::function<void(GradlabdFlags&)> set;
  const char* message;  // what the error says, naming the flag
};

void PrintTo(const BadFlags& bad, std::ostream* out) { *out << bad.label; }

class BadFlagsTest : public ::testing::TestWithParam<BadFlags> {};

TEST_P(BadFlagsTest, AreRefusedNamingTheFlagAndWhatItAllows) {
  GradlabdFlags flags;
  GetParam().set(flags);
  absl::StatusOr<ServerOptions> options = ServerOptionsFrom(flags, kCpus);
  ASSERT_FALSE(options.ok());
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(options.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadFlagsTest,
    ::testing::Values(
        BadFlags{"no_workers", [](GradlabdFlags& f) { f.workers = 0; },
                 "--workers: 0 is out of range [1, 8]"},
        BadFlags{"more_workers_than_cpus", [](GradlabdFlags& f) { f.workers = 9; },
                 "--workers: 9 is out of range [1, 8]"},
        BadFlags{"threads_times_workers",
                 [](GradlabdFlags& f) {
                   f.workers = 2;
                   f.threads_per_job = 5;
                 },
                 "--threads_per_job: 5 x 2 workers is more than the 8 CPUs"},
        BadFlags{"negative_threads", [](GradlabdFlags& f) { f.threads_per_job = -1; },
                 "--threads_per_job: -1"},
        BadFlags{"short_heartbeat_timeout",
                 [](GradlabdFlags& f) { f.worker_timeout = absl::Milliseconds(1500); },
                 "--worker_timeout (1.5s) at least twice that"},
        BadFlags{"max_workers", [](GradlabdFlags& f) { f.max_workers = 0; },
                 "--max_workers: 0 must be at least 1"},
        BadFlags{"keep_checkpoints", [](GradlabdFlags& f) { f.keep_checkpoints = "first"; },
                 "--keep_checkpoints: \"first\" is not one of"},
        BadFlags{"niceness", [](GradlabdFlags& f) { f.training_niceness = 20; },
                 "--training_niceness: 20 is out of range [0, 19]"},
        BadFlags{"max_queue", [](GradlabdFlags& f) { f.max_queue = 0; },
                 "--max_queue: 0 must be 1 or more (with no room in the queue, every experiment "
                 "would be refused)"},
        BadFlags{"client_ca_alone", [](GradlabdFlags& f) { f.tls_client_ca = "ca.pem"; },
                 "--tls_client_ca needs --tls_cert and --tls_key"},
        BadFlags{"stream_limit", [](GradlabdFlags& f) { f.max_streams_per_client = -1; },
                 "--max_streams_per_client and --max_starts_per_minute must be 0"},
        BadFlags{"open_to_the_network", [](GradlabdFlags& f) { f.listen = "0.0.0.0:50051"; },
                 "--listen=0.0.0.0:50051 can be reached from other machines"},
        BadFlags{"http_open_to_the_network",
                 [](GradlabdFlags& f) { f.http_listen = "192.0.2.1:8080"; },
                 "--http_listen=192.0.2.1:8080 can be reached from other machines"},
        BadFlags{"listen_without_port", [](GradlabdFlags& f) { f.listen = "localhost"; },
                 "--listen"},
        BadFlags{"small_requests", [](GradlabdFlags& f) { f.max_request_bytes = 100; },
                 "--max_request_bytes: 100 must be at least 1024"}));

TEST(OptionsTest, AnAddressOthersCanReachIsAllowedWithTokensTlsOrAnExplicitChoice) {
  GradlabdFlags flags;
  flags.listen = "0.0.0.0:50051";
  flags.http_listen = "";
  flags.allow_insecure_remote = true;
  EXPECT_TRUE(ServerOptionsFrom(flags, kCpus).ok());
  flags.allow_insecure_remote = false;
  flags.auth_tokens_file = "tokens.txt";  // read when the server starts
  EXPECT_TRUE(ServerOptionsFrom(flags, kCpus).ok());
  flags.listen = "unix:/tmp/gradlabd.sock";
  flags.auth_tokens_file = "";
  EXPECT_TRUE(ServerOptionsFrom(flags, kCpus).ok());
}

// TLS encrypts; it does not say who may call. Other machines need tokens or certificates.
TEST(OptionsTest, TlsAloneOnAnAddressOthersCanReachIsRefusedSayingWhy) {
  GradlabdFlags flags;
  flags.listen = "0.0.0.0:50051";
  flags.http_listen = "";
  flags.tls_cert = "server.pem";  // read when the server starts
  flags.tls_key = "server.key";
  absl::StatusOr<ServerOptions> options = ServerOptionsFrom(flags, kCpus);
  ASSERT_FALSE(options.ok());
  EXPECT_THAT(std::string(options.status().message()),
              HasSubstr("--listen=0.0.0.0:50051 can be reached from other machines, and with TLS "
                        "alone (it encrypts the traffic but does not say who may call)"));
  flags.tls_client_ca = "ca.pem";
  EXPECT_TRUE(ServerOptionsFrom(flags, kCpus).ok());
  flags.tls_client_ca = "";
  flags.auth_tokens_file = "tokens.txt";
  EXPECT_TRUE(ServerOptionsFrom(flags, kCpus).ok());
}

TEST(OptionsTest, KeepCheckpointsTakesLastBestBothOrNone) {
  GradlabdFlags flags;
  flags.keep_checkpoints = "best";
  KeepCheckpoints keep = ServerOptionsFrom(flags, kCpus)->registry.keep_checkpoints;
  EXPECT_FALSE(keep.last);
  EXPECT_TRUE(keep.best);
  flags.keep_checkpoints = "none";
  keep = ServerOptionsFrom(flags, kCpus)->registry.keep_checkpoints;
  EXPECT_FALSE(keep.last || keep.best);
}

TEST(OptionsTest, AWorkerNeedsItsCoordinatorAndAReadableToken) {
  GradlabdFlags flags;
  absl::StatusOr<WorkerAgentOptions> worker = WorkerOptionsFrom(flags, kCpus);
  ASSERT_FALSE(worker.ok());
  EXPECT_THAT(std::string(worker.status().message()), HasSubstr("--worker needs --coordinator"));

  flags.coordinator = "10.0.0.1:50051";
  worker = WorkerOptionsFrom(flags, kCpus);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_EQ(worker->threads_per_job, kCpus);
  EXPECT_FALSE(worker->name.empty());  // the hostname

  flags.coordinator_token_file = "/nonexistent/token";
  worker = WorkerOptionsFrom(flags, kCpus);
  ASSERT_FALSE(worker.ok());
  EXPECT_THAT(std::string(worker.status().message()),
              HasSubstr("--coordinator_token_file: cannot read a token from /nonexistent/token"));

  const std::string token_file =
      (std::filesystem::path(::testing::TempDir()) / "worker_token").string();
  std::ofstream(token_file) << "  secret-token\n";
  flags.coordinator_token_file = token_file;
  worker = WorkerOptionsFrom(flags, kCpus);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_EQ(worker->token, "secret-token");
}

}  // namespace
}  // namespace gradlab
