// gradlabd's servers over one ExperimentRegistry: gRPC (the ExperimentService, the
// WorkerService its workers call, the standard health service and server reflection) on
// one port, and HTTP (the dashboard,
// JSON API, event streams and /metrics; see HttpServer) on another, with a graceful
// shutdown of both.
#ifndef GRADLAB_SERVER_DAEMON_SERVER_H_
#define GRADLAB_SERVER_DAEMON_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls_files.h"
#include "server/experiments/experiment_registry.h"
#include "server/experiments/sweep_registry.h"
#include "server/http/http_server.h"
#include "server/metrics/server_metrics.h"
#include "server/service/experiment_service.h"
#include "server/service/reflection_service.h"
#include "server/service/unknown_method_service.h"
#include "server/service/worker_service.h"

namespace gradlab {

struct ServerOptions {
  // host:port; port 0 picks a free one (see GradlabServer::port).
  std::string listen = "127.0.0.1:50051";
  // With tls.cert and tls.key, gRPC and HTTP serve TLS only; with tls.ca (--tls_client_ca)
  // too, clients must present a certificate that it signed (mutual TLS).
  TlsPaths tls;
  // "TOKEN ROLE" lines (see TokenAuthorizer): gRPC calls and HTTP requests need a token of
  // the role they require; empty: no tokens, everything is open.
  std::string auth_tokens_file;
  // Streams per client and StartExperiment calls per minute per caller.
  ClientLimitOptions limits;
  // Larger requests are refused with RESOURCE_EXHAUSTED.
  int max_request_bytes = 256 * 1024;
  // Where experiments, events and checkpoints are kept (see ExperimentStore); empty keeps
  // everything in memory.
  std::string state_dir;
  StoreOptions store;
  RegistryOptions registry;
  // The most runs one sweep may have (--max_sweep_runs).
  int64_t max_sweep_runs = 100;
  // Uploaded models (with a state_dir): the largest file taken, and the check's limits.
  int64_t max_model_bytes = int64_t{200} * 1000 * 1000;
  ModelCheckLimits model_check;
  // http.listen empty: no HTTP listener.
  HttpOptions http;
  // Whether Start lets the queue train once the server serves; false leaves that to
  // registry().StartTraining() (gradlabd calls it once it has printed its ports).
  bool start_training = true;
};

// Start() builds and starts everything; Shutdown() may be called from any thread (a
// signal thread), once or more; Wait() returns after it.
class GradlabServer {
 public:
  static absl::StatusOr<std::unique_ptr<GradlabServer>> Start(ServerOptions options);
  ~GradlabServer();

  int port() const { return port_; }
  // 0 without an HTTP listener.
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }
  ExperimentRegistry& registry() { return *registry_; }
  SweepRegistry& sweeps() { return *sweeps_; }

  // Health turns NOT_SERVING, new experiments are refused, running trainings stop at
  // their next batch, open streams (gRPC and HTTP) end with UNAVAILABLE, and both
  // servers stop.
  void Shutdown();
  void Wait();

 private:
  GradlabServer() = default;

  // Declared first: both servers record into it until they are destroyed.
  ServerMetrics metrics_;
  std::unique_ptr<TokenAuthorizer> authorizer_;  // null without --auth_tokens_file
  std::unique_ptr<ClientLimits> limits_;
  // Null without a state folder. The registry's runs read its files: destroyed after it.
  std::unique_ptr<ModelRegistry> models_;
  std::unique_ptr<ExperimentRegistry> registry_;
  // Follows the registry's changes: destroyed before it.
  std::unique_ptr<SweepRegistry> sweeps_;
  std::unique_ptr<ExperimentServiceImpl> service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<ReflectionService> reflection_;  // grpc.reflection.v1alpha, read tokens
  std::unique_ptr<UnknownMethodService> unknown_methods_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpServer> http_;
  int port_ = 0;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_DAEMON_SERVER_H_
