// Every change to the server's experiments as one sequence-numbered feed: what gRPC's
// WatchExperiments and the HTTP watch stream send, read through the same cursor. The
// feed keeps the newest state of each experiment (and a tombstone for each one deleted),
// numbered by the change that made it; a cursor reads them in that order. A slow reader
// so gets the newest state of each experiment once, never a growing backlog.
#ifndef GRADLAB_SERVER_EXPERIMENTS_CHANGE_FEED_H_
#define GRADLAB_SERVER_EXPERIMENTS_CHANGE_FEED_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "server/experiments/notifier.h"

namespace gradlab {

class ChangeFeed;

// One reader's place in the feed. Read from one thread at a time; its wake-up callback
// runs on the feed's notifier thread, one call at a time, and must not block nor create
// or destroy cursors. Destroying the cursor waits for a running wake-up to return.
class ChangeCursor {
 public:
  ~ChangeCursor();
  ChangeCursor(const ChangeCursor&) = delete;
  ChangeCursor& operator=(const ChangeCursor&) = delete;

  struct Next {
    // The newest state of the next changed experiment; `deleted` set when it was removed.
    std::shared_ptr<const v1::Experiment> experiment;
    // The feed has ended (the server shuts down): finish the stream with this status.
    std::optional<absl::Status> end;
  };
  // The next change after the previous one read, or neither field set: nothing new yet
  // (the wake-up callback runs when there is).
  Next Read();

 private:
  friend class ChangeFeed;
  ChangeCursor(ChangeFeed& feed, int64_t handle) : feed_(feed), handle_(handle) {}

  ChangeFeed& feed_;
  const int64_t handle_;
};

// Thread-safe. Publish is cheap (no I/O, no reader's code runs in it): callers may hold
// their own locks, and should, to publish one experiment's changes in the order made.
class ChangeFeed {
 public:
  ChangeFeed() = default;
  ~ChangeFeed();
  ChangeFeed(const ChangeFeed&) = delete;
  ChangeFeed& operator=(const ChangeFeed&) = delete;

  // `experiment` is the newest state of experiment.id(); with `deleted` set, its removal.
  void Publish(v1::Experiment experiment) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends every cursor's reading with `status` (UNAVAILABLE when the server shuts down).
  void Close(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);

  // A cursor that first reads every experiment there is now (not those deleted before),
  // then each change. `wake` runs after each Publish or Close that it has not read.
  std::unique_ptr<ChangeCursor> NewCursor(std::function<void()> wake)
      ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);

  int64_t last_sequence() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class ChangeCursor;

  struct Latest {
    int64_t sequence = 0;
    std::shared_ptr<const v1::Experiment> experiment;
  };
  struct Reader {
    int64_t position = 0;   // the sequence of the last change read
    int64_t opened_at = 0;  // tombstones up to this sequence are not news to it
  };

  ChangeCursor::Next Read(int64_t handle) ABSL_LOCKS_EXCLUDED(mu_);
  void RemoveCursor(int64_t handle) ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);
  // Drops the tombstones every reader has passed.
  void PruneTombstones() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeReaders() ABSL_LOCKS_EXCLUDED(wake_mu_);

  mutable absl::Mutex mu_;
  int64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Latest> latest_ ABSL_GUARDED_BY(mu_);        // by experiment id
  std::map<int64_t, std::string> by_sequence_ ABSL_GUARDED_BY(mu_);  // -> experiment id
  std::map<int64_t, std::string> tombstones_ ABSL_GUARDED_BY(mu_);   // deletions, likewise
  std::map<int64_t, Reader> readers_ ABSL_GUARDED_BY(mu_);           // by cursor handle
  int64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);

  // Held while wake-ups run, so that RemoveCursor waits for a running one to return. A
  // wake-up may read the feed (take mu_) under it; nothing takes it under mu_.
  absl::Mutex wake_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::map<int64_t, std::function<void()>> wakes_ ABSL_GUARDED_BY(wake_mu_);
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
  // Runs the wake-ups; declared last so that it is destroyed (and joined) first.
  Notifier notifier_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_CHANGE_FEED_H_
