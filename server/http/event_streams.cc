#include "server/http/event_streams.h"

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/proto_json.h"

namespace gradlab {

std::string ServerSentEvent(int64_t id, absl::string_view event, absl::string_view data) {
  std::string frame;
  if (id > 0) absl::StrAppend(&frame, "id: ", id, "\n");
  absl::StrAppend(&frame, "event: ", event, "\n");
  for (absl::string_view line : absl::StrSplit(data, '\n')) {
    absl::StrAppend(&frame, "data: ", line, "\n");
  }
  frame += "\n";
  return frame;
}

std::string EndEvent(const absl::Status& status) {
  return ServerSentEvent(
      0, "end",
      absl::StrCat("{\"code\":", JsonString(absl::StatusCodeToString(status.code())),
                   ",\"message\":", JsonString(status.message()), "}"));
}

void Wakeup::Notify() {
  absl::MutexLock lock(&mu_);
  notified_ = true;
}

bool Wakeup::WaitFor(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&notified_), timeout);
  const bool notified = notified_;
  notified_ = false;
  return notified;
}

ExperimentEventStream::ExperimentEventStream(std::shared_ptr<ExperimentLog> log,
                                             EventSelection selection)
    : log_(std::move(log)), selection_(selection), next_sequence_(selection.from_sequence) {
  if (selection_.metrics) {
    subscriptions_.push_back(log_->Subscribe(EventKind::kMetrics, [this] { more_.Notify(); }));
  }
  if (selection_.gradients) {
    subscriptions_.push_back(log_->Subscribe(EventKind::kGradients, [this] { more_.Notify(); }));
  }
}

ExperimentEventStream::~ExperimentEventStream() {
  for (int64_t subscription : subscriptions_) log_->Unsubscribe(subscription);
}

std::string ExperimentEventStream::NextFrame(absl::Duration timeout) {
  if (finished_) return "";
  for (bool waited = false;; waited = true) {
    ExperimentLog::Next<v1::MetricsEvent> metrics;
    ExperimentLog::Next<v1::GradientSnapshot> gradients;
    if (selection_.metrics) metrics = log_->NextMetrics(next_sequence_);
    if (selection_.gradients) gradients = log_->NextGradientsBySequence(next_sequence_);
    // The two kinds share one sequence: send whichever comes first.
    const bool metrics_first =
        metrics.event != nullptr &&
        (gradients.event == nullptr || metrics.event->sequence() < gradients.event->sequence());
    if (metrics_first) {
      next_sequence_ = metrics.event->sequence() + 1;
      return ServerSentEvent(metrics.event->sequence(), "metrics", ToJson(*metrics.event));
    }
    if (gradients.event != nullptr) {
      next_sequence_ = gradients.event->sequence() + 1;
      return ServerSentEvent(gradients.event->sequence(), "gradients", ToJson(*gradients.event));
    }
    // Nothing to send: the log has ended (both kinds end alike), or waits for more.
    const std::optional<absl::Status>& end = selection_.metrics ? metrics.end : gradients.end;
    if (end.has_value() || !selection_.follow) {
      finished_ = true;
      return EndEvent(end.value_or(absl::OkStatus()));
    }
    if (waited || !more_.WaitFor(timeout)) return "";
  }
}

ExperimentWatchStream::ExperimentWatchStream(ChangeFeed& changes)
    : cursor_(changes.NewCursor([this] { more_.Notify(); })) {}

std::string ExperimentWatchStream::NextFrame(absl::Duration timeout) {
  if (finished_) return "";
  for (bool waited = false;; waited = true) {
    ChangeCursor::Next next = cursor_->Read();
    if (next.end.has_value()) {
      finished_ = true;
      return EndEvent(*next.end);
    }
    if (next.experiment != nullptr && next.experiment->deleted()) {
      return ServerSentEvent(0, "removed",
                             absl::StrCat("{\"id\":", JsonString(next.experiment->id()), "}"));
    }
    if (next.experiment != nullptr)
      return ServerSentEvent(0, "experiment", ToJson(*next.experiment));
    if (waited || !more_.WaitFor(timeout)) return "";
  }
}

absl::StatusOr<std::unique_ptr<SweepEventStream>> SweepEventStream::Open(
    const SweepRegistry& sweeps, absl::string_view id, int64_t from_sequence, bool follow) {
  auto stream = absl::WrapUnique(new SweepEventStream());
  SweepEventStream& self = *stream;
  absl::StatusOr<std::unique_ptr<SweepReader>> reader =
      sweeps.WatchSweep(id, from_sequence, follow, [&self] { self.more_.Notify(); });
  if (!reader.ok()) return reader.status();
  stream->reader_ = *std::move(reader);
  return stream;
}

std::string SweepEventStream::NextFrame(absl::Duration timeout) {
  if (finished_) return "";
  for (bool waited = false;; waited = true) {
    SweepReader::Next next = reader_->Read();
    if (next.end.has_value()) {
      finished_ = true;
      return EndEvent(*next.end);
    }
    if (next.sweep.has_value())
      return ServerSentEvent(next.sweep->sequence(), "sweep", ToJson(*next.sweep));
    if (waited || !more_.WaitFor(timeout)) return "";
  }
}

}  // namespace gradlab
