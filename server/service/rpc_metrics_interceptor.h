// Counts every RPC the gRPC server finishes, by service, method and status code, and
// keeps server streams counted as open while they run: one place for all of them,
// including the health and reflection services. Feeds /metrics (ServerMetrics).
#ifndef GRADLAB_SERVER_SERVICE_RPC_METRICS_INTERCEPTOR_H_
#define GRADLAB_SERVER_SERVICE_RPC_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "server/metrics/server_metrics.h"

namespace gradlab {

class RpcMetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the server.
  explicit RpcMetricsInterceptorFactory(ServerMetrics& metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics& metrics_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_RPC_METRICS_INTERCEPTOR_H_
