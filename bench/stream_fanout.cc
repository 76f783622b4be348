// stream_fanout: how many subscribers one running experiment can feed. Starts gradlabd's
// server in this process on a free port, runs the same training with 0, 10, 100 and 500
// subscribers that read every metrics and gradient event, and prints training images/s
// and event delivery latency (server timestamp to client receipt; one clock). Images/s
// is the mean over the epochs after the first (warm-up); the 0-subscriber baseline runs
// first and last, so that the table shows the machine's own drift. Latency counts only
// live events: those created after every subscriber's stream had delivered its first
// event, so replaying what was logged while 1,000 streams were being opened is not
// mistaken for delivery delay.
//
// --transport=grpc: each subscriber is a StreamMetrics and a StreamGradients stream
// (callback API, over --channels connections). --transport=http: each subscriber is what
// a dashboard opens, one Server-Sent Event stream of both kinds (/api/v1/experiments/ID/
// events), read and parsed from JSON on a thread of its own.
//
//   build/bench/stream_fanout [--transport=grpc|http] [--subscribers=0,10,100,500,0]
//       [--epochs=6] [--gradient_every_n_steps=10]
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gradlab/v1/experiment_service.grpc.pb.h"
#include "server/daemon/server.h"

ABSL_FLAG(std::string, transport, "grpc", "grpc (two streams per subscriber) or http (one SSE)");
ABSL_FLAG(std::string, subscribers, "0,10,100,500,0", "subscriber counts to measure");
ABSL_FLAG(int, epochs, 6, "epochs of the measured training (the first is not counted)");
ABSL_FLAG(int, channels, 10, "client channels the subscribers share");
ABSL_FLAG(int, training_niceness, 0, "the server's --training_niceness");
ABSL_FLAG(int, gradient_every_n_steps, 10,
          "the run's gradient snapshot cadence (0: only step 1 and each epoch's last step)");

namespace gradlab {
namespace {

absl::Time FromTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Collects delivery latencies from every subscriber, and knows when all of them are live.
class LatencyLog {
 public:
  explicit LatencyLog(int streams) : streams_waiting_(streams) {}

  void Add(absl::Time created, bool first_of_stream) {
    const absl::Time received = absl::Now();
    absl::MutexLock lock(&mu_);
    deliveries_.push_back({created, received - created});
    if (first_of_stream && --streams_waiting_ == 0) live_from_ = received;
  }
  // Latencies of the events created once every stream had delivered its first event.
  std::vector<double> LiveMillis() {
    absl::MutexLock lock(&mu_);
    std::vector<double> millis;
    if (streams_waiting_ > 0) return millis;
    for (const Delivery& d : deliveries_) {
      if (d.created >= live_from_) millis.push_back(absl::ToDoubleMilliseconds(d.latency));
    }
    std::sort(millis.begin(), millis.end());
    return millis;
  }

 private:
  struct Delivery {
    absl::Time created;
    absl::Duration latency;
  };
  absl::Mutex mu_;
  int streams_waiting_ ABSL_GUARDED_BY(mu_);
  absl::Time live_from_ ABSL_GUARDED_BY(mu_);
  std::vector<Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
};

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()))];
}

// A callback-API client stream that reads every event and records its latency.
template <typename Event>
class Subscriber : public grpc::ClientReadReactor<Event> {
 public:
  Subscriber(LatencyLog& latencies, absl::Notification& done)
      : latencies_(latencies), done_(done) {}
  void Begin() {
    this->StartRead(&event_);
    this->StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    latencies_.Add(FromTimestamp(event_.time()), /*first_of_stream=*/!started_);
    started_ = true;
    this->StartRead(&event_);
  }
  void OnDone(const grpc::Status&) override { done_.Notify(); }
  grpc::ClientContext context;

 private:
  LatencyLog& latencies_;
  absl::Notification& done_;
  Event event_;
  bool started_ = false;  // only touched by OnReadDone, which never runs twice at once
};

// A dashboard's event stream: every event of both kinds, over HTTP, until its end.
void ReadHttpEvents(int port, const std::string& path, LatencyLog& latencies,
                    absl::Notification& first_event) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(600, 0);
  std::string buffer;
  bool started = false;
  httplib::Result result = client.Get(path.c_str(), [&](const char* data, size_t length) {
    buffer.append(data, length);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos;) {
      std::string kind;
      std::string json;
      for (absl::string_view line : absl::StrSplit(buffer.substr(0, end), '\n')) {
        if (absl::ConsumePrefix(&line, "event: ")) kind = std::string(line);
        if (absl::ConsumePrefix(&line, "data: ")) json = std::string(line);
      }
      buffer.erase(0, end + 2);
      if (kind == "end") return false;
      google::protobuf::Timestamp time;
      if (kind == "metrics") {
        v1::MetricsEvent event;
        if (!google::protobuf::util::JsonStringToMessage(json, &event).ok()) std::abort();
        time = event.time();
      } else if (kind == "gradients") {
        v1::GradientSnapshot snapshot;
        if (!google::protobuf::util::JsonStringToMessage(json, &snapshot).ok()) std::abort();
        time = snapshot.time();
      } else {
        continue;
      }
      latencies.Add(FromTimestamp(time), /*first_of_stream=*/!started);
      if (!started) first_event.Notify();
      started = true;
    }
    return true;
  });
  if (!started) first_event.Notify();
  // Canceled: this reader ended the stream itself, at its `end` event.
  if (result.error() != httplib::Error::Canceled && (!result || result->status != 200)) {
    std::fprintf(stderr, "stream_fanout: an HTTP stream failed: %s\n",
                 result ? std::to_string(result->status).c_str()
                        : httplib::to_string(result.error()).c_str());
  }
}

struct Result {
  int subscribers;
  double images_per_second;
  double p50_ms, p99_ms;
  size_t live_events;
};

Result Measure(int subscribers, int epochs, int channel_count) {
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.registry.threads_per_job = 2;
  options.registry.training_niceness = absl::GetFlag(FLAGS_training_niceness);
  options.limits.max_streams_per_client = 0;  // every subscriber comes from this process
  const bool http = absl::GetFlag(FLAGS_transport) == "http";
  if (http) {
    options.http.listen = "127.0.0.1:0";
    options.http.max_streams = subscribers + 1;
  }
  absl::StatusOr<std::unique_ptr<GradlabServer>> server = GradlabServer::Start(options);
  if (!server.ok()) std::abort();
  std::vector<std::unique_ptr<v1::ExperimentService::Stub>> stubs;
  for (int c = 0; c < channel_count; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", c);  // a separate connection per channel
    stubs.push_back(v1::ExperimentService::NewStub(
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                  grpc::InsecureChannelCredentials(), args)));
  }
  v1::StartExperimentRequest request;
  v1::ExperimentSpec* spec = request.mutable_spec();
  spec->set_model("simple_cnn");
  spec->set_dataset("synthetic");
  spec->set_epochs(epochs);
  spec->set_max_train_samples(8192);
  spec->set_max_test_samples(512);
  spec->set_gradient_every_n_steps(absl::GetFlag(FLAGS_gradient_every_n_steps));
  grpc::ClientContext start_context;
  v1::Experiment experiment;
  if (!stubs[0]->StartExperiment(&start_context, request, &experiment).ok()) std::abort();

  LatencyLog latencies(http ? subscribers : 2 * subscribers);
  std::vector<std::thread> http_readers;
  std::vector<std::unique_ptr<absl::Notification>> done;
  std::vector<std::unique_ptr<Subscriber<v1::MetricsEvent>>> metrics;
  std::vector<std::unique_ptr<Subscriber<v1::GradientSnapshot>>> gradients;
  v1::StreamMetricsRequest metrics_request;
  metrics_request.set_id(experiment.id());
  v1::StreamGradientsRequest gradients_request;
  gradients_request.set_id(experiment.id());
  // One after another: cpp-httplib listens with a backlog of 5, and a burst of hundreds of
  // connects would measure TCP's SYN retries rather than the streams.
  std::vector<std::unique_ptr<absl::Notification>> connected;
  for (int i = 0; http && i < subscribers; ++i) {
    connected.push_back(std::make_unique<absl::Notification>());
    http_readers.emplace_back(ReadHttpEvents, (*server)->http_port(),
                              "/api/v1/experiments/" + experiment.id() + "/events",
                              std::ref(latencies), std::ref(*connected.back()));
    connected.back()->WaitForNotificationWithTimeout(absl::Seconds(10));
  }
  for (int i = 0; !http && i < subscribers; ++i) {
    auto& stub = stubs[i % stubs.size()];
    done.push_back(std::make_unique<absl::Notification>());
    metrics.push_back(std::make_unique<Subscriber<v1::MetricsEvent>>(latencies, *done.back()));
    stub->async()->StreamMetrics(&metrics.back()->context, &metrics_request, metrics.back().get());
    metrics.back()->Begin();
    done.push_back(std::make_unique<absl::Notification>());
    gradients.push_back(
        std::make_unique<Subscriber<v1::GradientSnapshot>>(latencies, *done.back()));
    stub->async()->StreamGradients(&gradients.back()->context, &gradients_request,
                                   gradients.back().get());
    gradients.back()->Begin();
  }

  // Follow the run to its end on a plain stream of our own and average its epochs.
  grpc::ClientContext context;
  auto stream = stubs[0]->StreamMetrics(&context, metrics_request);
  v1::MetricsEvent event;
  double images_per_second = 0;
  while (stream->Read(&event)) {
    if (event.has_epoch_metrics() && event.epoch_metrics().epoch() > 1) {
      images_per_second += event.epoch_metrics().images_per_second();
    }
  }
  stream->Finish();
  for (auto& d : done) d->WaitForNotification();
  for (std::thread& reader : http_readers) reader.join();
  (*server)->Shutdown();
  const std::vector<double> live = latencies.LiveMillis();
  return Result{subscribers, images_per_second / (epochs - 1), Percentile(live, 0.5),
                Percentile(live, 0.99), live.size()};
}

}  // namespace
}  // namespace gradlab

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_transport) != "grpc" && absl::GetFlag(FLAGS_transport) != "http") {
    std::fprintf(stderr, "stream_fanout: --transport must be grpc or http\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_epochs) < 2) {
    std::fprintf(stderr, "stream_fanout: --epochs must be at least 2 (the first is warm-up)\n");
    return 2;
  }
  std::printf(
      "| subscribers | images/s | vs 0 | live events delivered | p50 latency ms | p99 latency ms "
      "|\n");
  std::printf("|---:|---:|---:|---:|---:|---:|\n");
  double baseline = 0;
  for (absl::string_view count_text : absl::StrSplit(absl::GetFlag(FLAGS_subscribers), ',')) {
    int count = 0;
    if (!absl::SimpleAtoi(count_text, &count)) return 2;
    gradlab::Result r =
        gradlab::Measure(count, absl::GetFlag(FLAGS_epochs), absl::GetFlag(FLAGS_channels));
    if (count == 0 && baseline == 0) baseline = r.images_per_second;
    std::printf("| %d | %.1f | %s | %zu | %.2f | %.2f |\n", r.subscribers, r.images_per_second,
                baseline > 0
                    ? absl::StrFormat("%+.1f%%", 100 * (r.images_per_second / baseline - 1)).c_str()
                    : "-",
                r.live_events, r.p50_ms, r.p99_ms);
    std::fflush(stdout);
  }
  return 0;
}
