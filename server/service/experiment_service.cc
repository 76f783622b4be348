#include "server/service/experiment_service.h"

#include <glog/logging.h>
#include <re2/re2.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/client_text.h"
#include "common/grpc_status.h"
#include "common/request_limits.h"
#include "server/service/call_authorization.h"
#include "server/service/chunk_stream.h"
#include "server/service/rpc_replies.h"
#include "server/service/server_stream.h"

namespace gradlab {
namespace {

// Writes one experiment's events to one client: replays the log from a cursor, then
// follows it. The log's listener (on its notifier's thread) only calls Advance, so a
// client that stops reading holds nothing but its cursor and one message.
template <typename Event>
class LogStream : public ServerStream<Event> {
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
        follow_(follow),
        slot_(std::move(slot)),
        position_(position) {
    subscription_ = log_->Subscribe(cursor_.kind, [this] { this->Advance(); });
    this->Advance();
  }

 private:
  using Step = typename ServerStream<Event>::Step;

  Step Next() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    ExperimentLog::Next<Event> next = cursor_.next(*log_, position_);
    if (next.event != nullptr) {
      position_ = cursor_.after(*next.event);
      in_flight_ = cursor_.shape ? cursor_.shape(std::move(next.event)) : std::move(next.event);
      return this->Send(in_flight_.get());
    }
    if (next.end.has_value()) return this->End(ToGrpcStatus(*next.end));
    if (!follow_) return this->End(grpc::Status::OK);
    return this->Wait();  // for the log's next event
  }

  void Close() override { log_->Unsubscribe(subscription_); }

  const std::shared_ptr<ExperimentLog> log_;
  const Cursor cursor_;
  const bool follow_;
  const std::unique_ptr<ClientLimits::StreamSlot> slot_;  // counts this stream for its client
  int64_t subscription_ = 0;
  int64_t position_ ABSL_GUARDED_BY(this->mu_);
  std::shared_ptr<const Event> in_flight_ ABSL_GUARDED_BY(this->mu_);
};

// WatchExperiments: every experiment once, then each one that changes, read from the
// registry's change feed (which the HTTP watch stream reads too). A slow client gets
// the newest state of each changed experiment rather than a growing backlog.
class WatchStream : public ServerStream<v1::Experiment> {
 public:
  WatchStream(ChangeFeed& changes, std::unique_ptr<ClientLimits::StreamSlot> slot)
      : slot_(std::move(slot)) {
    // Made last: its wake-up may call Advance at once, from the feed's thread.
    std::unique_ptr<ChangeCursor> cursor = changes.NewCursor([this] { Advance(); });
    {
      absl::MutexLock lock(&mu_);
      cursor_ = std::move(cursor);
    }
    Advance();
  }

 private:
  Step Next() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (cursor_ == nullptr) return Wait();  // the constructor has not set it yet
    ChangeCursor::Next next = cursor_->Read();
    if (next.end.has_value()) return End(ToGrpcStatus(*next.end));
    if (next.experiment == nullptr) return Wait();
    in_flight_ = std::move(next.experiment);
    return Send(in_flight_.get());
  }

  // Stops the cursor's wake-ups (and waits for a running one, which may need mu_).
  void Close() override {
    std::unique_ptr<ChangeCursor> cursor;
    {
      absl::MutexLock lock(&mu_);
      cursor = std::move(cursor_);
    }
  }

  const std::unique_ptr<ClientLimits::StreamSlot> slot_;  // counts this stream for its client
  std::shared_ptr<const v1::Experiment> in_flight_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ChangeCursor> cursor_ ABSL_GUARDED_BY(mu_);
};

// StreamSweep: the sweep whole at each change, read through a SweepReader. A slow client
// gets its newest state rather than a backlog.
class SweepStream : public ServerStream<v1::Sweep> {
 public:
  explicit SweepStream(std::unique_ptr<ClientLimits::StreamSlot> slot) : slot_(std::move(slot)) {}

  // Separate from the constructor: the reader's wake-up needs the stream. An unknown
  // sweep ends the stream with NOT_FOUND.
  void Open(grpc::CallbackServerContext* context, SweepRegistry& sweeps,
            const v1::StreamSweepRequest& request) {
    absl::StatusOr<std::unique_ptr<SweepReader>> reader =
        sweeps.WatchSweep(request.id(), request.from_sequence(),
                          !request.has_follow() || request.follow(), [this] { Advance(); });
    {
      absl::MutexLock lock(&mu_);
      if (reader.ok()) {
        reader_ = *std::move(reader);
      } else {
        failed_ = ToGrpcStatus(reader.status());
        LogFailure("StreamSweep", context, *failed_);
      }
    }
    Advance();
  }

 private:
  Step Next() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (failed_.has_value()) return End(*failed_);
    if (reader_ == nullptr) return Wait();  // Open has not set it yet
    SweepReader::Next next = reader_->Read();
    if (next.end.has_value()) return End(ToGrpcStatus(*next.end));
    if (!next.sweep.has_value()) return Wait();
    in_flight_ = *std::move(next.sweep);
    return Send(&in_flight_);
  }

  // Stops the reader's wake-ups (and waits for a running one, which may need mu_).
  void Close() override {
    std::unique_ptr<SweepReader> reader;
    {
      absl::MutexLock lock(&mu_);
      reader = std::move(reader_);
    }
  }

  const std::unique_ptr<ClientLimits::StreamSlot> slot_;  // counts this stream for its client
  v1::Sweep in_flight_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SweepReader> reader_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> failed_ ABSL_GUARDED_BY(mu_);
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
  if (absl::Status allowed = AllowStart(context); !allowed.ok()) {
    return Reply("StartExperiment", context, allowed);
  }
  return Reply("StartExperiment", context, registry_.StartExperiment(*request), response);
}

absl::Status ExperimentServiceImpl::AllowStart(grpc::CallbackServerContext* context) {
  // Each caller has its own budget: its token, or its address on a server without tokens.
  const std::string caller = authorizer_ != nullptr ? std::string(AuthorizationOf(context))
                                                    : ClientAddress(context->peer());
  return limits_.AllowStart(caller);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::StartSweep(grpc::CallbackServerContext* context,
                                                            const v1::StartSweepRequest* request,
                                                            v1::Sweep* response) {
  if (absl::Status allowed = Authorize(context, Role::kWrite); !allowed.ok()) {
    return Reply("StartSweep", context, allowed);
  }
  if (absl::Status allowed = AllowStart(context); !allowed.ok()) {
    return Reply("StartSweep", context, allowed);
  }
  return Reply("StartSweep", context, sweeps_.StartSweep(*request), response);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetSweep(grpc::CallbackServerContext* context,
                                                          const v1::GetSweepRequest* request,
                                                          v1::Sweep* response) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return Reply("GetSweep", context, allowed);
  }
  return Reply("GetSweep", context, sweeps_.GetSweep(request->id()), response);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ListSweeps(grpc::CallbackServerContext* context,
                                                            const v1::ListSweepsRequest* request,
                                                            v1::ListSweepsResponse* response) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return Reply("ListSweeps", context, allowed);
  }
  return Reply("ListSweeps", context, sweeps_.ListSweeps(*request), response);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::CancelSweep(grpc::CallbackServerContext* context,
                                                             const v1::CancelSweepRequest* request,
                                                             v1::Sweep* response) {
  if (absl::Status allowed = Authorize(context, Role::kWrite); !allowed.ok()) {
    return Reply("CancelSweep", context, allowed);
  }
  // Answered once every run has stopped, on the thread of the last.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  sweeps_.CancelSweep(request->id(),
                      [context, reactor, response](absl::StatusOr<v1::Sweep> result) {
                        if (result.ok()) *response = *std::move(result);
                        const grpc::Status status = ToGrpcStatus(result.status());
                        LogFailure("CancelSweep", context, status);
                        reactor->Finish(status);
                      });
  return reactor;
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::DeleteSweep(grpc::CallbackServerContext* context,
                                                             const v1::DeleteSweepRequest* request,
                                                             v1::DeleteSweepResponse*) {
  if (absl::Status allowed = Authorize(context, Role::kWrite); !allowed.ok()) {
    return Reply("DeleteSweep", context, allowed);
  }
  return Reply("DeleteSweep", context, sweeps_.DeleteSweep(request->id()));
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
  absl::StatusOr<ExportedModel> model = registry_.ExportModel(request->id(), request->which(), request->format());
  if (!model.ok()) return new FailedStream<v1::ModelChunk>("ExportModel", context, model.status());
  return new ChunkStream(model->epoch, std::move(model->bytes), *std::move(slot));
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
  if (absl::Status start = CheckStreamStart("from_sequence", request->from_sequence());
      !start.ok()) {
    return new FailedStream<v1::MetricsEvent>("StreamMetrics", context, start);
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
  if (absl::Status start = CheckStreamStart("from_step", request->from_step()); !start.ok()) {
    return new FailedStream<v1::GradientSnapshot>("StreamGradients", context, start);
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
              absl::StrCat("layers: ", QuoteClientText(request->layers()),
                           " is not a valid regular expression: ", pattern->error())));
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
  return new WatchStream(registry_.changes(), *std::move(slot));
}

grpc::ServerWriteReactor<v1::Sweep>* ExperimentServiceImpl::StreamSweep(
    grpc::CallbackServerContext* context, const v1::StreamSweepRequest* request) {
  if (absl::Status allowed = Authorize(context, Role::kRead); !allowed.ok()) {
    return new FailedStream<v1::Sweep>("StreamSweep", context, allowed);
  }
  if (absl::Status start = CheckStreamStart("from_sequence", request->from_sequence());
      !start.ok()) {
    return new FailedStream<v1::Sweep>("StreamSweep", context, start);
  }
  absl::StatusOr<std::unique_ptr<ClientLimits::StreamSlot>> slot = OpenStream(context);
  if (!slot.ok()) return new FailedStream<v1::Sweep>("StreamSweep", context, slot.status());
  auto* stream = new SweepStream(*std::move(slot));
  stream->Open(context, sweeps_, *request);
  return stream;
}

absl::Status ExperimentServiceImpl::AllowModels(grpc::CallbackServerContext* context,
                                                Role needed) const {
  if (absl::Status allowed = Authorize(context, needed); !allowed.ok()) return allowed;
  if (models_ == nullptr) {
    return absl::FailedPreconditionError(
        "this gradlabd keeps no state (--state_dir is empty): it cannot keep uploaded models");
  }
  return absl::OkStatus();
}

namespace {

// UploadModel: the header, then the file's chunks, each appended to the upload as it
// arrives (one read in flight). The check, seconds in a helper process, runs on a thread
// of its own, never on gRPC's.
class UploadModelReactor : public grpc::ServerReadReactor<v1::UploadModelRequest> {
 public:
  UploadModelReactor(grpc::CallbackServerContext* context, ModelRegistry* models,
                     v1::ModelArtifact* response, const absl::Status& allowed)
      : context_(context), models_(models), response_(response) {
    if (!allowed.ok()) {
      Answer(allowed);
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client has sent everything (or gone)
      if (session_ == nullptr) {
        Answer(absl::InvalidArgumentError("the upload sent no header and no bytes"));
        return;
      }
      std::thread([this] {
        absl::StatusOr<v1::ModelArtifact> artifact = session_->Finish();
        if (artifact.ok()) *response_ = *std::move(artifact);
        Answer(artifact.status());
      }).detach();
      return;
    }
    if (session_ == nullptr) {
      if (!request_.has_header()) {
        Answer(absl::InvalidArgumentError(
            "the first message of an upload is its header (name, sha256), then the chunks"));
        return;
      }
      absl::StatusOr<std::unique_ptr<ModelUploadSession>> session =
          models_->BeginUpload(request_.header());
      if (!session.ok()) {
        Answer(session.status());
        return;
      }
      session_ = *std::move(session);
    } else {
      if (!request_.has_chunk()) {
        Answer(absl::InvalidArgumentError(
            "after the header, every message of an upload is a chunk of the file"));
        return;
      }
      if (absl::Status appended = session_->Append(request_.chunk()); !appended.ok()) {
        Answer(appended);
        return;
      }
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  // Finishes the call with `status` (OK too), logged.
  void Answer(const absl::Status& status) {
    const grpc::Status reply = ToGrpcStatus(status);
    LogFailure("UploadModel", context_, reply);
    Finish(reply);
  }

  grpc::CallbackServerContext* const context_;
  ModelRegistry* const models_;
  v1::ModelArtifact* const response_;
  v1::UploadModelRequest request_;
  std::unique_ptr<ModelUploadSession> session_;
};

}  // namespace

grpc::ServerReadReactor<v1::UploadModelRequest>* ExperimentServiceImpl::UploadModel(
    grpc::CallbackServerContext* context, v1::ModelArtifact* response) {
  return new UploadModelReactor(context, models_, response, AllowModels(context, Role::kWrite));
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::GetModel(grpc::CallbackServerContext* context,
                                                          const v1::GetModelRequest* request,
                                                          v1::ModelArtifact* response) {
  if (absl::Status allowed = AllowModels(context, Role::kRead); !allowed.ok()) {
    return Reply("GetModel", context, allowed);
  }
  return Reply("GetModel", context, models_->Get(request->id()), response);
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::ListModels(grpc::CallbackServerContext* context,
                                                            const v1::ListModelsRequest*,
                                                            v1::ListModelsResponse* response) {
  if (absl::Status allowed = AllowModels(context, Role::kRead); !allowed.ok()) {
    return Reply("ListModels", context, allowed);
  }
  for (v1::ModelArtifact& model : models_->List()) *response->add_models() = std::move(model);
  return Reply("ListModels", context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ExperimentServiceImpl::DeleteModel(grpc::CallbackServerContext* context,
                                                             const v1::DeleteModelRequest* request,
                                                             v1::DeleteModelResponse*) {
  if (absl::Status allowed = AllowModels(context, Role::kWrite); !allowed.ok()) {
    return Reply("DeleteModel", context, allowed);
  }
  return Reply("DeleteModel", context, models_->Delete(request->id()));
}

}  // namespace gradlab
