// Counts every RPC the gRPC server finishes, by service, method and status code, and
// keeps server streams counted as open while they run: one place for all of them,
// including the health and reflection services. Feeds /metrics (ServerMetrics). Calls of
// methods the server does not serve are counted together as service and method
// "unknown", so that clients cannot add series.
#ifndef GRADLAB_SERVER_SERVICE_RPC_METRICS_INTERCEPTOR_H_
#define GRADLAB_SERVER_SERVICE_RPC_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include <set>
#include <string>
#include <vector>

#include "server/metrics/server_metrics.h"

namespace gradlab {

class RpcMetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the server; `known_methods` are the full paths the server
  // serves ("/gradlab.v1.ExperimentService/StreamMetrics").
  RpcMetricsInterceptorFactory(ServerMetrics& metrics, std::set<std::string> known_methods)
      : metrics_(metrics), known_methods_(std::move(known_methods)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics& metrics_;
  const std::set<std::string> known_methods_;
};

// The full paths of every method of these services, from the linked descriptors.
std::set<std::string> MethodsOf(const std::vector<std::string>& service_names);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_SERVICE_RPC_METRICS_INTERCEPTOR_H_
