#include "server/http/http_server.h"

#include <glog/logging.h>
#include <httplib.h>

#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/client_text.h"
#include "common/host_port.h"
#include "common/proto_json.h"
#include "common/request_limits.h"
#include "common/version.h"
#include "server/http/event_streams.h"
#include "server/metrics/prometheus_text.h"
#include "web/web_assets.h"

namespace gradlab {
namespace {

// How often a waiting event stream looks up from its log (to see a shutdown).
constexpr absl::Duration kStreamPollInterval = absl::Seconds(1);
constexpr char kJson[] = "application/json";

void ReplyError(httplib::Response& response, const absl::Status& status) {
  response.status = HttpStatusFor(status.code());
  response.set_content(absl::StrCat("{\"error\":{\"code\":", response.status, ",\"status\":",
                                    JsonString(absl::StatusCodeToString(status.code())),
                                    ",\"message\":", JsonString(status.message()), "}}"),
                       kJson);
}

template <typename Message>
void Reply(httplib::Response& response, const absl::StatusOr<Message>& result) {
  if (!result.ok()) {
    ReplyError(response, result.status());
    return;
  }
  response.set_content(ToJson(*result), kJson);
}

// An integer query parameter in [min, max], or `fallback` when absent.
absl::StatusOr<int64_t> IntParam(const httplib::Request& request, const char* name, int64_t min,
                                 int64_t max, int64_t fallback) {
  if (!request.has_param(name)) return fallback;
  const std::string text = request.get_param_value(name);
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", QuoteClientText(text),
                                                   " is not an integer in [", min, ", ", max, "]"));
  }
  return value;
}

absl::StatusOr<bool> BoolParam(const httplib::Request& request, const char* name, bool fallback) {
  if (!request.has_param(name)) return fallback;
  const std::string text = request.get_param_value(name);
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": ", QuoteClientText(text), " is not one of true, false, 1, 0"));
}

// Where an event stream starts: from_sequence, or after a reconnecting browser's
// Last-Event-ID; and whether it follows (default true).
absl::Status ParsePosition(const httplib::Request& request, int64_t& from_sequence, bool& follow) {
  // Any integer parses; which ones are allowed is the gRPC face's rule too.
  absl::StatusOr<int64_t> from = IntParam(request, "from_sequence", INT64_MIN, INT64_MAX, 0);
  if (!from.ok()) return from.status();
  if (absl::Status start = CheckStreamStart("from_sequence", *from); !start.ok()) return start;
  from_sequence = *from;
  // A browser reconnecting sends the id of the last event it had: go on after it.
  if (request.has_header("Last-Event-ID")) {
    absl::StatusOr<int64_t> after =
        SequenceAfterLastEventId(request.get_header_value("Last-Event-ID"));
    if (!after.ok()) return after.status();
    from_sequence = *after;
  }
  absl::StatusOr<bool> follows = BoolParam(request, "follow", true);
  if (!follows.ok()) return follows.status();
  follow = *follows;
  return absl::OkStatus();
}

absl::StatusOr<EventSelection> ParseEventSelection(const httplib::Request& request) {
  EventSelection selection;
  if (request.has_param("kinds")) {
    selection.metrics = selection.gradients = false;
    const std::string kinds = request.get_param_value("kinds");
    for (absl::string_view kind : absl::StrSplit(kinds, ',')) {
      if (kind == "metrics") {
        selection.metrics = true;
      } else if (kind == "gradients") {
        selection.gradients = true;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("kinds: ", QuoteClientText(kinds),
                         " is not a list of metrics, gradients (comma-separated)"));
      }
    }
  }
  if (absl::Status position = ParsePosition(request, selection.from_sequence, selection.follow);
      !position.ok()) {
    return position;
  }
  return selection;
}

// An open event stream: its frames, and what it counts while it lives.
struct OpenEventStream {
  OpenEventStream(std::unique_ptr<EventStream> events, ServerMetrics& metrics,
                  const std::string& method, std::atomic<int>& open_streams,
                  std::unique_ptr<ClientLimits::StreamSlot> client_slot)
      : stream(std::move(events)),
        counted(metrics, "http", method),
        open(open_streams),
        slot(std::move(client_slot)) {}
  ~OpenEventStream() { --open; }

  std::unique_ptr<EventStream> stream;
  ServerMetrics::OpenStream counted;
  std::atomic<int>& open;
  std::unique_ptr<ClientLimits::StreamSlot> slot;  // null without per-client limits
  absl::Time next_keepalive = absl::InfinitePast();
};

// HTTPS when a certificate is given (checked by is_valid()), plain HTTP otherwise.
std::unique_ptr<httplib::Server> NewHttplibServer(const TlsPaths& tls) {
  if (tls.cert.empty()) return std::make_unique<httplib::Server>();
  return std::make_unique<httplib::SSLServer>(tls.cert.c_str(), tls.key.c_str(),
                                              tls.ca.empty() ? nullptr : tls.ca.c_str());
}

}  // namespace

absl::Status CheckMaxStreams(int max_streams) {
  if (max_streams < 1 || max_streams > kMaxHttpStreams) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http_max_streams: ", max_streams, " is out of range [1, ", kMaxHttpStreams,
        "] (the HTTP library waits with select(), which handles descriptors below 1024 only)"));
  }
  return absl::OkStatus();
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpServer::HttpServer(const HttpOptions& options, ExperimentRegistry& registry,
                       const SweepRegistry& sweeps, ServerMetrics& metrics)
    : options_(options),
      registry_(registry),
      sweeps_(sweeps),
      metrics_(metrics),
      server_(NewHttplibServer(options.tls)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpOptions& options,
                                                              ExperimentRegistry& registry,
                                                              const SweepRegistry& sweeps,
                                                              ServerMetrics& metrics) {
  if (absl::Status status = CheckMaxStreams(options.max_streams); !status.ok()) return status;
  absl::StatusOr<HostPort> address = ParseHostPort(options.listen, "--http_listen");
  if (!address.ok()) return address.status();
  std::unique_ptr<HttpServer> server(new HttpServer(options, registry, sweeps, metrics));
  // Every event stream holds a thread; a few more answer everything else.
  const int threads = options.max_streams + 8;
  server->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server->server_->set_payload_max_length(64 * 1024);
  // cpp-httplib sets SO_REUSEPORT by default, which lets a second server listen on the same
  // port; SO_REUSEADDR alone still allows a restart while old connections linger.
  server->server_->set_socket_options([](int socket) {
    int yes = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->AddRoutes();
  const auto& [host, port] = *address;
  if (!server->server_->is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot serve HTTPS with --tls_cert ", options.tls.cert, " and --tls_key ", options.tls.key,
        options.tls.ca.empty() ? "" : " and --tls_client_ca ", options.tls.ca));
  }
  server->port_ = port == 0 ? server->server_->bind_to_any_port(host)
                            : (server->server_->bind_to_port(host, port) ? port : -1);
  if (server->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", options.listen,
                     " (address in use or invalid?); --http_listen=HOST:PORT picks another, "
                     "--http_listen= turns HTTP off"));
  }
  server->host_check_.emplace(host, server->port_, !options.tls.cert.empty(),
                              options.allowed_hosts);
  server->listener_ = std::thread([raw = server.get()] {
    raw->server_->listen_after_bind();
    raw->listener_returned_ = true;
  });
  // Running before Start returns: a stop() that came earlier would be missed, and the
  // listener would then never return.
  while (!server->server_->is_running() && !server->listener_returned_) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  LOG(INFO) << "dashboard and HTTP API on " << (options.tls.cert.empty() ? "http" : "https")
            << "://" << options.listen << " (port " << server->port_ << ")";
  return server;
}

HttpServer::~HttpServer() { Shutdown(); }

void HttpServer::Shutdown() {
  if (stopping_.exchange(true)) return;
  server_->stop();
  if (listener_.joinable()) listener_.join();
}

void HttpServer::AddRoutes() {
  httplib::Server& server = *server_;
  server.set_pre_routing_handler(
      [this](const httplib::Request& request, httplib::Response& response) {
        // Health is open to any name (probes and load balancers use addresses).
        if (request.path == "/healthz") return httplib::Server::HandlerResponse::Unhandled;
        const std::string host = request.get_header_value("Host");
        if (!host_check_->Allows(host)) {
          ReplyError(response, absl::PermissionDeniedError(host_check_->Refusal(host)));
          return httplib::Server::HandlerResponse::Handled;
        }
        // The dashboard's files are open: they show no experiment.
        if (options_.authorizer == nullptr || request.path == "/" ||
            absl::StartsWith(request.path, "/static/")) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        const std::string authorization =
            request.has_header("Authorization")
                ? request.get_header_value("Authorization")
                : (request.has_param("access_token")
                       ? "Bearer " + request.get_param_value("access_token")
                       : "");
        const absl::Status allowed = options_.authorizer->Authorize(authorization, Role::kRead);
        if (allowed.ok()) return httplib::Server::HandlerResponse::Unhandled;
        if (allowed.code() == absl::StatusCode::kUnauthenticated) {
          response.set_header("WWW-Authenticate", "Bearer realm=\"gradlab\"");
        }
        ReplyError(response, allowed);
        return httplib::Server::HandlerResponse::Handled;
      });
  auto serve_asset = [](const std::string& name, httplib::Response& response) {
    const WebAsset* asset = FindWebAsset(name);
    if (asset == nullptr) {
      ReplyError(response, absl::NotFoundError(absl::StrCat("no file /static/", name)));
      return;
    }
    response.set_header("Cache-Control", "no-cache");
    response.set_content(asset->content.data(), asset->content.size(),
                         std::string(asset->content_type));
  };
  server.Get("/", [serve_asset](const httplib::Request&, httplib::Response& response) {
    serve_asset("index.html", response);
  });
  server.Get(R"(/static/([A-Za-z0-9._-]+))",
             [serve_asset](const httplib::Request& request, httplib::Response& response) {
               serve_asset(request.matches[1], response);
             });
  server.Get("/healthz", [this](const httplib::Request&, httplib::Response& response) {
    const bool serving = !registry_.shutting_down() && !stopping_;
    response.status = serving ? 200 : 503;
    response.set_content(serving ? "ok\n" : "shutting down\n", "text/plain");
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(RenderMetrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/api/v1/server", [this](const httplib::Request&, httplib::Response& response) {
    Reply(response, absl::StatusOr<v1::ServerInfo>(registry_.ServerInfo()));
  });
  server.Get(
      "/api/v1/experiments", [this](const httplib::Request& request, httplib::Response& response) {
        absl::StatusOr<int64_t> page_size =
            IntParam(request, "page_size", INT32_MIN, INT32_MAX, 0);  // checked by the registry
        if (!page_size.ok()) return ReplyError(response, page_size.status());
        v1::ListExperimentsRequest list;
        list.set_page_size(static_cast<int32_t>(*page_size));
        list.set_page_token(request.get_param_value("page_token"));
        Reply(response, registry_.ListExperiments(list));
      });
  server.Get(R"(/api/v1/experiments/([^/]+))",
             [this](const httplib::Request& request, httplib::Response& response) {
               Reply(response, registry_.GetExperiment(request.matches[1].str()));
             });
  server.Get(R"(/api/v1/experiments/([^/]+)/snapshot)", [this](const httplib::Request& request,
                                                               httplib::Response& response) {
    absl::StatusOr<std::shared_ptr<ExperimentLog>> log =
        registry_.EventLog(request.matches[1].str());
    if (!log.ok()) return ReplyError(response, log.status());
    absl::StatusOr<int64_t> step = IntParam(request, "step", 0, INT64_MAX, -1);
    if (!step.ok()) return ReplyError(response, step.status());
    std::shared_ptr<const v1::GradientSnapshot> snapshot =
        *step < 0 ? (*log)->LatestSnapshot() : (*log)->NextGradients(*step).event;
    if (snapshot == nullptr) {
      return ReplyError(response,
                        absl::NotFoundError(absl::StrCat(
                            "experiment ", request.matches[1].str(), " has no gradient snapshot",
                            *step < 0 ? "" : absl::StrCat(" at or after step ", *step), " yet")));
    }
    Reply(response, absl::StatusOr<v1::GradientSnapshot>(*snapshot));
  });
  server.Get(R"(/api/v1/experiments/([^/]+)/events)",
             [this](const httplib::Request& request, httplib::Response& response) {
               ServeEvents(request, response);
             });
  server.Get(
      "/api/v1/sweeps", [this](const httplib::Request& request, httplib::Response& response) {
        absl::StatusOr<int64_t> page_size =
            IntParam(request, "page_size", INT32_MIN, INT32_MAX, 0);  // checked by the registry
        if (!page_size.ok()) return ReplyError(response, page_size.status());
        v1::ListSweepsRequest list;
        list.set_page_size(static_cast<int32_t>(*page_size));
        list.set_page_token(request.get_param_value("page_token"));
        Reply(response, sweeps_.ListSweeps(list));
      });
  server.Get(R"(/api/v1/sweeps/([^/]+))",
             [this](const httplib::Request& request, httplib::Response& response) {
               Reply(response, sweeps_.GetSweep(request.matches[1].str()));
             });
  server.Get(R"(/api/v1/sweeps/([^/]+)/events)", [this](const httplib::Request& request,
                                                        httplib::Response& response) {
    int64_t from_sequence = 0;
    bool follow = true;
    if (absl::Status position = ParsePosition(request, from_sequence, follow); !position.ok()) {
      return ReplyError(response, position);
    }
    absl::StatusOr<std::unique_ptr<SweepEventStream>> stream =
        SweepEventStream::Open(sweeps_, request.matches[1].str(), from_sequence, follow);
    if (!stream.ok()) return ReplyError(response, stream.status());
    StartEventStream(*std::move(stream), "sweep_events", request, response);
  });
  server.Get("/api/v1/watch", [this](const httplib::Request& request, httplib::Response& response) {
    StartEventStream(std::make_unique<ExperimentWatchStream>(registry_.changes()), "watch", request,
                     response);
  });
  server.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (response.status != 404 || !response.body.empty()) return;
    ReplyError(response,
               absl::NotFoundError(absl::StrCat(
                   request.method, " ", request.path,
                   ": no such page. GET /, /api/v1/experiments, /api/v1/experiments/ID, "
                   "/api/v1/experiments/ID/events, /api/v1/experiments/ID/snapshot, "
                   "/api/v1/sweeps, /api/v1/sweeps/ID, /api/v1/sweeps/ID/events, /api/v1/watch, "
                   "/api/v1/server, "
                   "/metrics or /healthz")));
  });
}

void HttpServer::ServeEvents(const httplib::Request& request, httplib::Response& response) {
  absl::StatusOr<std::shared_ptr<ExperimentLog>> log = registry_.EventLog(request.matches[1].str());
  if (!log.ok()) return ReplyError(response, log.status());
  absl::StatusOr<EventSelection> selection = ParseEventSelection(request);
  if (!selection.ok()) return ReplyError(response, selection.status());
  StartEventStream(std::make_unique<ExperimentEventStream>(*std::move(log), *selection), "events",
                   request, response);
}

void HttpServer::StartEventStream(std::unique_ptr<EventStream> stream, const std::string& method,
                                  const httplib::Request& request, httplib::Response& response) {
  std::unique_ptr<ClientLimits::StreamSlot> slot;
  if (options_.limits != nullptr) {
    absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> opened =
        options_.limits->OpenStream(request.remote_addr);
    if (!opened.ok()) return ReplyError(response, opened.status());
    slot = *std::move(opened);
  }
  if (open_streams_.fetch_add(1) >= options_.max_streams) {
    --open_streams_;
    response.set_header("Retry-After", "5");
    return ReplyError(response, absl::ResourceExhaustedError(absl::StrCat(
                                    "too many open event streams (", options_.max_streams,
                                    ", --http_max_streams); try again later")));
  }
  auto open = std::make_shared<OpenEventStream>(std::move(stream), metrics_, method, open_streams_,
                                                std::move(slot));
  response.set_header("Cache-Control", "no-cache");
  response.set_header("X-Accel-Buffering", "no");  // proxies such as nginx: do not buffer
  response.set_chunked_content_provider(
      "text/event-stream", [this, open](size_t, httplib::DataSink& sink) {
        while (true) {
          if (open->stream->finished()) {
            sink.done();
            return true;
          }
          if (stopping_) {
            const std::string end = EndEvent(absl::UnavailableError("server shutting down"));
            sink.write(end.data(), end.size());
            sink.done();
            return true;
          }
          std::string frame = open->stream->NextFrame(kStreamPollInterval);
          if (frame.empty()) {
            if (absl::Now() < open->next_keepalive) continue;
            frame = ": keep-alive\n\n";
          }
          open->next_keepalive = absl::Now() + options_.keepalive_interval;
          return sink.write(frame.data(), frame.size());
        }
      });
}

std::string HttpServer::RenderMetrics() const {
  PrometheusText text;
  using Type = PrometheusText::Type;
  text.Family("gradlab_build_info", Type::kGauge, "gradlabd's version, as a label; always 1.");
  text.Sample({{"version", kGradlabVersion}}, 1);

  const std::vector<v1::Experiment> experiments = registry_.AllExperiments();
  std::map<v1::ExperimentState, int> by_state = {
      {v1::QUEUED, 0}, {v1::RUNNING, 0}, {v1::SUCCEEDED, 0}, {v1::FAILED, 0}, {v1::CANCELLED, 0}};
  for (const v1::Experiment& experiment : experiments) ++by_state[experiment.state()];
  text.Family("gradlab_experiments", Type::kGauge, "Experiments the server knows, by state.");
  for (const auto& [state, count] : by_state) {
    text.Sample({{"state", v1::ExperimentState_Name(state)}}, count);
  }
  std::map<v1::ExperimentState, int> sweeps_by_state = {
      {v1::QUEUED, 0}, {v1::RUNNING, 0}, {v1::SUCCEEDED, 0}, {v1::FAILED, 0}, {v1::CANCELLED, 0}};
  for (const auto& [state, count] : sweeps_.CountByState()) sweeps_by_state[state] = count;
  text.Family("gradlab_sweeps", Type::kGauge, "Sweeps the server knows, by state.");
  for (const auto& [state, count] : sweeps_by_state) {
    text.Sample({{"state", v1::ExperimentState_Name(state)}}, count);
  }
  const v1::ServerInfo info = registry_.ServerInfo();
  text.Family("gradlab_queue_depth", Type::kGauge, "Experiments waiting in the queue.");
  text.Sample({}, info.queue_length());
  text.Family("gradlab_queue_capacity", Type::kGauge,
              "Experiments that may wait in the queue (--max_queue).");
  text.Sample({}, info.queue_capacity());
  text.Family("gradlab_workers", Type::kGauge, "Trainings that run at once (--workers).");
  text.Sample({}, info.workers());
  int training = 0;
  for (const v1::WorkerInfo& worker : info.registered_workers()) {
    if (!worker.experiment_id().empty()) ++training;
  }
  text.Family("gradlab_registered_workers", Type::kGauge,
              "Workers (gradlabd --worker) registered for data-parallel runs, by state.");
  text.Sample({{"state", "idle"}}, info.registered_workers_size() - training);
  text.Sample({{"state", "training"}}, training);

  // One sample per running experiment in each family below.
  struct Running {
    PrometheusLabels labels;
    const v1::Experiment* experiment;
    std::shared_ptr<const v1::MetricsEvent> progress;  // in the current epoch, or null
  };
  std::vector<Running> running;
  for (const v1::Experiment& experiment : experiments) {
    if (experiment.state() != v1::RUNNING) continue;
    Running entry{{{"experiment_id", experiment.id()},
                   {"name", experiment.name()},
                   {"model", experiment.spec().model()},
                   {"dataset", experiment.spec().dataset()}},
                  &experiment,
                  nullptr};
    if (absl::StatusOr<std::shared_ptr<ExperimentLog>> log = registry_.EventLog(experiment.id());
        log.ok()) {
      entry.progress = (*log)->LatestProgress();
      if (entry.progress != nullptr &&
          entry.progress->batch_progress().epoch() != experiment.current_epoch()) {
        entry.progress = nullptr;
      }
    }
    running.push_back(std::move(entry));
  }
  auto family = [&](const char* name, const char* help, auto value) {
    text.Family(name, Type::kGauge, help);
    for (const Running& entry : running) {
      if (std::optional<double> sample = value(entry); sample.has_value()) {
        text.Sample(entry.labels, *sample);
      }
    }
  };
  family("gradlab_experiment_epoch", "The epoch a running experiment is in (1-based).",
         [](const Running& r) -> std::optional<double> { return r.experiment->current_epoch(); });
  family("gradlab_experiment_epochs", "The epochs a running experiment will train.",
         [](const Running& r) -> std::optional<double> { return r.experiment->spec().epochs(); });
  family("gradlab_experiment_images_per_second",
         "Training speed of a running experiment: over its current epoch so far, else its "
         "last epoch.",
         [](const Running& r) -> std::optional<double> {
           if (r.progress != nullptr) return r.progress->batch_progress().images_per_second();
           if (r.experiment->last_metrics().epoch() > 0) {
             return r.experiment->last_metrics().images_per_second();
           }
           return std::nullopt;
         });
  family("gradlab_experiment_running_loss",
         "Mean training loss of a running experiment's current epoch so far.",
         [](const Running& r) -> std::optional<double> {
           if (r.progress == nullptr) return std::nullopt;
           return r.progress->batch_progress().running_loss();
         });
  family("gradlab_experiment_train_loss",
         "Training loss of a running experiment's last finished epoch.",
         [](const Running& r) -> std::optional<double> {
           if (r.experiment->last_metrics().epoch() == 0) return std::nullopt;
           return r.experiment->last_metrics().train_loss();
         });
  family("gradlab_experiment_test_accuracy",
         "Test accuracy (a fraction) of a running experiment's last finished epoch.",
         [](const Running& r) -> std::optional<double> {
           if (r.experiment->last_metrics().epoch() == 0) return std::nullopt;
           return r.experiment->last_metrics().test_accuracy();
         });
  metrics_.WriteTo(text);
  return text.text();
}

}  // namespace gradlab
