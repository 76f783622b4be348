#include "server/service/rpc_metrics_interceptor.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace gradlab {
namespace {

using grpc::experimental::InterceptionHookPoints;

class RpcMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(ServerMetrics& metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics) {
    // "/gradlab.v1.ExperimentService/StreamMetrics" -> service and method.
    absl::string_view full = info->method() != nullptr ? info->method() : "";
    if (!full.empty() && full[0] == '/') full.remove_prefix(1);
    const size_t slash = full.find('/');
    service_ = std::string(full.substr(0, slash));
    method_ = slash == absl::string_view::npos ? "" : std::string(full.substr(slash + 1));
    if (info->type() == grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING ||
        info->type() == grpc::experimental::ServerRpcInfo::Type::BIDI_STREAMING) {
      open_stream_ = std::make_unique<ServerMetrics::OpenStream>(metrics_, "grpc", method_);
    }
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const auto code = static_cast<absl::StatusCode>(methods->GetSendStatus().error_code());
      metrics_.RecordHandled(service_, method_, absl::StatusCodeToString(code));
      open_stream_.reset();
    }
    methods->Proceed();
  }

 private:
  ServerMetrics& metrics_;
  std::string service_;
  std::string method_;
  std::unique_ptr<ServerMetrics::OpenStream> open_stream_;  // server streams only
};

}  // namespace

grpc::experimental::Interceptor* RpcMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new RpcMetricsInterceptor(metrics_, info);
}

}  // namespace gradlab
