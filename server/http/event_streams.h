// The HTTP API's Server-Sent Event streams, as frames of text, with no HTTP in them:
//   ExperimentEventStream: one experiment's events (what StreamMetrics and StreamGradients
//     send), read from the same ExperimentLog with one cursor over both kinds, in sequence
//     order; each frame's `id:` is the event's sequence, so a browser resumes after a
//     disconnect from Last-Event-ID.
//   ExperimentWatchStream: every experiment once, then each one that changes (what
//     WatchExperiments sends).
//   SweepEventStream: one sweep, whole, at each change (what StreamSweep sends); each
//     frame's `id:` is the sweep's sequence.
// All end with an `end` event whose data is {"code": ..., "message": ...}, the status
// the gRPC stream would have finished with.
#ifndef GRADLAB_SERVER_HTTP_EVENT_STREAMS_H_
#define GRADLAB_SERVER_HTTP_EVENT_STREAMS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/experiments/change_feed.h"
#include "server/experiments/experiment_log.h"
#include "server/experiments/sweep_registry.h"

namespace gradlab {

// One SSE frame. `id` 0 sends no id line; `data` may span lines.
std::string ServerSentEvent(int64_t id, absl::string_view event, absl::string_view data);
// The final frame: event `end` with the status's code name and message as JSON.
std::string EndEvent(const absl::Status& status);

// A flag one thread raises and another waits for, with a timeout.
class Wakeup {
 public:
  void Notify() ABSL_LOCKS_EXCLUDED(mu_);
  // True when notified within `timeout` (or before); clears the flag.
  bool WaitFor(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
};

// Read by one thread (the HTTP connection's): NextFrame, then finished().
class EventStream {
 public:
  virtual ~EventStream() = default;
  // The next frame, waiting at most `timeout` for one; empty if none came in time. The
  // last frame is an EndEvent, after which finished() is true.
  virtual std::string NextFrame(absl::Duration timeout) = 0;
  bool finished() const { return finished_; }

 protected:
  bool finished_ = false;
};

struct EventSelection {
  bool metrics = true;    // state changes, epoch metrics, batch progress
  bool gradients = true;  // gradient snapshots
  // The first event sent is the first kept one with sequence >= from_sequence.
  int64_t from_sequence = 0;
  // After the replay, follow the live events until the experiment finishes; otherwise
  // end once the kept events are sent.
  bool follow = true;
};

class ExperimentEventStream : public EventStream {
 public:
  ExperimentEventStream(std::shared_ptr<ExperimentLog> log, EventSelection selection);
  ~ExperimentEventStream() override;

  // Frames are `event: metrics` (a MetricsEvent) or `event: gradients` (a
  // GradientSnapshot), data in the protobuf JSON mapping.
  std::string NextFrame(absl::Duration timeout) override;

 private:
  const std::shared_ptr<ExperimentLog> log_;
  const EventSelection selection_;
  int64_t next_sequence_;
  // Raised by the log's listeners (on its notifier thread) when there is more to read.
  Wakeup more_;
  std::vector<int64_t> subscriptions_;
};

class ExperimentWatchStream : public EventStream {
 public:
  explicit ExperimentWatchStream(ChangeFeed& changes);

  // Frames are `event: experiment`, data an Experiment in the protobuf JSON mapping, or
  // `event: removed`, data {"id": ...}, for one deleted since.
  std::string NextFrame(absl::Duration timeout) override;

 private:
  // Raised by the cursor's wake-up (on the feed's notifier thread). Declared before the
  // cursor, so that it outlives the cursor's last wake-up.
  Wakeup more_;
  const std::unique_ptr<ChangeCursor> cursor_;
};

class SweepEventStream : public EventStream {
 public:
  // NOT_FOUND for an unknown sweep.
  static absl::StatusOr<std::unique_ptr<SweepEventStream>> Open(const SweepRegistry& sweeps,
                                                                absl::string_view id,
                                                                int64_t from_sequence, bool follow);

  // Frames are `event: sweep`, data a Sweep in the protobuf JSON mapping.
  std::string NextFrame(absl::Duration timeout) override;

 private:
  SweepEventStream() = default;

  // Raised by the reader's wake-up. Declared before the reader, so that it outlives the
  // reader's last wake-up.
  Wakeup more_;
  std::unique_ptr<SweepReader> reader_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_HTTP_EVENT_STREAMS_H_
