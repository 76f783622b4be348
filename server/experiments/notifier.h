// A thread that runs the stream notifications of every experiment log, so that the
// training thread that appends an event never does work per subscriber: it hands one
// task over and goes back to training. Notifications of one log are coalesced while one
// is pending, so the queue holds at most one task per log.
#ifndef GRADLAB_SERVER_EXPERIMENTS_NOTIFIER_H_
#define GRADLAB_SERVER_EXPERIMENTS_NOTIFIER_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace gradlab {

// Thread-safe. Tasks run one at a time, in the order scheduled, on the notifier's own
// thread; the destructor runs what is queued, then joins.
class Notifier {
 public:
  Notifier();
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  void Schedule(std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_EXPERIMENTS_NOTIFIER_H_
