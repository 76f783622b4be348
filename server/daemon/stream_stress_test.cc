// The server's streams under the conditions that break callback reactors: hundreds of
// streams at once against a running experiment, each ending by a 50 ms deadline or by a
// cancel at a random moment (often while a write is in flight), round after round. The
// server must neither crash nor hang nor leak a stream, and must go on serving.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "server/daemon/server.h"

namespace gradlab {
namespace {

constexpr int kStreamsPerRound = 300;
constexpr int kRounds = 10;

// Counts the streams still open and the codes they ended with.
class Outcomes {
 public:
  void Opened() {
    absl::MutexLock lock(&mu_);
    ++open_;
  }
  void Ended(grpc::StatusCode code) {
    absl::MutexLock lock(&mu_);
    --open_;
    ++by_code_[code];
  }
  // False if some stream has not ended within `timeout`.
  bool WaitAllEnded(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](int* open) { return *open == 0; }, &open_),
                                timeout);
  }
  std::map<grpc::StatusCode, int> by_code() {
    absl::MutexLock lock(&mu_);
    return by_code_;
  }

 private:
  absl::Mutex mu_;
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<grpc::StatusCode, int> by_code_ ABSL_GUARDED_BY(mu_);
};

// A client stream the test owns until the round ends, so that cancelling it is always safe.
struct Stream {
  virtual ~Stream() = default;
  grpc::ClientContext context;
};

// Reads everything a server stream sends until it ends; holds its request until then.
template <typename Request, typename Message>
class Reader : public Stream, public grpc::ClientReadReactor<Message> {
 public:
  Reader(Outcomes& outcomes, Request request) : request(std::move(request)), outcomes_(outcomes) {
    outcomes_.Opened();
  }
  void Begin() {
    this->StartRead(&message_);
    this->StartCall();
  }
  void OnReadDone(bool ok) override {
    if (ok) this->StartRead(&message_);
  }
  void OnDone(const grpc::Status& status) override { outcomes_.Ended(status.error_code()); }

  const Request request;

 private:
  Outcomes& outcomes_;
  Message message_;
};

// Opens a stream of `Message`s with `call` (the stub's async method) and a 50 ms deadline.
template <typename Message, typename Request, typename Call>
std::unique_ptr<Stream> Open(Outcomes& outcomes, Request request, Call call) {
  auto reader = std::make_unique<Reader<Request, Message>>(outcomes, std::move(request));
  reader->context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  call(&reader->context, &reader->request, reader.get());
  reader->Begin();
  return reader;
}

class StreamStressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.registry.threads_per_job = 1;
    options.registry.progress_interval = absl::Milliseconds(1);  // a steady flow of events
    options.limits.max_streams_per_client = 0;  // every stream comes from this process
    absl::StatusOr<std::unique_ptr<GradlabServer>> server = GradlabServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::ExperimentService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  }

  std::unique_ptr<GradlabServer> server_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

TEST_F(StreamStressTest, StreamsEndingByDeadlineAndCancelNeitherCrashNorHangTheServer) {
  v1::StartExperimentRequest request;
  request.mutable_spec()->set_model("mlp");
  request.mutable_spec()->set_dataset("synthetic");
  request.mutable_spec()->set_epochs(1000);
  request.mutable_spec()->set_max_train_samples(512);
  request.mutable_spec()->set_max_test_samples(64);
  request.mutable_spec()->set_batch_size(16);
  request.mutable_spec()->set_gradient_every_n_steps(1);
  v1::Experiment running;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->StartExperiment(&context, request, &running).ok());
  }
  std::mt19937 random(42);
  Outcomes outcomes;
  v1::StreamMetricsRequest metrics;
  metrics.set_id(running.id());
  v1::StreamGradientsRequest gradients;
  gradients.set_id(running.id());
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::unique_ptr<Stream>> streams;
    std::vector<grpc::ClientContext*> to_cancel;
    for (int i = 0; i < kStreamsPerRound; ++i) {
      auto* async = stub_->async();
      switch (i % 3) {
        case 0:
          streams.push_back(Open<v1::MetricsEvent>(
              outcomes, metrics, [&](auto* context, auto* request, auto* reactor) {
                async->StreamMetrics(context, request, reactor);
              }));
          break;
        case 1:
          streams.push_back(Open<v1::GradientSnapshot>(
              outcomes, gradients, [&](auto* context, auto* request, auto* reactor) {
                async->StreamGradients(context, request, reactor);
              }));
          break;
        default:
          streams.push_back(Open<v1::Experiment>(outcomes, v1::WatchExperimentsRequest(),
                                                 [&](auto* context, auto* request, auto* reactor) {
                                                   async->WatchExperiments(context, request,
                                                                           reactor);
                                                 }));
          break;
      }
      // Half of them are cancelled by the client too, before or after their deadline.
      if (random() % 2 == 0) to_cancel.push_back(&streams.back()->context);
    }
    // Cancel at random moments over the streams' 50 ms, while they are writing.
    std::shuffle(to_cancel.begin(), to_cancel.end(), random);
    for (grpc::ClientContext* context : to_cancel) {
      absl::SleepFor(absl::Microseconds(random() % 600));
      context->TryCancel();
    }
    ASSERT_TRUE(outcomes.WaitAllEnded(absl::Seconds(60))) << "round " << round;
  }
  for (const auto& [code, count] : outcomes.by_code()) {
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::CANCELLED ||
                code == grpc::StatusCode::DEADLINE_EXCEEDED)
        << count << " streams ended with code " << code;
  }

  // The server goes on serving: the experiment still trains and a new stream reads it.
  grpc::ClientContext get_context;
  v1::GetExperimentRequest get;
  get.set_id(running.id());
  v1::Experiment now;
  ASSERT_TRUE(stub_->GetExperiment(&get_context, get, &now).ok());
  EXPECT_EQ(now.state(), v1::RUNNING);
  grpc::ClientContext stream_context;
  auto stream = stub_->StreamMetrics(&stream_context, metrics);
  v1::MetricsEvent event;
  EXPECT_TRUE(stream->Read(&event));
  stream_context.TryCancel();
  stream->Finish();
  grpc::ClientContext cancel_context;
  v1::CancelExperimentRequest cancel;
  cancel.set_id(running.id());
  ASSERT_TRUE(stub_->CancelExperiment(&cancel_context, cancel, &now).ok());
  EXPECT_EQ(now.state(), v1::CANCELLED);
}

}  // namespace
}  // namespace gradlab
