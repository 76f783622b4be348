// In-process tests of the gRPC service: a real server on localhost:0 and real channels.
#include "server/daemon/server.h"

#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>

#include <ostream>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(RegistryOptions registry = {}) {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.registry = std::move(registry);
    options.registry.threads_per_job = 1;
    absl::StatusOr<std::unique_ptr<GradlabServer>> server = GradlabServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::ExperimentService::NewStub(channel_);
  }

  void SetUp() override { StartServer(); }

  // A synthetic experiment that finishes in a second or two.
  static v1::StartExperimentRequest Quick(int epochs = 2) {
    v1::StartExperimentRequest request;
    v1::ExperimentSpec* spec = request.mutable_spec();
    spec->set_model("mlp");
    spec->set_dataset("synthetic");
    spec->set_epochs(epochs);
    spec->set_max_train_samples(256);
    spec->set_max_test_samples(64);
    spec->set_batch_size(32);
    spec->set_gradient_every_n_steps(4);
    return request;
  }

  grpc::Status Start(const v1::StartExperimentRequest& request, v1::Experiment* experiment) {
    grpc::ClientContext context;
    return stub_->StartExperiment(&context, request, experiment);
  }

  v1::Experiment StartOk(const v1::StartExperimentRequest& request) {
    v1::Experiment experiment;
    grpc::Status status = Start(request, &experiment);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return experiment;
  }

  v1::Experiment Get(const std::string& id) {
    grpc::ClientContext context;
    v1::GetExperimentRequest request;
    request.set_id(id);
    v1::Experiment experiment;
    EXPECT_TRUE(stub_->GetExperiment(&context, request, &experiment).ok());
    return experiment;
  }

  grpc::Status Cancel(const std::string& id, v1::Experiment* experiment) {
    grpc::ClientContext context;
    v1::CancelExperimentRequest request;
    request.set_id(id);
    return stub_->CancelExperiment(&context, request, experiment);
  }

  struct MetricsRead {
    std::vector<v1::MetricsEvent> events;
    grpc::Status status;
  };
  MetricsRead ReadMetrics(const std::string& id, int64_t from_sequence = 0,
                          std::optional<bool> follow = std::nullopt) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    v1::StreamMetricsRequest request;
    request.set_id(id);
    request.set_from_sequence(from_sequence);
    if (follow.has_value()) request.set_follow(*follow);
    auto reader = stub_->StreamMetrics(&context, request);
    MetricsRead read;
    v1::MetricsEvent event;
    while (reader->Read(&event)) read.events.push_back(event);
    read.status = reader->Finish();
    return read;
  }

  static std::vector<int64_t> Sequences(const std::vector<v1::MetricsEvent>& events) {
    std::vector<int64_t> sequences;
    for (const auto& event : events) sequences.push_back(event.sequence());
    return sequences;
  }

  std::unique_ptr<GradlabServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ExperimentService::Stub> stub_;
};

TEST_F(ServerTest, FullLifecycleStreamsEveryEventInOrder) {
  v1::Experiment started = StartOk(Quick());
  EXPECT_EQ(started.state(), v1::QUEUED);
  EXPECT_EQ(started.queue_position(), 1);
  EXPECT_EQ(started.spec().epochs(), 2);
  EXPECT_DOUBLE_EQ(started.spec().momentum(), 0.9);

  MetricsRead read = ReadMetrics(started.id());
  ASSERT_TRUE(read.status.ok()) << read.status.error_message();
  ASSERT_FALSE(read.events.empty());
  EXPECT_EQ(read.events.front().state_change().state(), v1::QUEUED);
  EXPECT_EQ(read.events.back().state_change().state(), v1::SUCCEEDED);
  std::vector<int64_t> sequences = Sequences(read.events);
  EXPECT_TRUE(std::is_sorted(sequences.begin(), sequences.end()));
  EXPECT_EQ(std::adjacent_find(sequences.begin(), sequences.end()), sequences.end());
  int epochs = 0, progress = 0;
  for (const auto& event : read.events) {
    EXPECT_GT(event.time().seconds(), 0);
    if (event.has_epoch_metrics()) {
      EXPECT_EQ(event.epoch_metrics().epoch(), ++epochs);
      EXPECT_GE(event.epoch_metrics().test_accuracy(), 0);
      EXPECT_LE(event.epoch_metrics().test_accuracy(), 1);
    }
    progress += event.has_batch_progress();
  }
  EXPECT_EQ(epochs, 2);
  EXPECT_GE(progress, 2);  // at least each epoch's last batch

  v1::Experiment done = Get(started.id());
  EXPECT_EQ(done.state(), v1::SUCCEEDED);
  EXPECT_EQ(done.last_metrics().epoch(), 2);

  // Gradients: step 1, every 4 steps and each epoch's end (8 batches per epoch).
  grpc::ClientContext context;
  v1::StreamGradientsRequest request;
  request.set_id(started.id());
  request.set_layers("^fc1(\\.|$)");
  auto reader = stub_->StreamGradients(&context, request);
  std::vector<int64_t> steps;
  v1::GradientSnapshot snapshot;
  while (reader->Read(&snapshot)) {
    steps.push_back(snapshot.step());
    ASSERT_EQ(snapshot.layers_size(), 2);  // fc1.weight, fc1.bias
    EXPECT_EQ(snapshot.layers(0).name(), "fc1.weight");
    ASSERT_EQ(snapshot.activations_size(), 1);
    EXPECT_EQ(snapshot.activations(0).name(), "fc1");
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 4, 8, 12, 16}));
}

TEST_F(ServerTest, TenConcurrentSubscribersGetIdenticalSequences) {
  v1::Experiment started = StartOk(Quick(3));
  std::vector<MetricsRead> reads(10);
  std::vector<std::thread> readers;
  for (auto& read : reads) {
    readers.emplace_back([&, this] { read = ReadMetrics(started.id()); });
  }
  for (auto& reader : readers) reader.join();
  for (const MetricsRead& read : reads) {
    ASSERT_TRUE(read.status.ok());
    EXPECT_EQ(Sequences(read.events), Sequences(reads[0].events));
  }
  EXPECT_EQ(reads[0].events.back().state_change().state(), v1::SUCCEEDED);
}

TEST_F(ServerTest, LateSubscriberGetsEverythingAndResumesFromASequence) {
  v1::Experiment started = StartOk(Quick());
  MetricsRead live = ReadMetrics(started.id());
  ASSERT_TRUE(live.status.ok());
  MetricsRead late = ReadMetrics(started.id());  // after the run has finished
  EXPECT_EQ(Sequences(late.events), Sequences(live.events));

  const int64_t resume_from = live.events[3].sequence();
  MetricsRead resumed = ReadMetrics(started.id(), resume_from);
  ASSERT_TRUE(resumed.status.ok());
  const std::vector<int64_t> all = Sequences(live.events);
  EXPECT_EQ(Sequences(resumed.events), std::vector<int64_t>(all.begin() + 3, all.end()));
}

TEST_F(ServerTest, WithoutFollowTheStreamEndsAtTheLastStoredEvent) {
  v1::Experiment started = StartOk(Quick(1000));
  MetricsRead read = ReadMetrics(started.id(), 0, /*follow=*/false);
  EXPECT_TRUE(read.status.ok());
  ASSERT_GE(read.events.size(), 1u);
  EXPECT_EQ(read.events.front().state_change().state(), v1::QUEUED);
  v1::Experiment cancelled;
  EXPECT_TRUE(Cancel(started.id(), &cancelled).ok());
}

TEST_F(ServerTest, ASubscriberThatNeverReadsNeitherBlocksTheRunNorIsBufferedFor) {
  // Tiny retention and a progress event per batch, so that the stalled stream falls far
  // behind what the log keeps.
  server_.reset();
  RegistryOptions registry;
  registry.retention.batch_progress = 8;
  registry.progress_interval = absl::ZeroDuration();
  StartServer(registry);
  v1::StartExperimentRequest request = Quick(4);
  request.mutable_spec()->set_batch_size(2);  // 128 batches per epoch, 512 progress events
  request.mutable_spec()->set_gradient_every_n_steps(0);
  v1::Experiment started = StartOk(request);

  // The stalled subscriber opens its stream on a channel of its own and reads nothing.
  auto stalled_channel = grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials(), [] {
        grpc::ChannelArguments args;
        // A small receive window, so that the transport holds few unread messages.
        args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
        args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
        return args;
      }());
  auto stalled_stub = v1::ExperimentService::NewStub(stalled_channel);
  grpc::ClientContext stalled_context;
  v1::StreamMetricsRequest stalled_request;
  stalled_request.set_id(started.id());
  auto stalled = stalled_stub->StreamMetrics(&stalled_context, stalled_request);

  // The run finishes while the subscriber still has not read a single event.
  MetricsRead other = ReadMetrics(started.id());
  ASSERT_TRUE(other.status.ok());
  EXPECT_EQ(Get(started.id()).state(), v1::SUCCEEDED);

  // Now it reads: all epochs and the end, but not every progress event: the server kept
  // no backlog for it beyond the log's bound and what the transport had in flight.
  std::vector<v1::MetricsEvent> events;
  v1::MetricsEvent event;
  while (stalled->Read(&event)) events.push_back(event);
  EXPECT_TRUE(stalled->Finish().ok());
  int epochs = 0, progress = 0;
  for (const auto& e : events) {
    epochs += e.has_epoch_metrics();
    progress += e.has_batch_progress();
  }
  EXPECT_EQ(epochs, 4);
  EXPECT_EQ(events.back().state_change().state(), v1::SUCCEEDED);
  EXPECT_LT(progress, 4 * 128);
}

TEST_F(ServerTest, CancelQueuedAndRunningAndFinished) {
  v1::Experiment running = StartOk(Quick(1000));
  while (Get(running.id()).state() != v1::RUNNING) absl::SleepFor(absl::Milliseconds(10));
  v1::Experiment queued = StartOk(Quick());
  EXPECT_EQ(queued.queue_position(), 1);

  v1::Experiment cancelled;
  ASSERT_TRUE(Cancel(queued.id(), &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::CANCELLED);
  ASSERT_TRUE(Cancel(running.id(), &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::CANCELLED);
  MetricsRead read = ReadMetrics(running.id());
  EXPECT_TRUE(read.status.ok());
  EXPECT_EQ(read.events.back().state_change().state(), v1::CANCELLED);

  grpc::Status again = Cancel(running.id(), &cancelled);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(again.error_message(), HasSubstr("has already finished (CANCELLED)"));
  EXPECT_EQ(Cancel("nope", &cancelled).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, QueueFullAndIdempotentRequestId) {
  server_.reset();
  RegistryOptions registry;
  registry.max_queue = 1;
  StartServer(registry);
  v1::StartExperimentRequest long_run = Quick(1000);
  long_run.set_request_id("client-42");
  v1::Experiment running = StartOk(long_run);
  EXPECT_EQ(StartOk(long_run).id(), running.id());  // retried: same experiment
  while (Get(running.id()).state() != v1::RUNNING) absl::SleepFor(absl::Milliseconds(10));
  v1::Experiment queued = StartOk(Quick());
  v1::Experiment refused;
  grpc::Status full = Start(Quick(), &refused);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(full.error_message(), HasSubstr("the queue is full"));

  grpc::ClientContext context;
  v1::ListExperimentsResponse list;
  ASSERT_TRUE(stub_->ListExperiments(&context, {}, &list).ok());
  ASSERT_EQ(list.experiments_size(), 2);
  EXPECT_EQ(list.experiments(0).id(), queued.id());  // newest first
  v1::Experiment cancelled;
  EXPECT_TRUE(Cancel(running.id(), &cancelled).ok());
}

struct InvalidRequest {
  std::string label;
  std::function<void(v1::StartExperimentRequest&)> mutate;
  grpc::StatusCode code;
  std::string message;
};
// Names the case in test listings and ctest's test names, which would otherwise show its
// bytes (pointers among them, different in every build).
void PrintTo(const InvalidRequest& c, std::ostream* os) { *os << c.label; }

class InvalidRequestTest : public ServerTest,
                           public ::testing::WithParamInterface<InvalidRequest> {};

TEST_P(InvalidRequestTest, IsRefusedWithItsCodeAndMessageAndChangesNothing) {
  v1::StartExperimentRequest request = Quick();
  GetParam().mutate(request);
  v1::Experiment experiment;
  grpc::Status status = Start(request, &experiment);
  EXPECT_EQ(status.error_code(), GetParam().code) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(GetParam().message));
  grpc::ClientContext context;
  v1::ListExperimentsResponse list;
  ASSERT_TRUE(stub_->ListExperiments(&context, {}, &list).ok());
  EXPECT_EQ(list.experiments_size(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Table, InvalidRequestTest,
    ::testing::Values(
        InvalidRequest{"model", [](auto& r) { r.mutable_spec()->set_model("alexnet"); },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "spec.model: unknown value \"alexnet\"; valid values: simple_cnn, "
                       "deep_cnn, resnet, cifar_resnet, mlp"},
        InvalidRequest{"dataset", [](auto& r) { r.mutable_spec()->set_dataset("svhn"); },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "valid values: cifar10, fashion_mnist, mnist, synthetic"},
        InvalidRequest{"epochs", [](auto& r) { r.mutable_spec()->set_epochs(0); },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "spec.epochs: 0 is out of range [1, 1000]"},
        InvalidRequest{"batch", [](auto& r) { r.mutable_spec()->set_batch_size(-3); },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "spec.batch_size: -3 is out of range [1, 4096]"},
        InvalidRequest{"lr", [](auto& r) { r.mutable_spec()->set_learning_rate(-1); },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "spec.learning_rate: -1 is out of range (0, 10]"},
        InvalidRequest{"momentum", [](auto& r) { r.mutable_spec()->set_momentum(1.5); },
                       grpc::StatusCode::INVALID_ARGUMENT, "spec.momentum: 1.5 is out of range"},
        InvalidRequest{"init", [](auto& r) { r.mutable_spec()->set_init("orthogonal"); },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "valid values: pytorch_default, kaiming_normal"},
        InvalidRequest{"skip", [](auto& r) { r.mutable_spec()->set_skip_connections(true); },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "only resnet and cifar_resnet have skip connections"},
        InvalidRequest{"threads", [](auto& r) { r.mutable_spec()->set_threads(64); },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "spec.threads: 64 is more than this server's threads per job (1)"},
        InvalidRequest{"absent",
                       [](auto& r) {
                         r.mutable_spec()->set_dataset("cifar10");
                         r.mutable_spec()->set_data_dir("/no/such/dir");
                       },
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "spec.data_dir: \"/no/such/dir\" is outside the folders this server "
                       "reads datasets from"},
        InvalidRequest{"request_id", [](auto& r) { r.set_request_id(std::string(201, 'r')); },
                       grpc::StatusCode::INVALID_ARGUMENT, "request_id: 201 characters"},
        InvalidRequest{"too_large",
                       [](auto& r) { r.mutable_spec()->set_name(std::string(300'000, 'n')); },
                       grpc::StatusCode::RESOURCE_EXHAUSTED, ""}),
    [](const ::testing::TestParamInfo<InvalidRequest>& info) { return info.param.label; });

TEST_F(ServerTest, UnknownIdsAndBadRegexAreRefused) {
  EXPECT_EQ(ReadMetrics("missing").status.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::Experiment started = StartOk(Quick());
  grpc::ClientContext context;
  v1::StreamGradientsRequest request;
  request.set_id(started.id());
  request.set_layers("conv(");
  auto reader = stub_->StreamGradients(&context, request);
  v1::GradientSnapshot snapshot;
  EXPECT_FALSE(reader->Read(&snapshot));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("layers: \"conv(\" is not a valid regular"));
}

TEST_F(ServerTest, WatchExperimentsSendsCurrentStatesThenChanges) {
  v1::Experiment first = StartOk(Quick(1));
  ReadMetrics(first.id());  // wait for it to finish
  grpc::ClientContext context;
  auto watch = stub_->WatchExperiments(&context, {});
  v1::Experiment update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.id(), first.id());
  EXPECT_EQ(update.state(), v1::SUCCEEDED);

  v1::Experiment second = StartOk(Quick(1));
  bool saw_succeeded = false;
  while (!saw_succeeded && watch->Read(&update)) {
    // The first may show up once more: its last change can land after the snapshot.
    if (update.id() == first.id()) continue;
    EXPECT_EQ(update.id(), second.id());
    saw_succeeded = update.state() == v1::SUCCEEDED;
  }
  EXPECT_TRUE(saw_succeeded);
  context.TryCancel();
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(ServerTest, WatchExperimentsTellsOfADeletionWithTheLastStateMarkedDeleted) {
  v1::Experiment finished = StartOk(Quick(1));
  ReadMetrics(finished.id());  // wait for it to finish
  grpc::ClientContext context;
  auto watch = stub_->WatchExperiments(&context, {});
  v1::Experiment update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.id(), finished.id());
  EXPECT_FALSE(update.deleted());

  grpc::ClientContext delete_context;
  v1::DeleteExperimentRequest request;
  request.set_id(finished.id());
  v1::DeleteExperimentResponse response;
  ASSERT_TRUE(stub_->DeleteExperiment(&delete_context, request, &response).ok());
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.id(), finished.id());
  EXPECT_TRUE(update.deleted());
  EXPECT_EQ(update.state(), v1::SUCCEEDED);
  EXPECT_EQ(update.last_metrics().epoch(), 1);
  context.TryCancel();
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);

  // A watch that begins after the deletion never hears of the experiment.
  grpc::ClientContext later_context;
  auto later = stub_->WatchExperiments(&later_context, {});
  v1::Experiment second = StartOk(Quick(1));
  ASSERT_TRUE(later->Read(&update));
  EXPECT_EQ(update.id(), second.id());
  later_context.TryCancel();
  later->Finish();
}

TEST_F(ServerTest, ServerInfoDescribesModelsDatasetsAndCapacity) {
  grpc::ClientContext context;
  v1::ServerInfo info;
  ASSERT_TRUE(stub_->GetServerInfo(&context, {}, &info).ok());
  ASSERT_EQ(info.models_size(), 5);
  EXPECT_EQ(info.models(1).name(), "deep_cnn");
  EXPECT_EQ(info.models(1).parameter_count(), 1'406'346);
  EXPECT_EQ(info.threads_per_job(), 1);
  EXPECT_EQ(info.queue_capacity(), 100);
  ASSERT_EQ(info.datasets_size(), 4);
}

TEST_F(ServerTest, ReflectionListsTheServices) {
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel_);
  grpc::ClientContext context;
  auto stream = reflection->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  request.set_file_containing_symbol("grpc.health.v1.Health");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> services;
  for (const auto& service : response.list_services_response().service()) {
    services.push_back(service.name());
  }
  EXPECT_THAT(services,
              ::testing::IsSupersetOf({"gradlab.v1.ExperimentService", "gradlab.v1.WorkerService",
                                       "grpc.health.v1.Health"}));
  // The health service's descriptor is there too, so grpcurl can call it.
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_TRUE(response.has_file_descriptor_response()) << response.error_response().error_message();
  EXPECT_TRUE(stream->Finish().ok());
}

// What grpcurl does: asks for the file that defines a service, builds a descriptor pool
// from the answer alone and calls methods by name from it.
TEST_F(ServerTest, ReflectionDescribesTheApiCompletelyAndAnswersErrorsInTheStream) {
  using grpc::reflection::v1alpha::ServerReflectionRequest;
  using grpc::reflection::v1alpha::ServerReflectionResponse;
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel_);
  grpc::ClientContext context;
  auto stream = reflection->ServerReflectionInfo(&context);
  auto ask = [&](const ServerReflectionRequest& request) {
    ServerReflectionResponse response;
    EXPECT_TRUE(stream->Write(request));
    EXPECT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.original_request().SerializeAsString(), request.SerializeAsString());
    return response;
  };

  ServerReflectionRequest request;
  request.set_file_containing_symbol("gradlab.v1.ExperimentService");
  ServerReflectionResponse response = ask(request);
  google::protobuf::SimpleDescriptorDatabase database;
  for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    ASSERT_TRUE(database.Add(file)) << file.name() << " sent twice";
  }
  google::protobuf::DescriptorPool pool(&database);
  const google::protobuf::ServiceDescriptor* service =
      pool.FindServiceByName("gradlab.v1.ExperimentService");
  ASSERT_NE(service, nullptr) << "the answer lacks a file the service's file imports";
  EXPECT_EQ(service->method_count(), google::protobuf::DescriptorPool::generated_pool()
                                         ->FindServiceByName("gradlab.v1.ExperimentService")
                                         ->method_count());
  const google::protobuf::MethodDescriptor* start = service->FindMethodByName("StartExperiment");
  ASSERT_NE(start, nullptr);
  EXPECT_EQ(start->input_type()->field_count(),
            v1::StartExperimentRequest::descriptor()->field_count());
  EXPECT_NE(pool.FindMessageTypeByName("gradlab.v1.ExperimentSpec"), nullptr);

  // A name the server does not know: an error response, and the stream goes on.
  request.set_file_containing_symbol("gradlab.v1.NoSuchService");
  response = ask(request);
  EXPECT_EQ(response.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(response.error_response().error_message(),
            "symbol gradlab.v1.NoSuchService is not known to this server");
  request.set_file_by_filename("grpc/health/v1/health.proto");
  response = ask(request);
  ASSERT_EQ(response.file_descriptor_response().file_descriptor_proto_size(), 1);
  request.set_all_extension_numbers_of_type("gradlab.v1.Experiment");
  response = ask(request);
  EXPECT_EQ(response.all_extension_numbers_response().base_type_name(), "gradlab.v1.Experiment");
  EXPECT_EQ(response.all_extension_numbers_response().extension_number_size(), 0);
  request.set_all_extension_numbers_of_type("no.such.Type");
  EXPECT_EQ(ask(request).error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  response = ask(ServerReflectionRequest());
  EXPECT_EQ(response.error_response().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(response.error_response().error_message(), ::testing::HasSubstr("list_services"));

  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ServerTest, HealthServesThenTurnsNotServingAndStreamsEndOnShutdown) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const std::string service : {"", "gradlab.v1.ExperimentService"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }

  // A long-running resnet with big batches keeps the shutdown busy for a while.
  v1::StartExperimentRequest slow = Quick(1000);
  slow.mutable_spec()->set_model("resnet");
  slow.mutable_spec()->set_batch_size(256);
  v1::Experiment running = StartOk(slow);
  while (Get(running.id()).state() != v1::RUNNING) absl::SleepFor(absl::Milliseconds(10));
  grpc::ClientContext stream_context;
  v1::StreamMetricsRequest stream_request;
  stream_request.set_id(running.id());
  auto stream = stub_->StreamMetrics(&stream_context, stream_request);
  v1::MetricsEvent event;
  ASSERT_TRUE(stream->Read(&event));  // the stream is open

  std::thread shutdown([this] { server_->Shutdown(); });
  bool saw_not_serving = false;
  for (int i = 0; i < 500 && !saw_not_serving; ++i) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    if (!health->Check(&context, request, &response).ok()) break;
    saw_not_serving = response.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(saw_not_serving);
  while (stream->Read(&event)) {
  }
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(status.error_message(), "server shutting down");
  shutdown.join();
}

}  // namespace
}  // namespace gradlab
