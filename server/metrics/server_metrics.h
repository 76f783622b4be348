// What gradlabd's transports count for /metrics: calls handled, by service, method and
// status code, and streams open now, by transport and method. Recorded by the gRPC
// interceptor and the HTTP event streams; read at scrape time. Thread-safe.
#ifndef GRADLAB_SERVER_METRICS_SERVER_METRICS_H_
#define GRADLAB_SERVER_METRICS_SERVER_METRICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/metrics/prometheus_text.h"

namespace gradlab {

class ServerMetrics {
 public:
  // `code` is the status code's name, e.g. "OK" or "NOT_FOUND".
  void RecordHandled(absl::string_view service, absl::string_view method, absl::string_view code)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Counts a stream as open for as long as it lives.
  class OpenStream {
   public:
    OpenStream(ServerMetrics& metrics, std::string transport, std::string method);
    ~OpenStream();
    OpenStream(const OpenStream&) = delete;
    OpenStream& operator=(const OpenStream&) = delete;

   private:
    ServerMetrics& metrics_;
    const std::pair<std::string, std::string> key_;
  };

  // Appends the families grpc_server_handled_total and gradlab_open_streams.
  void WriteTo(PrometheusText& text) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  // (service, method, code) -> calls.
  std::map<std::tuple<std::string, std::string, std::string>, int64_t> handled_
      ABSL_GUARDED_BY(mu_);
  // (transport, method) -> open now. Entries stay at 0 once seen, so series don't vanish.
  std::map<std::pair<std::string, std::string>, int64_t> open_streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_METRICS_SERVER_METRICS_H_
