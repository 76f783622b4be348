#include "server/daemon/server.h"

#include <glog/logging.h>
#include <grpcpp/health_check_service_interface.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/byte_size.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/service/reflection_service.h"
#include "server/service/rpc_metrics_interceptor.h"

namespace gradlab {

constexpr char kServiceName[] = "gradlab.v1.ExperimentService";
constexpr char kWorkerServiceName[] = "gradlab.v1.WorkerService";

namespace {

// This process's binary: gradlabd, run again as the model check's helper.
std::string OwnBinary() {
  std::error_code error;
  const std::filesystem::path path = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::string("/proc/self/exe") : path.string();
}

// The experiments, finished ones included, whose spec trains the uploaded model `model_id`.
std::vector<std::string> ExperimentsTraining(const ExperimentRegistry& experiments,
                                             const std::string& model_id) {
  std::vector<std::string> ids;
  v1::ListExperimentsRequest request;
  request.set_page_size(1000);
  while (true) {
    absl::StatusOr<v1::ListExperimentsResponse> page = experiments.ListExperiments(request);
    if (!page.ok()) break;
    for (const v1::Experiment& experiment : page->experiments()) {
      if (experiment.spec().model() == absl::StrCat("uploaded:", model_id)) {
        ids.push_back(experiment.id());
      }
    }
    if (page->next_page_token().empty()) break;
    request.set_page_token(page->next_page_token());
  }
  return ids;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GradlabServer>> GradlabServer::Start(ServerOptions options) {
  // The health service is gRPC's own; its messages are also compiled into this binary
  // (from Debian's grpc-proto) so that reflection can describe grpc.health.v1.Health.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::EnableDefaultHealthCheckService(true);

  // Checked first: a wrong file is reported before anything is opened.
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls.cert.empty()) {
    absl::StatusOr<TlsPem> pem = ReadTlsFiles(options.tls, "--tls_client_ca");
    if (!pem.ok()) return pem.status();
    grpc::SslServerCredentialsOptions ssl(
        pem->ca_certs.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                              : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = pem->ca_certs;
    ssl.pem_key_cert_pairs.push_back({pem->private_key, pem->cert_chain});
    credentials = grpc::SslServerCredentials(ssl);
    options.http.tls = options.tls;
  }
  std::unique_ptr<TokenAuthorizer> authorizer;
  if (!options.auth_tokens_file.empty()) {
    absl::StatusOr<TokenAuthorizer> tokens = TokenAuthorizer::FromFile(options.auth_tokens_file);
    if (!tokens.ok()) return tokens.status();
    authorizer = std::make_unique<TokenAuthorizer>(*std::move(tokens));
    LOG(INFO) << "tokens from " << options.auth_tokens_file << ": " << authorizer->size();
  }
  if (!options.state_dir.empty()) {
    absl::StatusOr<std::unique_ptr<ExperimentStore>> store =
        ExperimentStore::Open(options.state_dir, options.store);
    if (!store.ok()) return store.status();
    options.registry.store = *std::move(store);
  }
  // Before the experiments, which may train uploaded models; it asks them in turn which
  // experiments train a model it is to delete.
  std::unique_ptr<ModelRegistry> models;
  auto experiments = std::make_shared<const ExperimentRegistry*>(nullptr);
  if (options.registry.store != nullptr) {
    ModelRegistryOptions model_options;
    model_options.helper = OwnBinary();
    model_options.limits = options.model_check;
    model_options.max_model_bytes = options.max_model_bytes;
    model_options.experiments_using = [experiments](const std::string& model_id) {
      return *experiments == nullptr ? std::vector<std::string>()
                                     : ExperimentsTraining(**experiments, model_id);
    };
    absl::StatusOr<std::unique_ptr<ModelRegistry>> opened =
        ModelRegistry::Open(*options.registry.store, std::move(model_options));
    if (!opened.ok()) return opened.status();
    models = *std::move(opened);
    options.registry.models = models.get();
  }
  const SweepOptions sweep_options{options.max_sweep_runs, options.registry.store,
                                   options.registry.clock};
  absl::StatusOr<std::unique_ptr<ExperimentRegistry>> registry =
      ExperimentRegistry::Open(std::move(options.registry));
  if (!registry.ok()) return registry.status();
  std::unique_ptr<GradlabServer> server(new GradlabServer());
  server->models_ = std::move(models);
  server->registry_ = *std::move(registry);
  *experiments = server->registry_.get();
  absl::StatusOr<std::unique_ptr<SweepRegistry>> sweeps =
      SweepRegistry::Open(*server->registry_, sweep_options);
  if (!sweeps.ok()) return sweeps.status();
  server->sweeps_ = *std::move(sweeps);
  server->authorizer_ = std::move(authorizer);
  server->limits_ = std::make_unique<ClientLimits>(options.limits);
  server->service_ = std::make_unique<ExperimentServiceImpl>(
      *server->registry_, *server->sweeps_, server->models_.get(), server->authorizer_.get(),
      *server->limits_);
  server->worker_service_ = std::make_unique<WorkerServiceImpl>(
      server->registry_->worker_pool(), server->models_.get(), server->authorizer_.get());
  options.http.authorizer = server->authorizer_.get();
  options.http.limits = server->limits_.get();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  // gRPC sets SO_REUSEPORT by default: a second server on the same port would start and
  // the kernel would share the connections out between the two. A port in use is an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(server->service_.get());
  builder.RegisterService(server->worker_service_.get());
  const std::vector<std::string> services = {
      kServiceName, kWorkerServiceName, grpc::health::v1::Health::service_full_name(),
      grpc::reflection::v1alpha::ServerReflection::service_full_name()};
  server->reflection_ = std::make_unique<ReflectionService>(services, server->authorizer_.get());
  builder.RegisterService(server->reflection_.get());
  server->unknown_methods_ = std::make_unique<UnknownMethodService>(server->authorizer_.get());
  builder.RegisterCallbackGenericService(server->unknown_methods_.get());
  builder.SetMaxReceiveMessageSize(options.max_request_bytes);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(
      std::make_unique<RpcMetricsInterceptorFactory>(server->metrics_, MethodsOf(services)));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->registry_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen, " (address in use or invalid?)"));
  }
  if (!options.http.listen.empty()) {
    absl::StatusOr<std::unique_ptr<HttpServer>> http =
        HttpServer::Start(options.http, *server->registry_, *server->sweeps_, server->metrics_);
    if (!http.ok()) {
      server->registry_->Shutdown();
      server->server_->Shutdown();
      return http.status();
    }
    server->http_ = *std::move(http);
  }
  server->server_->GetHealthCheckService()->SetServingStatus(kServiceName, true);
  server->server_->GetHealthCheckService()->SetServingStatus("", true);
  LOG(INFO) << "gradlabd listening on " << options.listen << " (port " << server->port_ << ", "
            << (options.tls.cert.empty() ? "no TLS"
                : options.tls.ca.empty() ? "TLS"
                                         : "mutual TLS")
            << ")";
  LOG(INFO) << "memory: runs estimated to need more than "
            << (options.registry.max_run_memory > 0 ? FormatBytes(options.registry.max_run_memory)
                                                    : std::string("(no limit)"))
            << " are refused; running runs together stay within "
            << (options.registry.memory_budget > 0 ? FormatBytes(options.registry.memory_budget)
                                                   : std::string("(no limit)"));
  // Only now: a restored run that takes the process down can be listed and cancelled.
  if (options.start_training) server->registry_->StartTraining();
  return server;
}

GradlabServer::~GradlabServer() {
  Shutdown();
  Wait();
}

void GradlabServer::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  LOG(INFO) << "shutting down";
  // server_ is null when Start could not listen.
  if (server_ != nullptr) server_->GetHealthCheckService()->Shutdown();
  registry_->Shutdown();
  sweeps_->Shutdown();
  if (http_ != nullptr) http_->Shutdown();
  // Streams have ended; unary calls in flight get a moment to finish.
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
  }
}

void GradlabServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace gradlab
