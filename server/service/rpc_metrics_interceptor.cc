#include "server/service/rpc_metrics_interceptor.h"

#include <google/protobuf/descriptor.h>

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace gradlab {
namespace {

using grpc::experimental::InterceptionHookPoints;

class RpcMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(ServerMetrics& metrics, grpc::experimental::ServerRpcInfo* info,
                        const std::set<std::string>& known_methods)
      : metrics_(metrics) {
    // "/gradlab.v1.ExperimentService/StreamMetrics" -> service and method.
    absl::string_view full = info->method() != nullptr ? info->method() : "";
    if (known_methods.count(std::string(full)) == 0) {
      service_ = method_ = "unknown";
      return;
    }
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
  return new RpcMetricsInterceptor(metrics_, info, known_methods_);
}

std::set<std::string> MethodsOf(const std::vector<std::string>& service_names) {
  std::set<std::string> methods;
  for (const std::string& name : service_names) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
      methods.insert(absl::StrCat("/", service->full_name(), "/", service->method(i)->name()));
    }
  }
  return methods;
}

}  // namespace gradlab
