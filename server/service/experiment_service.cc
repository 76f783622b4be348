#include "server/service/experiment_service.h"

#include <glog/logging.h>
#include <re2/re2.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "server/service/call_authorization.h"
#include "server/service/rpc_replies.h"

namespace gradlab {
namespace {

// A stream that ends at once with an error (bad request, unknown id).
template <typename Event>
class FailedStream : public grpc::ServerWriteReactor<Event> {
 public:
  FailedStream(const char* method, grpc::CallbackServerContext* context, absl::Status status) {
    const grpc::Status grpc_status = ToGrpcStatus(status);
    LogFailure(method, context, grpc_status);
    this->Finish(grpc_status);
  }
  void OnDone() override { delete this; }
};

// Writes one experiment's events to one client: replays the log from a cursor, then
// follows it. One write in flight; the log's listener only wakes the reactor, so a
// client that stops reading holds nothing but its cursor and one message.
//
// Threads: the log's listener runs on its notifier's thread, OnWriteDone and OnCancel on
// gRPC's. Neither blocks: both take mu_ briefly and start at most one write.
template <typename Event>
class LogStream : public grpc::ServerWriteReactor<Event> {
 public:
  struct Cursor {
    // Which appends wake the stream.
    EventKind kind;
    // The next event at or after `position`.
    std::function<ExperimentLog::Next<Event>(const ExperimentLog&, int64_t position)> next;
    // The position after `event`.
    std::function<int64_t(const Event& event)> after;
    // What is sent for `event` (e.g. only some layers); returns `event` itself by default.
    std::function<std::shared_ptr<const Event>(std::shared_ptr<const Event>)> shape;
  };

  LogStream(std::shared_ptr<ExperimentLog> log, Cursor cursor, int64_t position, bool follow,
            std::unique_ptr<ClientLimits::StreamSlot> slot)
      : log_(std::move(log)),
        cursor_(std::move(cursor)),
        position_(position),
        follow_(follow),
        slot_(std::move(slot)) {
    subscription_ = log_->Subscribe(cursor_.kind, [this] { WriteNextIfIdle(); });
    WriteNextIfIdle();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {  // the client has gone
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      in_flight_.reset();
    }
    WriteNextIfIdle();
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    log_->Unsubscribe(subscription_);
    delete this;
  }

 private:
  void WriteNextIfIdle() {
    std::optional<grpc::Status> finish;
    const Event* to_write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      ExperimentLog::Next<Event> next = cursor_.next(*log_, position_);
      if (next.event != nullptr) {
        position_ = cursor_.after(*next.event);
        in_flight_ = cursor_.shape ? cursor_.shape(std::move(next.event)) : std::move(next.event);
        to_write = in_flight_.get();
        writing_ = true;
      } else if (next.end.has_value()) {
        finish = ToGrpcStatus(*next.end);
      } else if (!follow_) {
        finish = grpc::Status::OK;
      } else {
        return;  // wait for the log's next event
      }
      if (finish.has_value()) finished_ = true;
    }
    if (to_write != nullptr) {
      this->StartWrite(to_write);
    } else {
      this->Finish(*finish);
    }
  }

  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    this->Finish(status);
  }

  const std::shared_ptr<ExperimentLog> log_;
  const Cursor cursor_;
  int64_t subscription_ = 0;
  absl::Mutex mu_;
  int64_t position_ ABSL_GUARDED_BY(mu_);
  const bool follow_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<const Event> in_flight_ ABSL_GUARDED_BY(mu_);
  const std::unique_ptr<ClientLimits::StreamSlot> slot_;  // counts this stream for its client
};

// WatchExperiments: every experiment once, then each one that changes. Changes are
// coalesced per experiment, so a slow client gets the newest state of each rather than
// a growing backlog. Threads as in LogStream; the listener runs on whichever thread
// changed the experiment.
class WatchStream : public grpc::ServerWriteReactor<v1::Experiment> {
 public:
  WatchStream(ExperimentRegistry& registry, std::unique_ptr<ClientLimits::StreamSlot> slot)
      : registry_(registry), slot_(std::move(slot)) {
    // Listen first, then take the snapshot: a change in between is sent twice at worst.
    subscription_ = registry_.AddChangeListener([this](const std::string& id) { OnChange(id); });
    {
      absl::MutexLock lock(&mu_);
      for (const v1::Experiment& experiment : registry_.AllExperiments()) {
        Enqueue(experiment.id());
      }
    }
    WriteNextIfIdle();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    WriteNextIfIdle();
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    registry_.RemoveChangeListener(subscription_);
    delete this;
  }

 private:
  void OnChange(const std::string& id) {
    if (!id.empty()) {
      absl::MutexLock lock(&mu_);
      Enqueue(id);
    }
    WriteNextIfIdle();
  }

  void Enqueue(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pending_set_.insert(id).second) pending_.push_back(id);
  }

  void WriteNextIfIdle() {
    bool shutting_down = false;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (registry_.shutting_down()) {
        finished_ = shutting_down = true;
      } else {
        while (!pending_.empty()) {
          const std::string id = pending_.front();
          pending_.pop_front();
          pending_set_.erase(id);
          absl::StatusOr<v1::Experiment> experiment = registry_.GetExperiment(id);
          if (!experiment.ok()) continue;
          in_flight_ = *std::move(experiment);
          writing_ = true;
          break;
        }
        if (!writing_) return;
      }
    }
    if (shutting_down) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "server shutting down"));
    } else {
      StartWrite(&in_flight_);
    }
  }

  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  ExperimentRegistry& registry_;
  int64_t subscription_ = 0;
  absl::Mutex mu_;
  std::deque<std::string> pending_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> pending_set_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // Written only while !writing_, read by gRPC while writing_.
  v1::Experiment in_flight_;
  const std::unique_ptr<ClientLimits::StreamSlot> slot_;  // counts this stream for its client
};

// ExportModel: the exported file in chunks, one write in flight.
class ChunkStream : public grpc::ServerWriteReactor<v1::ModelChunk> {
 public:
  // Well under gRPC's default 4 MiB message limit.
  static constexpr size_t kChunkBytes = 1 << 20;

  ChunkStream(ExportedModel model, std::unique_ptr<ClientLimits::StreamSlot> slot)
      : model_(std::move(model)), slot_(std::move(slot)) {
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    const std::string& bytes = model_.state_dict;
    if (offset_ == bytes.size() && offset_ > 0) {
      Finish(grpc::Status::OK);
      return;
    }
    chunk_.Clear();
    if (offset_ == 0) {
      chunk_.set_epoch(model_.epoch);
      chunk_.set_total_bytes(static_cast<int64_t>(bytes.size()));
    }
    const size_t n = std::min(kChunkBytes, bytes.size() - offset_);
    chunk_.set_data(bytes.substr(offset_, n));
    offset_ += n;
    if (bytes.empty()) offset_ = 1;  // one empty chunk, then the end
    StartWrite(&chunk_);
  }

  const ExportedModel model_;
  const std::unique_ptr<ClientLimits::StreamSlot> slot_;  // counts this stream for its client
  size_t offset_ = 0;
  v1::ModelChunk chunk_;  // written only while no write is in flight
};

// Keeps only the layers and activations whose names `pattern` finds.
std::shared_ptr<const v1::GradientSnapshot> FilterLayers(
    const std::shared_ptr<const RE2>& pattern, std::shared_ptr<const v1::GradientSnapshot> full) {
  auto filtered = std::make_shared<v1::GradientSnapshot>(*full);
  filtered->clear_layers();
  filtered->clear_activations();
  for (const v1::LayerGradient& layer : full->layers()) {
    if (RE2::PartialMatch(layer.name(), *pattern)) *filtered->add_layers() = layer;
  }
  for (const v1::LayerActivation& activation : full->activations()) {
    if (RE2::PartialMatch(activation.name(), *pattern)) *filtered->add_activations() = activation;
  }
  return filtered;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> ExperimentServiceImpl::OpenStream(
    grpc::CallbackServerContext* context) {
  return limits_.OpenStream(ClientAddress(context->peer()));
}

absl::Status ExperimentServiceImpl::Authorize(grpc::CallbackServerContext* context,
                                              Role needed) const {
  return AuthorizeCall(authorizer_, context, needed);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::StartExperiment(
    grpc::CallbackServerContext* context, const v1::StartExperimentRequest* request,
    v1::Experiment* response) {
  if (absl::Status allowed = Authorize(context, Role::kWrite); !allowed.ok()) {
    return Reply("StartExperiment", context, allowed);
  }
  // Each caller has its own budget: its token, or its address on a server without tokens.
  const std::string caller = authorizer_ != nullptr ? std::string(AuthorizationOf(context))
                                                    : ClientAddress(context->peer());
  if (absl::Status allowed = limits_.AllowStart(caller); !allowed.ok()) {
    return Reply("StartExperiment", context, allowed);
  }
  return Reply("StartExperiment", context, registry_.StartExperiment(*request), response);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetExperiment(
    grpc::CallbackServerContext* context, const v1::GetExperimentRequest* request,
    v1::Experiment* response) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return Reply("GetExperiment", context, allowed);
  }
  return Reply("GetExperiment", context, registry_.GetExperiment(request->id()), response);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ListExperiments(
    grpc::CallbackServerContext* context, const v1::ListExperimentsRequest* request,
    v1::ListExperimentsResponse* response) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return Reply("ListExperiments", context, allowed);
  }
  return Reply("ListExperiments", context, registry_.ListExperiments(*request), response);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::CancelExperiment(
    grpc::CallbackServerContext* context, const v1::CancelExperimentRequest* request,
    v1::Experiment* response) {
  if (absl::Status allowed = Authorize(context, Role::kWrite); !allowed.ok()) {
    return Reply("CancelExperiment", context, allowed);
  }
  // The registry answers once a running experiment has stopped, on the worker thread.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  registry_.CancelExperiment(request->id(),
                             [context, reactor, response](absl::StatusOr<v1::Experiment> result) {
                               if (result.ok()) *response = *std::move(result);
                               const grpc::Status status = ToGrpcStatus(result.status());
                               LogFailure("CancelExperiment", context, status);
                               reactor->Finish(status);
                             });
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::DeleteExperiment(
    grpc::CallbackServerContext* context, const v1::DeleteExperimentRequest* request,
    v1::DeleteExperimentResponse*) {
  if (absl::Status allowed = Authorize(context, Role::kWrite); !allowed.ok()) {
    return Reply("DeleteExperiment", context, allowed);
  }
  return Reply("DeleteExperiment", context, registry_.DeleteExperiment(request->id()));
}

grpc::ServerWriteReactor<v1::ModelChunk>* ExperimentServiceImpl::ExportModel(
    grpc::CallbackServerContext* context, const v1::ExportModelRequest* request) {
  if (absl::Status allowed = Authorize(context, Role::kWrite); !allowed.ok()) {
    return new FailedStream<v1::ModelChunk>("ExportModel", context, allowed);
  }
  absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> slot = OpenStream(context);
  if (!slot.ok()) return new FailedStream<v1::ModelChunk>("ExportModel", context, slot.status());
  absl::StatusOr<ExportedModel> model = registry_.ExportModel(request->id(), request->which());
  if (!model.ok()) return new FailedStream<v1::ModelChunk>("ExportModel", context, model.status());
  return new ChunkStream(*std::move(model), *std::move(slot));
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetServerInfo(grpc::CallbackServerContext* context,
                                                               const v1::GetServerInfoRequest*,
                                                               v1::ServerInfo* response) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return Reply("GetServerInfo", context, allowed);
  }
  return Reply("GetServerInfo", context, absl::StatusOr<v1::ServerInfo>(registry_.ServerInfo()),
               response);
}

grpc::ServerWriteReactor<v1::MetricsEvent>* ExperimentServiceImpl::StreamMetrics(
    grpc::CallbackServerContext* context, const v1::StreamMetricsRequest* request) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return new FailedStream<v1::MetricsEvent>("StreamMetrics", context, allowed);
  }
  absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> slot = OpenStream(context);
  if (!slot.ok()) {
    return new FailedStream<v1::MetricsEvent>("StreamMetrics", context, slot.status());
  }
  absl::StatusOr<std::shared_ptr<ExperimentLog>> log = registry_.EventLog(request->id());
  if (!log.ok()) return new FailedStream<v1::MetricsEvent>("StreamMetrics", context, log.status());
  LogStream<v1::MetricsEvent>::Cursor cursor;
  cursor.kind = EventKind::kMetrics;
  cursor.next = [](const ExperimentLog& l, int64_t sequence) { return l.NextMetrics(sequence); };
  cursor.after = [](const v1::MetricsEvent& event) { return event.sequence() + 1; };
  return new LogStream<v1::MetricsEvent>(
      *std::move(log), std::move(cursor), request->from_sequence(),
      !request->has_follow() || request->follow(), *std::move(slot));
}

grpc::ServerWriteReactor<v1::GradientSnapshot>* ExperimentServiceImpl::StreamGradients(
    grpc::CallbackServerContext* context, const v1::StreamGradientsRequest* request) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return new FailedStream<v1::GradientSnapshot>("StreamGradients", context, allowed);
  }
  absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> slot = OpenStream(context);
  if (!slot.ok()) {
    return new FailedStream<v1::GradientSnapshot>("StreamGradients", context, slot.status());
  }
  absl::StatusOr<std::shared_ptr<ExperimentLog>> log = registry_.EventLog(request->id());
  if (!log.ok()) {
    return new FailedStream<v1::GradientSnapshot>("StreamGradients", context, log.status());
  }
  LogStream<v1::GradientSnapshot>::Cursor cursor;
  cursor.kind = EventKind::kGradients;
  cursor.next = [](const ExperimentLog& l, int64_t step) { return l.NextGradients(step); };
  cursor.after = [](const v1::GradientSnapshot& snapshot) { return snapshot.step() + 1; };
  if (!request->layers().empty()) {
    auto pattern = std::make_shared<const RE2>(request->layers(), RE2::Quiet);
    if (!pattern->ok()) {
      return new FailedStream<v1::GradientSnapshot>(
          "StreamGradients", context,
          absl::InvalidArgumentError(
              absl::StrCat("layers: \"", request->layers(),
                           "\" is not a valid regular expression: ", pattern->error())));
    }
    cursor.shape = [pattern](std::shared_ptr<const v1::GradientSnapshot> snapshot) {
      return FilterLayers(pattern, std::move(snapshot));
    };
  }
  return new LogStream<v1::GradientSnapshot>(
      *std::move(log), std::move(cursor), request->from_step(),
      !request->has_follow() || request->follow(), *std::move(slot));
}

grpc::ServerWriteReactor<v1::Experiment>* ExperimentServiceImpl::WatchExperiments(
    grpc::CallbackServerContext* context, const v1::WatchExperimentsRequest*) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return new FailedStream<v1::Experiment>("WatchExperiments", context, allowed);
  }
  absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> slot = OpenStream(context);
  if (!slot.ok())
    return new FailedStream<v1::Experiment>("WatchExperiments", context, slot.status());
  return new WatchStream(registry_, *std::move(slot));
}

}  // namespace gradlab
