// The gRPC face of ExperimentRegistry: each unary handler validates, calls the registry
// and converts the status in one place; each stream is a reactor holding a cursor over
// an experiment's event log (or the registry's change feed), with one write in flight.
#ifndef GRADLAB_SERVER_SERVICE_EXPERIMENT_SERVICE_H_
#define GRADLAB_SERVER_SERVICE_EXPERIMENT_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "server/auth/client_limits.h"
#include "server/auth/token_authorizer.h"
#include "server/experiments/experiment_registry.h"
#include "server/experiments/sweep_registry.h"
#include "server/models/model_registry.h"

namespace gradlab {

// Thread-safe; the registries must outlive it.
class ExperimentServiceImpl final : public v1::ExperimentService::CallbackService {
 public:
  // `authorizer` null: every call is allowed; otherwise each needs a token of the role
  // its method requires (read, or write for StartExperiment, CancelExperiment,
  // DeleteExperiment, ExportModel, UploadModel, DeleteModel and the sweeps' Start, Cancel
  // and Delete). All must
  // outlive it. `limits` bounds each client's open streams and each caller's rate of
  // StartExperiment and StartSweep calls.
  // `models` null: the server keeps no state, and the model RPCs are FAILED_PRECONDITION.
  ExperimentServiceImpl(ExperimentRegistry& registry, SweepRegistry& sweeps, ModelRegistry* models,
                        const TokenAuthorizer* authorizer, ClientLimits& limits)
      : registry_(registry),
        sweeps_(sweeps),
        models_(models),
        authorizer_(authorizer),
        limits_(limits) {}

  grpc::ServerUnaryReactor* StartExperiment(grpc::CallbackServerContext* context,
                                            const v1::StartExperimentRequest* request,
                                            v1::Experiment* response) override;
  grpc::ServerUnaryReactor* GetExperiment(grpc::CallbackServerContext* context,
                                          const v1::GetExperimentRequest* request,
                                          v1::Experiment* response) override;
  grpc::ServerUnaryReactor* ListExperiments(grpc::CallbackServerContext* context,
                                            const v1::ListExperimentsRequest* request,
                                            v1::ListExperimentsResponse* response) override;
  grpc::ServerUnaryReactor* CancelExperiment(grpc::CallbackServerContext* context,
                                             const v1::CancelExperimentRequest* request,
                                             v1::Experiment* response) override;
  grpc::ServerUnaryReactor* DeleteExperiment(grpc::CallbackServerContext* context,
                                             const v1::DeleteExperimentRequest* request,
                                             v1::DeleteExperimentResponse* response) override;
  grpc::ServerWriteReactor<v1::ModelChunk>* ExportModel(
      grpc::CallbackServerContext* context, const v1::ExportModelRequest* request) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const v1::GetServerInfoRequest* request,
                                          v1::ServerInfo* response) override;
  grpc::ServerWriteReactor<v1::MetricsEvent>* StreamMetrics(
      grpc::CallbackServerContext* context, const v1::StreamMetricsRequest* request) override;
  grpc::ServerWriteReactor<v1::GradientSnapshot>* StreamGradients(
      grpc::CallbackServerContext* context, const v1::StreamGradientsRequest* request) override;
  grpc::ServerWriteReactor<v1::Experiment>* WatchExperiments(
      grpc::CallbackServerContext* context, const v1::WatchExperimentsRequest* request) override;
  grpc::ServerUnaryReactor* StartSweep(grpc::CallbackServerContext* context,
                                       const v1::StartSweepRequest* request,
                                       v1::Sweep* response) override;
  grpc::ServerUnaryReactor* GetSweep(grpc::CallbackServerContext* context,
                                     const v1::GetSweepRequest* request,
                                     v1::Sweep* response) override;
  grpc::ServerUnaryReactor* ListSweeps(grpc::CallbackServerContext* context,
                                       const v1::ListSweepsRequest* request,
                                       v1::ListSweepsResponse* response) override;
  grpc::ServerUnaryReactor* CancelSweep(grpc::CallbackServerContext* context,
                                        const v1::CancelSweepRequest* request,
                                        v1::Sweep* response) override;
  grpc::ServerUnaryReactor* DeleteSweep(grpc::CallbackServerContext* context,
                                        const v1::DeleteSweepRequest* request,
                                        v1::DeleteSweepResponse* response) override;
  grpc::ServerWriteReactor<v1::Sweep>* StreamSweep(grpc::CallbackServerContext* context,
                                                   const v1::StreamSweepRequest* request) override;
  grpc::ServerReadReactor<v1::UploadModelRequest>* UploadModel(
      grpc::CallbackServerContext* context, v1::ModelArtifact* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const v1::GetModelRequest* request,
                                     v1::ModelArtifact* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteModel(grpc::CallbackServerContext* context,
                                        const v1::DeleteModelRequest* request,
                                        v1::DeleteModelResponse* response) override;

 private:
  // OK when the caller may start another experiment or sweep now, or RESOURCE_EXHAUSTED.
  absl::Status AllowStart(grpc::CallbackServerContext* context);

  // OK, or why the call's "authorization" metadata does not allow `needed`.
  absl::Status Authorize(grpc::CallbackServerContext* context, Role needed) const;

  // A slot for one more stream of the calling client, or RESOURCE_EXHAUSTED.
  absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> OpenStream(
      grpc::CallbackServerContext* context);

  // OK when `needed` is allowed and the server keeps models.
  absl::Status AllowModels(grpc::CallbackServerContext* context, Role needed) const;

  ExperimentRegistry& registry_;
  SweepRegistry& sweeps_;
  ModelRegistry* const models_;
  const TokenAuthorizer* const authorizer_;
  ClientLimits& limits_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_EXPERIMENT_SERVICE_H_
