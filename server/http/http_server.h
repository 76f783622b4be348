// gradlabd's HTTP face, on cpp-httplib: the dashboard (/), a read-only JSON API in the
// protobuf JSON mapping of the gRPC API's messages (/api/v1/...), Server-Sent Event
// streams of the same experiment logs the gRPC streams read, Prometheus metrics
// (/metrics) and /healthz. Handlers are thin: they parse the request, call the registry
// and convert its status to HTTP in one place (HttpStatusFor).
//
//   GET /                                    the dashboard
//   GET /static/NAME                         its files
//   GET /api/v1/server                       ServerInfo
//   GET /api/v1/experiments[?page_size=&page_token=]   ListExperimentsResponse
//   GET /api/v1/experiments/ID               Experiment
//   GET /api/v1/experiments/ID/snapshot[?step=N]  GradientSnapshot: the first at or after
//                                            step N; without step, the latest
//   GET /api/v1/experiments/ID/events[?kinds=metrics,gradients&from_sequence=N&follow=false]
//                                            text/event-stream; resumes after Last-Event-ID
//   GET /api/v1/watch                        text/event-stream of Experiment changes
//   GET /metrics                             Prometheus text format
//   GET /healthz                             200 "ok", or 503 while shutting down
// Errors are JSON: {"error": {"code": HTTP, "status": "NOT_FOUND", "message": "..."}}.
#ifndef GRADLAB_SERVER_HTTP_HTTP_SERVER_H_
#define GRADLAB_SERVER_HTTP_HTTP_SERVER_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/tls_files.h"
#include "server/auth/client_limits.h"
#include "server/auth/token_authorizer.h"
#include "server/experiments/experiment_registry.h"
#include "server/experiments/sweep_registry.h"
#include "server/http/host_check.h"
#include "server/metrics/server_metrics.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace gradlab {

// Debian's cpp-httplib (0.11) waits on sockets with select(), which cannot watch a file
// descriptor numbered 1024 or above; keeping the streams well below that keeps every
// connection's descriptor in range (gRPC, SQLite and the datasets hold some too).
inline constexpr int kMaxHttpStreams = 512;

struct HttpOptions {
  // host:port; port 0 picks a free one (see HttpServer::port). GradlabServer starts no
  // HTTP listener when it is empty (gradlabd's --http_listen defaults to 127.0.0.1:8080).
  std::string listen;
  // Event streams open at once, at most kMaxHttpStreams; one more is answered 429. Each
  // holds a thread.
  int max_streams = 64;
  // An idle event stream sends a comment this often, so that proxies keep it open and a
  // client that has gone is noticed.
  absl::Duration keepalive_interval = absl::Seconds(15);
  // Null: everything is open. Otherwise every page but /healthz and the dashboard's own
  // files needs a read token, as "Authorization: Bearer TOKEN" or (for the browser's
  // EventSource, which cannot send headers) ?access_token=TOKEN. Must outlive the server.
  const TokenAuthorizer* authorizer = nullptr;
  // Null: no per-client stream limit. Otherwise each event stream takes a slot of its
  // client's (see ClientLimits); one more is answered 429. Must outlive the server.
  ClientLimits* limits = nullptr;
  // With tls.cert and tls.key: HTTPS only; with tls.ca too, clients must present a
  // certificate that it signed.
  TlsPaths tls;
  // Every page but /healthz answers only requests whose Host is the server's own (see
  // HostCheck) or one of these names; others get 403.
  std::vector<std::string> allowed_hosts;
};

// OK when `max_streams` is in [1, kMaxHttpStreams]; for --http_max_streams.
absl::Status CheckMaxStreams(int max_streams);

// The HTTP status for a status code of the API (the mapping gRPC's HTTP gateways use).
int HttpStatusFor(absl::StatusCode code);

// Thread-safe. The registries and metrics must outlive it.
class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpOptions& options,
                                                           ExperimentRegistry& registry,
                                                           const SweepRegistry& sweeps,
                                                           ServerMetrics& metrics);
  // Shutdown().
  ~HttpServer();

  int port() const { return port_; }

  // Ends open event streams (within a second), stops listening and joins its threads.
  // Idempotent.
  void Shutdown();

 private:
  HttpServer(const HttpOptions& options, ExperimentRegistry& registry, const SweepRegistry& sweeps,
             ServerMetrics& metrics);
  void AddRoutes();
  void ServeEvents(const httplib::Request& request, httplib::Response& response);
  void ServeWatch(httplib::Response& response);
  // Streams `stream`'s frames as text/event-stream, or answers 503 past max_streams.
  void StartEventStream(std::unique_ptr<class EventStream> stream, const std::string& method,
                        const httplib::Request& request, httplib::Response& response);
  std::string RenderMetrics() const;

  const HttpOptions options_;
  ExperimentRegistry& registry_;
  const SweepRegistry& sweeps_;
  ServerMetrics& metrics_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::optional<HostCheck> host_check_;  // set once the port is bound, before serving
  std::thread listener_;
  std::atomic<int> open_streams_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> listener_returned_{false};
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_HTTP_HTTP_SERVER_H_
