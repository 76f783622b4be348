#include "server/metrics/server_metrics.h"

namespace gradlab {

void ServerMetrics::RecordHandled(absl::string_view service, absl::string_view method,
                                  absl::string_view code) {
  absl::MutexLock lock(&mu_);
  ++handled_[{std::string(service), std::string(method), std::string(code)}];
}

ServerMetrics::OpenStream::OpenStream(ServerMetrics& metrics, std::string transport,
                                      std::string method)
    : metrics_(metrics), key_(std::move(transport), std::move(method)) {
  absl::MutexLock lock(&metrics_.mu_);
  ++metrics_.open_streams_[key_];
}

ServerMetrics::OpenStream::~OpenStream() {
  absl::MutexLock lock(&metrics_.mu_);
  --metrics_.open_streams_[key_];
}

void ServerMetrics::WriteTo(PrometheusText& text) const {
  absl::MutexLock lock(&mu_);
  text.Family("grpc_server_handled_total", PrometheusText::Type::kCounter,
              "RPCs completed on the server, by service, method and status code.");
  for (const auto& [key, count] : handled_) {
    const auto& [service, method, code] = key;
    text.Sample({{"grpc_service", service}, {"grpc_method", method}, {"grpc_code", code}},
                static_cast<double>(count));
  }
  text.Family("gradlab_open_streams", PrometheusText::Type::kGauge,
              "Streams open now: gRPC server streams by method, and the HTTP event streams.");
  for (const auto& [key, count] : open_streams_) {
    text.Sample({{"transport", key.first}, {"method", key.second}}, static_cast<double>(count));
  }
}

}  // namespace gradlab
