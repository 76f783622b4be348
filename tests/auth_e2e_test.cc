// End to end with tokens: the real gradlabd with --auth_tokens_file, every RPC against
// every kind of caller (table-driven, over a real channel), the HTTP side, and the CLI;
// and the per-client limits.
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "gradlab/v1/worker_service.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/raw_call.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

constexpr char kReadToken[] = "read-token-0123456789abcdef";
constexpr char kWriteToken[] = "write-token-0123456789abcdef";
constexpr char kWorkerToken[] = "worker-token-0123456789abcdef";
constexpr char kOtherWorkerToken[] = "other-worker-token-0123456789abcdef";

// Runs a binary; its exit code and everything it wrote (stdout and stderr).
CommandResult RunWithStderr(std::vector<std::string> argv,
                            const std::vector<std::string>& env = {}) {
  argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1"});
  return RunCommand(argv, env, absl::Seconds(60));
}

class AuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::filesystem::path dir = FreshSuiteDir("auth_e2e");
    std::filesystem::create_directories(dir);
    tokens_file_ = new std::string((dir / "tokens").string());
    std::ofstream(*tokens_file_) << "# who may do what\n"
                                 << kReadToken << " read\n"
                                 << kWriteToken << " write\n"
                                 << kWorkerToken << " worker\n"
                                 << kOtherWorkerToken << " worker\n";
    absl::StatusOr<GradlabdProcess> server = StartGradlabd(
        GRADLABD_PATH, {"--threads_per_job=1", "--state_dir=" + (dir / "state").string(),
                        "--auth_tokens_file=" + *tokens_file_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = new GradlabdProcess(*std::move(server));
    address_ = &server_->grpc_address;
    http_port_ = server_->http_port;
  }

  static void TearDownTestSuite() {
    delete server_;
    delete tokens_file_;
  }

  void SetUp() override {
    channel_ = grpc::CreateChannel(*address_, grpc::InsecureChannelCredentials());
    stub_ = v1::ExperimentService::NewStub(channel_);
  }

  // A context carrying `authorization` (none when empty).
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& authorization) {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!authorization.empty()) context->AddMetadata("authorization", authorization);
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return context;
  }

  // A finished experiment, started with the write token.
  std::string FinishedExperiment() {
    v1::StartExperimentRequest request;
    request.mutable_spec()->set_model("mlp");
    request.mutable_spec()->set_dataset("synthetic");
    request.mutable_spec()->set_epochs(1);
    request.mutable_spec()->set_max_train_samples(128);
    request.mutable_spec()->set_max_test_samples(32);
    v1::Experiment experiment;
    EXPECT_TRUE(stub_
                    ->StartExperiment(Context(std::string("Bearer ") + kWriteToken).get(), request,
                                      &experiment)
                    .ok());
    v1::StreamMetricsRequest follow;
    follow.set_id(experiment.id());
    auto context = Context(std::string("Bearer ") + kReadToken);
    auto stream = stub_->StreamMetrics(context.get(), follow);
    for (v1::MetricsEvent event; stream->Read(&event);) {
    }
    EXPECT_TRUE(stream->Finish().ok());
    return experiment.id();
  }

  // A sweep of one such run, followed to its end over StreamSweep.
  std::string FinishedSweep() {
    v1::StartSweepRequest request;
    v1::ExperimentSpec& base = *request.mutable_sweep()->mutable_base();
    base.set_model("mlp");
    base.set_dataset("synthetic");
    base.set_epochs(1);
    base.set_max_train_samples(128);
    base.set_max_test_samples(32);
    v1::Sweep sweep;
    EXPECT_TRUE(
        stub_->StartSweep(Context(std::string("Bearer ") + kWriteToken).get(), request, &sweep)
            .ok());
    v1::StreamSweepRequest follow;
    follow.set_id(sweep.id());
    auto context = Context(std::string("Bearer ") + kReadToken);
    auto stream = stub_->StreamSweep(context.get(), follow);
    for (v1::Sweep update; stream->Read(&update);) sweep = update;
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_EQ(sweep.state(), v1::SUCCEEDED);
    return sweep.id();
  }

  template <typename Response>
  static grpc::StatusCode ReadStream(std::unique_ptr<grpc::ClientReader<Response>> reader) {
    for (Response response; reader->Read(&response);) {
    }
    return reader->Finish().error_code();
  }

  static GradlabdProcess* server_;
  static const std::string* address_;  // the server's
  static std::string* tokens_file_;
  static int http_port_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

GradlabdProcess* AuthTest::server_ = nullptr;
const std::string* AuthTest::address_ = nullptr;
std::string* AuthTest::tokens_file_ = nullptr;
int AuthTest::http_port_ = 0;

TEST_F(AuthTest, EveryRpcAgainstEveryKindOfCaller) {
  const std::string id = FinishedExperiment();
  const std::string sweep_id = FinishedSweep();
  // Each RPC, called with an authorization header; returns its status code. Write calls
  // aim at what cannot change anything when allowed (an unknown id, a finished run).
  using Call = std::function<grpc::StatusCode(const std::string& authorization)>;
  enum Needs { kRead, kWrite, kWorker };
  struct Rpc {
    std::string name;
    Needs needs;
    Call call;
  };
  v1::ExperimentService::Stub& stub = *stub_;
  const std::vector<Rpc> rpcs = {
      {"StartExperiment", kWrite,
       [&](const std::string& a) {
         v1::StartExperimentRequest request;  // invalid spec: refused after authorization
         request.mutable_spec()->set_model("no_such_model");
         v1::Experiment response;
         return stub.StartExperiment(Context(a).get(), request, &response).error_code();
       }},
      {"CancelExperiment", kWrite,
       [&](const std::string& a) {
         v1::CancelExperimentRequest request;
         request.set_id(id);
         v1::Experiment response;
         return stub.CancelExperiment(Context(a).get(), request, &response).error_code();
       }},
      {"DeleteExperiment", kWrite,
       [&](const std::string& a) {
         v1::DeleteExperimentRequest request;
         request.set_id("nosuchid");
         v1::DeleteExperimentResponse response;
         return stub.DeleteExperiment(Context(a).get(), request, &response).error_code();
       }},
      {"ExportModel", kWrite,
       [&](const std::string& a) {
         v1::ExportModelRequest request;
         request.set_id(id);
         auto context = Context(a);
         return ReadStream(stub.ExportModel(context.get(), request));
       }},
      {"UploadModel", kWrite,
       [&](const std::string& a) {
         auto context = Context(a);
         v1::ModelArtifact response;
         auto writer = stub.UploadModel(context.get(), &response);
         v1::UploadModelRequest headless;  // no header: refused after authorization
         headless.set_chunk("abc");
         writer->Write(headless);
         writer->WritesDone();
         return writer->Finish().error_code();
       }},
      {"DeleteModel", kWrite,
       [&](const std::string& a) {
         v1::DeleteModelRequest request;
         request.set_id("nosuchmodel");
         v1::DeleteModelResponse response;
         return stub.DeleteModel(Context(a).get(), request, &response).error_code();
       }},
      {"ListModels", kRead,
       [&](const std::string& a) {
         v1::ListModelsResponse response;
         return stub.ListModels(Context(a).get(), v1::ListModelsRequest(), &response).error_code();
       }},
      {"StartSweep", kWrite,
       [&](const std::string& a) {
         v1::StartSweepRequest request;  // no axis field: refused after authorization
         request.mutable_sweep()->add_axes();
         v1::Sweep response;
         return stub.StartSweep(Context(a).get(), request, &response).error_code();
       }},
      {"CancelSweep", kWrite,
       [&](const std::string& a) {
         v1::CancelSweepRequest request;
         request.set_id("nosuchid");
         v1::Sweep response;
         return stub.CancelSweep(Context(a).get(), request, &response).error_code();
       }},
      {"DeleteSweep", kWrite,
       [&](const std::string& a) {
         v1::DeleteSweepRequest request;
         request.set_id("nosuchid");
         v1::DeleteSweepResponse response;
         return stub.DeleteSweep(Context(a).get(), request, &response).error_code();
       }},
      {"ListSweeps", kRead,
       [&](const std::string& a) {
         v1::ListSweepsResponse response;
         return stub.ListSweeps(Context(a).get(), v1::ListSweepsRequest(), &response).error_code();
       }},
      {"GetSweep", kRead,
       [&](const std::string& a) {
         v1::GetSweepRequest request;
         request.set_id(sweep_id);
         v1::Sweep response;
         return stub.GetSweep(Context(a).get(), request, &response).error_code();
       }},
      {"StreamSweep", kRead,
       [&](const std::string& a) {
         v1::StreamSweepRequest request;
         request.set_id(sweep_id);
         auto context = Context(a);
         return ReadStream(stub.StreamSweep(context.get(), request));
       }},
      {"GetExperiment", kRead,
       [&](const std::string& a) {
         v1::GetExperimentRequest request;
         request.set_id(id);
         v1::Experiment response;
         return stub.GetExperiment(Context(a).get(), request, &response).error_code();
       }},
      {"ListExperiments", kRead,
       [&](const std::string& a) {
         v1::ListExperimentsResponse response;
         return stub.ListExperiments(Context(a).get(), v1::ListExperimentsRequest(), &response)
             .error_code();
       }},
      {"GetServerInfo", kRead,
       [&](const std::string& a) {
         v1::ServerInfo response;
         return stub.GetServerInfo(Context(a).get(), v1::GetServerInfoRequest(), &response)
             .error_code();
       }},
      {"StreamMetrics", kRead,
       [&](const std::string& a) {
         v1::StreamMetricsRequest request;
         request.set_id(id);
         auto context = Context(a);
         return ReadStream(stub.StreamMetrics(context.get(), request));
       }},
      {"StreamGradients", kRead,
       [&](const std::string& a) {
         v1::StreamGradientsRequest request;
         request.set_id(id);
         auto context = Context(a);
         return ReadStream(stub.StreamGradients(context.get(), request));
       }},
      {"WatchExperiments", kRead,
       [&](const std::string& a) {
         auto context = Context(a);
         auto reader = stub.WatchExperiments(context.get(), v1::WatchExperimentsRequest());
         v1::Experiment first;
         if (reader->Read(&first)) {  // allowed: it lists the experiment, then follows
           context->TryCancel();
           (void)reader->Finish();
           return grpc::StatusCode::OK;
         }
         return reader->Finish().error_code();
       }},
      // The internal service workers call, with worker tokens only; refused before it looks
      // at the request.
      {"RegisterWorker", kWorker,
       [&](const std::string& a) {
         v1::RegisterWorkerRequest request;  // no name: refused after authorization
         v1::RegisterWorkerResponse response;
         return v1::WorkerService::NewStub(channel_)
             ->RegisterWorker(Context(a).get(), request, &response)
             .error_code();
       }},
      {"Heartbeat", kWorker,
       [&](const std::string& a) {
         v1::HeartbeatRequest request;  // an unknown worker: NOT_FOUND after authorization
         request.set_worker_id("w0");
         v1::HeartbeatResponse response;
         return v1::WorkerService::NewStub(channel_)
             ->Heartbeat(Context(a).get(), request, &response)
             .error_code();
       }},
      {"Rendezvous", kWorker,
       [&](const std::string& a) {
         v1::RendezvousRequest request;  // no operation: refused after authorization
         v1::RendezvousResponse response;
         return v1::WorkerService::NewStub(channel_)
             ->Rendezvous(Context(a).get(), request, &response)
             .error_code();
       }},
      {"FetchModel", kWorker,
       [&](const std::string& a) {
         v1::FetchModelRequest request;  // no worker: refused after authorization
         auto context = Context(a);
         return ReadStream(
             v1::WorkerService::NewStub(channel_)->FetchModel(context.get(), request));
       }},
      {"ServerReflectionInfo", kRead,
       [&](const std::string& a) {
         auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel_);
         auto context = Context(a);
         auto stream = reflection->ServerReflectionInfo(context.get());
         grpc::reflection::v1alpha::ServerReflectionRequest request;
         request.set_list_services("");
         grpc::reflection::v1alpha::ServerReflectionResponse response;
         if (stream->Write(request) && stream->Read(&response) &&
             response.list_services_response().service_size() == 0) {
           ADD_FAILURE() << "reflection answered, but listed no services";
         }
         stream->WritesDone();
         return stream->Finish().error_code();
       }},
  };
  const std::map<Needs, std::string> tokens = {{kRead, std::string("Bearer ") + kReadToken},
                                               {kWrite, std::string("Bearer ") + kWriteToken},
                                               {kWorker, std::string("Bearer ") + kWorkerToken}};
  for (const Rpc& rpc : rpcs) {
    SCOPED_TRACE(rpc.name);
    EXPECT_EQ(rpc.call(""), grpc::StatusCode::UNAUTHENTICATED) << "no token";
    EXPECT_EQ(rpc.call("Bearer not-a-known-token-0000"), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(rpc.call(kWriteToken), grpc::StatusCode::UNAUTHENTICATED) << "without Bearer";
    for (const auto& [role, token] : tokens) {
      // A write token may read; a worker token calls the worker service and nothing else.
      const bool allowed = role == rpc.needs || (role == kWrite && rpc.needs == kRead);
      const grpc::StatusCode code = rpc.call(token);
      if (allowed) {
        EXPECT_NE(code, grpc::StatusCode::UNAUTHENTICATED) << "role " << role;
        EXPECT_NE(code, grpc::StatusCode::PERMISSION_DENIED) << "role " << role;
        if (rpc.needs == kRead) {
          EXPECT_EQ(code, grpc::StatusCode::OK) << "role " << role;
        }
      } else {
        EXPECT_EQ(code, grpc::StatusCode::PERMISSION_DENIED) << "role " << role;
      }
    }
  }

  // A write token that registers a worker is told what it needs instead.
  v1::RegisterWorkerRequest registration;
  registration.set_name("host-a");
  registration.set_cpus(1);
  registration.set_threads_per_job(1);
  v1::RegisterWorkerResponse registered;
  const grpc::Status refused = v1::WorkerService::NewStub(channel_)->RegisterWorker(
      Context(tokens.at(kWrite)).get(), registration, &registered);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "needs a worker token"))
      << refused.error_message();

  // Health stays open.
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckResponse serving;
  ASSERT_TRUE(
      health->Check(Context("").get(), grpc::health::v1::HealthCheckRequest(), &serving).ok());
  EXPECT_EQ(serving.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

// A fake worker, over a raw channel: with a worker token it registers and heartbeats; a
// worker registered with one worker token cannot be replaced, heartbeaten for or fed
// outcomes with another.
TEST_F(AuthTest, AWorkersNameIsBoundToItsWorkerToken) {
  auto workers = v1::WorkerService::NewStub(channel_);
  const std::string mine = std::string("Bearer ") + kWorkerToken;
  const std::string other = std::string("Bearer ") + kOtherWorkerToken;
  v1::RegisterWorkerRequest registration;
  registration.set_name("bound-worker");
  registration.set_cpus(1);
  registration.set_threads_per_job(1);
  v1::RegisterWorkerResponse registered;
  grpc::Status status = workers->RegisterWorker(Context(mine).get(), registration, &registered);
  ASSERT_TRUE(status.ok()) << status.error_message();

  v1::RegisterWorkerResponse stolen;
  status = workers->RegisterWorker(Context(other).get(), registration, &stolen);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << status.error_message();
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_worker_id(registered.worker_id());
  v1::HeartbeatResponse answer;
  status = workers->Heartbeat(Context(other).get(), heartbeat, &answer);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  status = workers->Heartbeat(Context(mine).get(), heartbeat, &answer);
  EXPECT_TRUE(status.ok()) << status.error_message();
  // Registered, but holding no rank: no attempt's rendezvous is open to it.
  v1::RendezvousRequest rendezvous;
  rendezvous.set_worker_id(registered.worker_id());
  rendezvous.set_experiment_id("abcd2345");
  rendezvous.set_attempt(1);
  rendezvous.set_operation(v1::RendezvousRequest::CHECK);
  v1::RendezvousResponse met;
  status = workers->Rendezvous(Context(mine).get(), rendezvous, &met);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "holds no rank of attempt 1"))
      << status.error_message();

  v1::ServerInfo info;
  ASSERT_TRUE(stub_
                  ->GetServerInfo(Context(std::string("Bearer ") + kReadToken).get(),
                                  v1::GetServerInfoRequest(), &info)
                  .ok());
  int named = 0;
  for (const v1::WorkerInfo& worker : info.registered_workers()) {
    if (worker.name() == "bound-worker") {
      ++named;
      EXPECT_EQ(worker.id(), registered.worker_id());
    }
  }
  EXPECT_EQ(named, 1);
}

// Authentication comes first even for methods the server does not serve: a stranger
// learns nothing of what is served; a known caller is told the method is not served.
TEST_F(AuthTest, UnknownMethodsAreUnauthenticatedWithoutATokenAndUnimplementedWithOne) {
  const auto call = [&](const std::string& authorization) {
    return CallRawMethod(channel_, "/gradlab.v1.ExperimentService/NoSuchMethod", authorization);
  };
  EXPECT_EQ(call("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("Bearer not-a-token-of-this-server").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  const grpc::Status known = call(std::string("Bearer ") + kReadToken);
  EXPECT_EQ(known.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(known.error_message(),
            "gradlabd does not serve the method \"/gradlab.v1.ExperimentService/NoSuchMethod\"; "
            "its services are listed by server reflection");
}

TEST_F(AuthTest, TheHttpSideTakesTheSameTokens) {
  const std::string id = FinishedExperiment();
  httplib::Client http("127.0.0.1", http_port_);
  struct Case {
    std::string path;
    httplib::Headers headers;
    int status;
  };
  const httplib::Headers read = {{"Authorization", std::string("Bearer ") + kReadToken}};
  for (const Case& c : std::vector<Case>{
           {"/api/v1/experiments", {}, 401},
           {"/api/v1/experiments", {{"Authorization", "Bearer wrong-token-0123456789"}}, 401},
           {"/api/v1/experiments", read, 200},
           {"/api/v1/experiments", {{"Authorization", std::string("Bearer ") + kWriteToken}}, 200},
           {"/api/v1/experiments", {{"Authorization", std::string("Bearer ") + kWorkerToken}}, 403},
           {std::string("/api/v1/experiments?access_token=") + kReadToken, {}, 200},
           {"/api/v1/experiments/" + id, {}, 401},
           {"/api/v1/experiments/" + id + "/events?follow=false", {}, 401},
           {"/api/v1/experiments/" + id + "/events?follow=false&access_token=" + kReadToken,
            {},
            200},
           {"/metrics", {}, 401},
           {"/metrics", read, 200},
           {"/healthz", {}, 200},
           {"/", {}, 200},
           {"/static/dashboard.js", {}, 200},
       }) {
    SCOPED_TRACE(c.path);
    httplib::Result result = http.Get(c.path.c_str(), c.headers);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, c.status);
    if (c.status == 401) {
      EXPECT_EQ(result->get_header_value("WWW-Authenticate"), "Bearer realm=\"gradlab\"");
      EXPECT_TRUE(absl::StrContains(result->body, "UNAUTHENTICATED")) << result->body;
    }
  }
}

TEST_F(AuthTest, TheCliSendsItsTokenFromTheFlagOrTheEnvironment) {
  const std::vector<std::string> list = {GRADLAB_PATH, "--server=" + *address_, "list"};
  CommandResult refused = RunWithStderr(list);
  EXPECT_EQ(refused.exit_code, 3) << refused.out;
  EXPECT_TRUE(absl::StrContains(refused.out, "needs a token")) << refused.out;

  std::vector<std::string> with_flag = list;
  with_flag.insert(with_flag.begin() + 1, std::string("--token=") + kReadToken);
  EXPECT_EQ(RunWithStderr(with_flag).exit_code, 0);
  EXPECT_EQ(RunWithStderr(list, {std::string("GRADLAB_TOKEN=") + kReadToken}).exit_code, 0);

  CommandResult submit =
      RunWithStderr({GRADLAB_PATH, "--server=" + *address_, std::string("--token=") + kReadToken,
                     "submit", "--model=mlp", "--dataset=synthetic", "--epochs=1"});
  EXPECT_EQ(submit.exit_code, 3) << submit.out;
  EXPECT_TRUE(absl::StrContains(submit.out, "may only read")) << submit.out;
  EXPECT_FALSE(absl::StrContains(submit.out, kReadToken)) << "the token was printed";
}

TEST(AuthFlagsTest, ABadTokensFileIsRefusedByLineAndTokensAllowARemoteAddress) {
  const std::filesystem::path dir = FreshSuiteDir("auth_flags");
  std::filesystem::create_directories(dir);
  const std::string bad = (dir / "bad").string();
  std::ofstream(bad) << "# ok\nsome-long-token-0123456789 admin\n";
  CommandResult refused = RunWithStderr(
      {GRADLABD_PATH, "--listen=127.0.0.1:0", "--state_dir=", "--auth_tokens_file=" + bad});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_TRUE(
      absl::StrContains(refused.out, bad + " line 2: role \"admin\" is not read, write or worker"))
      << refused.out;
  EXPECT_FALSE(absl::StrContains(refused.out, "some-long-token")) << "the token was printed";

  const std::string good = (dir / "good").string();
  std::ofstream(good) << kWriteToken << " write\n";
  absl::StatusOr<ChildProcess> remote =
      ChildProcess::Start({GRADLABD_PATH, "--listen=0.0.0.0:0", "--http_listen=127.0.0.1:0",
                           "--state_dir=", "--auth_tokens_file=" + good});
  ASSERT_TRUE(remote.ok());
  EXPECT_TRUE(remote->ReadLineContaining("listening on port", absl::Seconds(60)).ok());
  remote->Signal(SIGTERM);
  EXPECT_EQ(remote->Wait(absl::Seconds(10)), 0);
}

// Its own server with small limits.
TEST(LimitsTest, StreamsPerClientAndStartsPerMinuteAreResourceExhausted) {
  absl::StatusOr<GradlabdProcess> server =
      StartGradlabd(GRADLABD_PATH, {"--state_dir=", "--threads_per_job=1",
                                    "--max_streams_per_client=2", "--max_starts_per_minute=3"});
  ASSERT_TRUE(server.ok()) << server.status();
  const int http_port = server->http_port;
  auto stub = v1::ExperimentService::NewStub(
      grpc::CreateChannel(server->grpc_address, grpc::InsecureChannelCredentials()));

  // Three starts a minute, then RESOURCE_EXHAUSTED saying when to try again.
  v1::StartExperimentRequest request;
  request.mutable_spec()->set_model("mlp");
  request.mutable_spec()->set_dataset("synthetic");
  request.mutable_spec()->set_epochs(1000);
  std::string running;
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext context;
    v1::Experiment experiment;
    ASSERT_TRUE(stub->StartExperiment(&context, request, &experiment).ok()) << i;
    if (i == 0) running = experiment.id();
  }
  grpc::ClientContext refused_context;
  v1::Experiment unused;
  grpc::Status refused = stub->StartExperiment(&refused_context, request, &unused);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "--max_starts_per_minute"))
      << refused.error_message();
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "try again in"));

  // Two streams per client, gRPC and HTTP together.
  v1::StreamMetricsRequest follow;
  follow.set_id(running);
  grpc::ClientContext first_context;
  auto first = stub->StreamMetrics(&first_context, follow);
  grpc::ClientContext second_context;
  auto second = stub->StreamMetrics(&second_context, follow);
  v1::MetricsEvent event;
  ASSERT_TRUE(first->Read(&event));
  ASSERT_TRUE(second->Read(&event));
  grpc::ClientContext third_context;
  auto third = stub->StreamMetrics(&third_context, follow);
  EXPECT_FALSE(third->Read(&event));
  grpc::Status third_status = third->Finish();
  EXPECT_EQ(third_status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(third_status.error_message(), "--max_streams_per_client"));
  httplib::Client http("127.0.0.1", http_port);
  const std::string events = "/api/v1/experiments/" + running + "/events?kinds=metrics";
  httplib::Result over = http.Get(events.c_str());
  ASSERT_TRUE(over);
  EXPECT_EQ(over->status, 429);

  // One closed: a stream opens again, over HTTP this time.
  first_context.TryCancel();
  (void)first->Finish();
  bool opened = false;
  for (int attempt = 0; attempt < 100 && !opened; ++attempt) {
    http.Get(events.c_str(), [&](const char*, size_t) {
      opened = true;
      return false;  // one chunk is enough
    });
    if (!opened) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(opened);
  second_context.TryCancel();
  (void)second->Finish();
  server->process.Signal(SIGTERM);
  EXPECT_EQ(server->process.Wait(absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace gradlab
