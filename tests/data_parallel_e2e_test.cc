// End to end: data-parallel experiments (world_size > 1) on the real gradlabd and real
// `gradlabd --worker` processes: over loopback, with workers killed, missing or cancelled,
// and (as root) with the workers in network namespaces of their own, so that the
// rendezvous and the all-reduces cross real interfaces.
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/engine/testing/torchscript_fixtures.h"
#include "tests/testing/child_process.h"
#include "tests/testing/file_bytes.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/metrics_events.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

constexpr char kIp[] = "/bin/ip";  // iproute2's

// simple_cnn on the first `train_samples` Fashion-MNIST images (no BatchNorm, no
// augmentation: equal across world sizes up to float rounding).
v1::StartExperimentRequest Spec(int world_size, int epochs, int train_samples) {
  v1::StartExperimentRequest request;
  v1::ExperimentSpec* spec = request.mutable_spec();
  spec->set_model("simple_cnn");
  spec->set_dataset("fashion_mnist");
  spec->set_epochs(epochs);
  spec->set_max_train_samples(train_samples);
  spec->set_max_test_samples(500);
  spec->set_gradient_every_n_steps(8);
  spec->set_world_size(world_size);
  return request;
}

constexpr char kWriteToken[] = "cluster-write-token-0123456789";
constexpr char kWorkerToken[] = "cluster-worker-token-0123456789";

// A coordinating gradlabd with tokens, its workers (with a worker token, as deployed), and
// a client of it (with a write token).
class Cluster {
 public:
  // `listen_host`: where the coordinator serves gRPC and rank 0 binds its Gloo connections.
  explicit Cluster(const std::string& listen_host = "127.0.0.1") {
    const std::filesystem::path dir = FreshSuiteDir("data_parallel_e2e");
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tokens") << kWriteToken << " write\n" << kWorkerToken << " worker\n";
    worker_token_file_ = (dir / "worker-token").string();
    std::ofstream(worker_token_file_) << kWorkerToken << "\n";
    std::vector<std::string> flags = {"--threads_per_job=1",
                                      "--state_dir=" + (dir / "state").string(),
                                      "--auth_tokens_file=" + (dir / "tokens").string(),
                                      "--advertise_address=" + listen_host,
                                      "--heartbeat_interval=200ms",
                                      "--worker_timeout=2s",
                                      "--collective_timeout=20s",
                                      "--listen=" + listen_host + ":0"};
    if (listen_host != "127.0.0.1") flags.push_back("--allow_insecure_remote");
    absl::StatusOr<GradlabdProcess> started = StartGradlabd(GRADLABD_PATH, flags);
    EXPECT_TRUE(started.ok()) << started.status();
    coordinator_.emplace(*std::move(started));
    address_ =
        listen_host + coordinator_->grpc_address.substr(coordinator_->grpc_address.rfind(':'));
    stub_ = v1::ExperimentService::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  const std::string& address() const { return address_; }

  // gradlabd's /metrics.
  std::string Metrics() {
    httplib::Client http("127.0.0.1", coordinator_->http_port);
    httplib::Result response =
        http.Get("/metrics", {{"Authorization", std::string("Bearer ") + kWriteToken}});
    EXPECT_TRUE(response && response->status == 200);
    return response ? response->body : "";
  }

  // A worker named `name`; `prefix` runs it through another command (ip netns exec NS).
  void StartWorker(const std::string& name, const std::vector<std::string>& prefix = {}) {
    std::vector<std::string> argv = prefix;
    for (const std::string& arg :
         {std::string(GRADLABD_PATH), std::string("--worker"), "--coordinator=" + address_,
          "--worker_name=" + name, "--coordinator_token_file=" + worker_token_file_,
          std::string("--threads_per_job=1")}) {
      argv.push_back(arg);
    }
    absl::StatusOr<ChildProcess> worker = ChildProcess::Start(argv);
    ASSERT_TRUE(worker.ok()) << worker.status();
    workers_.emplace(name, *std::move(worker));
  }

  // SIGTERM, as Kubernetes stops a pod; the worker's exit code.
  std::optional<int> StopWorker(const std::string& name) {
    ChildProcess& worker = workers_.at(name);
    worker.Signal(SIGTERM);
    return worker.Wait(absl::Seconds(30));
  }

  void KillWorker(const std::string& name) {
    ChildProcess& worker = workers_.at(name);
    worker.Signal(SIGKILL);
    EXPECT_TRUE(worker.Wait(absl::Seconds(10)).has_value());
  }

  v1::ServerInfo Info() {
    grpc::ClientContext context;
    Authorize(context);
    v1::ServerInfo info;
    const grpc::Status status = stub_->GetServerInfo(&context, v1::GetServerInfoRequest(), &info);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return info;
  }

  static int Idle(const v1::ServerInfo& info) {
    int idle = 0;
    for (const v1::WorkerInfo& worker : info.registered_workers()) {
      if (worker.experiment_id().empty()) ++idle;
    }
    return idle;
  }

  // Waits until `registered` workers are registered, `idle` of them idle.
  bool WaitForWorkers(int registered, int idle, absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      const v1::ServerInfo info = Info();
      if (info.registered_workers_size() == registered && Idle(info) == idle) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  v1::Experiment Start(const v1::StartExperimentRequest& request) {
    grpc::ClientContext context;
    Authorize(context);
    v1::Experiment experiment;
    const grpc::Status status = stub_->StartExperiment(&context, request, &experiment);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return experiment;
  }

  v1::Experiment Get(const std::string& id) {
    grpc::ClientContext context;
    Authorize(context);
    v1::GetExperimentRequest request;
    request.set_id(id);
    v1::Experiment experiment;
    EXPECT_TRUE(stub_->GetExperiment(&context, request, &experiment).ok());
    return experiment;
  }

  // Uploads the TorchScript file at `path` as `name`.
  void UploadModel(const std::string& path, const std::string& name) {
    const std::string bytes = ReadFileBytes(path);
    grpc::ClientContext context;
    Authorize(context);
    v1::ModelArtifact artifact;
    auto writer = stub_->UploadModel(&context, &artifact);
    v1::UploadModelRequest header;
    header.mutable_header()->set_name(name);
    header.mutable_header()->set_sha256(Sha256Hex(bytes));
    EXPECT_TRUE(writer->Write(header));
    for (size_t at = 0; at < bytes.size(); at += 128 << 10) {  // under --max_request_bytes
      v1::UploadModelRequest chunk;
      chunk.set_chunk(bytes.substr(at, 128 << 10));
      EXPECT_TRUE(writer->Write(chunk));
    }
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  grpc::Status Cancel(const std::string& id, v1::Experiment* experiment) {
    grpc::ClientContext context;
    Authorize(context);
    v1::CancelExperimentRequest request;
    request.set_id(id);
    return stub_->CancelExperiment(&context, request, experiment);
  }

  // Every metrics event of the experiment until it finishes; `on_event` sees each as it
  // comes.
  std::vector<v1::MetricsEvent> Follow(
      const std::string& id, const std::function<void(const v1::MetricsEvent&)>& on_event = {}) {
    grpc::ClientContext context;
    Authorize(context);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(5));
    v1::StreamMetricsRequest request;
    request.set_id(id);
    auto stream = stub_->StreamMetrics(&context, request);
    std::vector<v1::MetricsEvent> events;
    v1::MetricsEvent event;
    while (stream->Read(&event)) {
      events.push_back(event);
      if (on_event) on_event(event);
    }
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return events;
  }

  std::vector<v1::GradientSnapshot> Gradients(const std::string& id) {
    grpc::ClientContext context;
    Authorize(context);
    v1::StreamGradientsRequest request;
    request.set_id(id);
    request.set_follow(false);
    auto stream = stub_->StreamGradients(&context, request);
    std::vector<v1::GradientSnapshot> snapshots;
    v1::GradientSnapshot snapshot;
    while (stream->Read(&snapshot)) snapshots.push_back(snapshot);
    EXPECT_TRUE(stream->Finish().ok());
    return snapshots;
  }

 private:
  static void Authorize(grpc::ClientContext& context) {
    context.AddMetadata("authorization", std::string("Bearer ") + kWriteToken);
  }

  std::string worker_token_file_;
  std::optional<GradlabdProcess> coordinator_;
  std::string address_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
  std::map<std::string, ChildProcess> workers_;
};

// The largest difference between the runs' losses and accuracies, epoch by epoch; fails
// when they differ by more than float rounding (losses) or one sample (accuracies).
double ExpectSameEpochs(const std::vector<v1::EpochMetrics>& a,
                        const std::vector<v1::EpochMetrics>& b, int train_samples) {
  EXPECT_EQ(a.size(), b.size());
  double largest = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].epoch(), b[i].epoch());
    EXPECT_NEAR(a[i].train_loss(), b[i].train_loss(), 1e-5) << "epoch " << a[i].epoch();
    EXPECT_NEAR(a[i].test_loss(), b[i].test_loss(), 1e-5) << "epoch " << a[i].epoch();
    EXPECT_NEAR(a[i].train_accuracy(), b[i].train_accuracy(), 1.0 / train_samples);
    EXPECT_NEAR(a[i].test_accuracy(), b[i].test_accuracy(), 1.0 / 500);
    for (double difference :
         {a[i].train_loss() - b[i].train_loss(), a[i].test_loss() - b[i].test_loss(),
          a[i].train_accuracy() - b[i].train_accuracy(),
          a[i].test_accuracy() - b[i].test_accuracy()}) {
      largest = std::max(largest, std::abs(difference));
    }
  }
  return largest;
}

TEST(DataParallelE2eTest, WorldSizeTwoTrainsLikeWorldSizeOneAndStreamsAsUsual) {
  Cluster cluster;
  cluster.StartWorker("worker-a");
  ASSERT_TRUE(cluster.WaitForWorkers(1, 1));
  const v1::ServerInfo info = cluster.Info();
  EXPECT_EQ(info.registered_workers(0).name(), "worker-a");
  EXPECT_EQ(info.registered_workers(0).address(), "127.0.0.1");
  EXPECT_GE(info.registered_workers(0).cpus(), 1);
  EXPECT_EQ(info.registered_workers(0).threads_per_job(), 1);
  EXPECT_THAT(cluster.Metrics(), HasSubstr("\ngradlab_registered_workers{state=\"idle\"} 1\n"
                                           "gradlab_registered_workers{state=\"training\"} 0\n"));

  const v1::Experiment one = cluster.Start(Spec(1, 2, 2000));
  const v1::Experiment two = cluster.Start(Spec(2, 2, 2000));
  EXPECT_EQ(two.spec().world_size(), 2);
  const std::vector<v1::MetricsEvent> one_events = cluster.Follow(one.id());
  bool saw_rank = false;
  const std::vector<v1::MetricsEvent> two_events =
      cluster.Follow(two.id(), [&](const v1::MetricsEvent& event) {
        if (saw_rank || !event.has_batch_progress()) return;
        const v1::ServerInfo during = cluster.Info();
        saw_rank = during.registered_workers(0).experiment_id() == two.id() &&
                   during.registered_workers(0).rank() == 1;
      });
  EXPECT_EQ(cluster.Get(two.id()).state(), v1::SUCCEEDED) << StateChanges(two_events);
  EXPECT_TRUE(saw_rank) << "GetServerInfo shows the worker training rank 1 of the run";
  const double largest = ExpectSameEpochs(Epochs(one_events), Epochs(two_events), 2000);
  std::cout << "world_size 2 against 1: largest difference in epoch metrics " << largest << "\n";
  // Rank 0 streams the gradient snapshots, as a run of one process does.
  const std::vector<v1::GradientSnapshot> snapshots = cluster.Gradients(two.id());
  ASSERT_FALSE(snapshots.empty());
  EXPECT_EQ(snapshots.front().step(), 1);
  EXPECT_EQ(snapshots.size(), cluster.Gradients(one.id()).size());
  EXPECT_TRUE(cluster.WaitForWorkers(1, 1, absl::Seconds(5))) << "the worker is idle again";
}

// An uploaded model trains data-parallel as a built-in one does: the worker fetches the
// file from the coordinator (and checks it against its id) before its rank starts. A
// traced copy of simple_cnn for Fashion-MNIST, world_size 2 against 1.
TEST(DataParallelE2eTest, AnUploadedModelTrainsOnWorkersThatFetchItFromTheCoordinator) {
  Cluster cluster;
  cluster.StartWorker("worker-a");
  ASSERT_TRUE(cluster.WaitForWorkers(1, 1));
  cluster.UploadModel(TorchScriptFixture("simple_cnn_fashion.pt"), "fashion_cnn");
  v1::StartExperimentRequest alone = Spec(1, 2, 1000);
  alone.mutable_spec()->set_model("uploaded:fashion_cnn");
  v1::StartExperimentRequest together = alone;
  together.mutable_spec()->set_world_size(2);
  const v1::Experiment one = cluster.Start(alone);
  const v1::Experiment two = cluster.Start(together);
  const std::vector<v1::MetricsEvent> one_events = cluster.Follow(one.id());
  const std::vector<v1::MetricsEvent> two_events = cluster.Follow(two.id());
  EXPECT_EQ(cluster.Get(two.id()).state(), v1::SUCCEEDED) << StateChanges(two_events);
  const double largest = ExpectSameEpochs(Epochs(one_events), Epochs(two_events), 1000);
  std::cout << "uploaded model, world_size 2 against 1: largest difference " << largest << "\n";
  EXPECT_TRUE(cluster.WaitForWorkers(1, 1, absl::Seconds(5))) << "the worker is idle again";
}

TEST(DataParallelE2eTest, AWorkerKilledMidEpochRequeuesTheRunWhichFinishesFromItsCheckpoint) {
  constexpr int kSamples = 4000;
  Cluster cluster;
  cluster.StartWorker("worker-a");
  cluster.StartWorker("worker-b");
  ASSERT_TRUE(cluster.WaitForWorkers(2, 2));
  // What the run gives when nothing goes wrong.
  const v1::Experiment reference = cluster.Start(Spec(3, 3, kSamples));
  const std::vector<v1::MetricsEvent> reference_events = cluster.Follow(reference.id());
  ASSERT_EQ(cluster.Get(reference.id()).state(), v1::SUCCEEDED) << StateChanges(reference_events);
  ASSERT_TRUE(cluster.WaitForWorkers(2, 2, absl::Seconds(5)));

  const v1::Experiment run = cluster.Start(Spec(3, 3, kSamples));
  bool killed = false;
  const std::vector<v1::MetricsEvent> events =
      cluster.Follow(run.id(), [&](const v1::MetricsEvent& event) {
        if (!killed && event.has_batch_progress() && event.batch_progress().epoch() == 2 &&
            event.batch_progress().batch() < event.batch_progress().batches()) {
          cluster.KillWorker("worker-b");
          killed = true;
        }
        if (event.has_state_change() && event.state_change().state() == v1::QUEUED &&
            absl::StrContains(event.state_change().reason(), "lost")) {
          // The coordinator keeps serving and drops the dead worker; a new one comes.
          EXPECT_TRUE(cluster.WaitForWorkers(1, 1, absl::Seconds(10)));
          cluster.StartWorker("worker-c");
        }
      });
  ASSERT_TRUE(killed) << StateChanges(events);
  const std::string changes = StateChanges(events);
  EXPECT_EQ(cluster.Get(run.id()).state(), v1::SUCCEEDED) << changes;
  EXPECT_THAT(changes, HasSubstr("QUEUED: a rank was lost: "));
  EXPECT_THAT(changes, HasSubstr("queued again to go on from the checkpoint of epoch 1 when 2 "
                                 "idle workers are available"));
  EXPECT_THAT(changes,
              HasSubstr("RUNNING: attempt 2 goes on from the checkpoint of epoch 1 after a rank "
                        "was lost"));
  // Epoch 1 from the first attempt, 2 and 3 from the second: those of the run that was
  // never interrupted.
  const double largest = ExpectSameEpochs(Epochs(reference_events), Epochs(events), kSamples);
  std::cout << "requeued run against an uninterrupted one: largest difference " << largest << "\n"
            << changes;
}

TEST(DataParallelE2eTest, ARunWaitsForWorkersThatNeverComeAndCanBeCancelled) {
  Cluster cluster;
  const v1::Experiment waiting = cluster.Start(Spec(2, 1, 500));
  EXPECT_EQ(waiting.state(), v1::QUEUED);
  EXPECT_EQ(waiting.queue_position(), 1);
  // Experiments that can run do, meanwhile.
  const v1::Experiment alone = cluster.Start(Spec(1, 1, 500));
  cluster.Follow(alone.id());
  EXPECT_EQ(cluster.Get(alone.id()).state(), v1::SUCCEEDED);
  EXPECT_EQ(cluster.Get(waiting.id()).state(), v1::QUEUED);

  v1::Experiment cancelled;
  ASSERT_TRUE(cluster.Cancel(waiting.id(), &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::CANCELLED);
  const std::string changes = StateChanges(cluster.Follow(waiting.id()));
  EXPECT_THAT(changes, HasSubstr("QUEUED: queued at position 1; needs 1 idle worker, 0 of 0 "
                                 "registered are idle now"));
  EXPECT_THAT(changes, HasSubstr("CANCELLED: cancelled by request while queued"));
}

TEST(DataParallelE2eTest, CancellingARunStopsEveryRankWithinABatch) {
  Cluster cluster;
  cluster.StartWorker("worker-a");
  ASSERT_TRUE(cluster.WaitForWorkers(1, 1));
  const v1::Experiment run = cluster.Start(Spec(2, 20, 20000));
  bool cancelled = false;
  const std::vector<v1::MetricsEvent> events =
      cluster.Follow(run.id(), [&](const v1::MetricsEvent& event) {
        if (cancelled || !event.has_batch_progress()) return;
        v1::Experiment answer;
        const grpc::Status status = cluster.Cancel(run.id(), &answer);
        EXPECT_TRUE(status.ok()) << status.error_message();
        EXPECT_EQ(answer.state(), v1::CANCELLED);
        cancelled = true;
      });
  ASSERT_TRUE(cancelled);
  EXPECT_THAT(StateChanges(events),
              HasSubstr("CANCELLED: cancelled by request: cancelled in epoch 1 at batch"));
  // The worker's rank stopped in the same step and it is free for the next run.
  EXPECT_TRUE(cluster.WaitForWorkers(1, 1, absl::Seconds(5)));
}

TEST(DataParallelE2eTest, AWorkerThatShutsDownStopsItsRankAndTheRunWaitsForAnother) {
  Cluster cluster;
  cluster.StartWorker("worker-a");
  ASSERT_TRUE(cluster.WaitForWorkers(1, 1));
  const v1::Experiment run = cluster.Start(Spec(2, 20, 20000));
  std::optional<int> exit_code;
  bool requeued = false;
  cluster.Follow(run.id(), [&](const v1::MetricsEvent& event) {
    if (!exit_code.has_value() && event.has_batch_progress()) {
      exit_code = cluster.StopWorker("worker-a");
    }
    if (!requeued && event.has_state_change() && event.state_change().state() == v1::QUEUED &&
        exit_code.has_value()) {
      requeued = true;
      EXPECT_THAT(event.state_change().reason(),
                  HasSubstr("a rank was lost: 1 rank of the group stopped in epoch 1 at batch"));
      v1::Experiment cancelled;
      EXPECT_TRUE(cluster.Cancel(run.id(), &cancelled).ok());
    }
  });
  EXPECT_EQ(exit_code, 0) << "the worker exits cleanly after stopping its rank";
  EXPECT_TRUE(requeued);
  EXPECT_EQ(cluster.Get(run.id()).state(), v1::CANCELLED);
}

// Runs `command`; false (with its output logged) when it fails.
bool RunOk(const std::vector<std::string>& command) {
  const CommandResult result = RunCommand(command);
  if (result.exit_code != 0) {
    std::cerr << absl::StrJoin(command, " ") << ": exit " << result.exit_code << ": " << result.out
              << "\n";
  }
  return result.exit_code == 0;
}

// Bytes a namespace's interface has sent and received.
int64_t InterfaceBytes(const std::string& netns, const std::string& interface) {
  int64_t total = 0;
  for (const char* direction : {"rx_bytes", "tx_bytes"}) {
    const CommandResult result =
        RunCommand({kIp, "netns", "exec", netns, "cat",
                    absl::StrCat("/sys/class/net/", interface, "/statistics/", direction)});
    int64_t bytes = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(result.out), &bytes)) total += bytes;
  }
  return total;
}

// Two workers on hosts of their own: network namespaces joined to this one by veth pairs
// on a bridge, with addresses of a private subnet.
class SeparateHostsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "SKIPPED: network namespaces need root";
    if (access(kIp, X_OK) != 0) GTEST_SKIP() << "SKIPPED: no " << kIp << " (iproute2)";
    suffix_ = std::to_string(getpid() % 100000);
    bridge_ = "glbr" + suffix_;
    if (!RunOk({kIp, "link", "add", bridge_, "type", "bridge"})) {
      GTEST_SKIP() << "SKIPPED: cannot create network devices here (no CAP_NET_ADMIN?)";
    }
    ASSERT_TRUE(RunOk({kIp, "addr", "add", "10.231.0.1/24", "dev", bridge_}));
    ASSERT_TRUE(RunOk({kIp, "link", "set", bridge_, "up"}));
    for (int host = 1; host <= 2; ++host) {
      const std::string netns = Netns(host);
      const std::string veth = absl::StrCat("glv", host, "_", suffix_);
      if (!RunOk({kIp, "netns", "add", netns})) {
        GTEST_SKIP() << "SKIPPED: cannot create network namespaces here";
      }
      namespaces_.push_back(netns);
      ASSERT_TRUE(RunOk(
          {kIp, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns}));
      ASSERT_TRUE(RunOk({kIp, "link", "set", veth, "master", bridge_, "up"}));
      ASSERT_TRUE(RunOk({kIp, "-n", netns, "addr", "add",
                         absl::StrCat("10.231.0.", host + 1, "/24"), "dev", "eth0"}));
      ASSERT_TRUE(RunOk({kIp, "-n", netns, "link", "set", "eth0", "up"}));
      ASSERT_TRUE(RunOk({kIp, "-n", netns, "link", "set", "lo", "up"}));
    }
  }

  void TearDown() override {
    for (const std::string& netns : namespaces_) RunOk({kIp, "netns", "del", netns});
    if (!bridge_.empty()) RunCommand({kIp, "link", "del", bridge_});
  }

  std::string Netns(int host) const { return absl::StrCat("gradlab-host", host, "-", suffix_); }

  std::string suffix_;
  std::string bridge_;
  std::vector<std::string> namespaces_;
};

TEST_F(SeparateHostsTest, WorkersInTheirOwnNetworkNamespacesTrainWithTheCoordinator) {
  Cluster cluster("10.231.0.1");
  cluster.StartWorker("host1", {kIp, "netns", "exec", Netns(1)});
  cluster.StartWorker("host2", {kIp, "netns", "exec", Netns(2)});
  ASSERT_TRUE(cluster.WaitForWorkers(2, 2));
  std::set<std::string> addresses;
  const v1::ServerInfo info = cluster.Info();
  for (const v1::WorkerInfo& worker : info.registered_workers()) {
    addresses.insert(worker.address());
  }
  EXPECT_EQ(addresses, (std::set<std::string>{"10.231.0.2", "10.231.0.3"}));
  const int64_t bytes_before = InterfaceBytes(Netns(1), "eth0");

  const v1::Experiment run = cluster.Start(Spec(3, 1, 1000));
  const std::vector<v1::MetricsEvent> events = cluster.Follow(run.id());
  EXPECT_EQ(cluster.Get(run.id()).state(), v1::SUCCEEDED) << StateChanges(events);
  ASSERT_EQ(Epochs(events).size(), 1u);
  // simple_cnn's gradients are about 0.7 MB (175,000 floats); each of the 8 steps
  // all-reduces them through host1's interface. At least 2 MB must have crossed it.
  const int64_t crossed = InterfaceBytes(Netns(1), "eth0") - bytes_before;
  std::cout << "host1's interface carried " << crossed << " bytes\n";
  EXPECT_GT(crossed, 8 * 250'000);
}

}  // namespace
}  // namespace gradlab
