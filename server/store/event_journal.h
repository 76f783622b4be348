// Where an experiment's event log keeps its events durably. The log calls Record with
// each event, in sequence order, before any reader can see it.
#ifndef GRADLAB_SERVER_STORE_EVENT_JOURNAL_H_
#define GRADLAB_SERVER_STORE_EVENT_JOURNAL_H_

#include "absl/status/status.h"
#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

// At most this many recorded events are not yet durable at any moment. Batch progress
// and gradient snapshots are committed in batches of up to this size; state changes and
// epoch metrics are committed and synced, with any batch before them, before Record
// returns. After a crash the log goes on numbering past the stored events by this much,
// so that no sequence number a reader may have seen is given out again.
inline constexpr int kMaxUncommittedEvents = 64;

class EventJournal {
 public:
  virtual ~EventJournal() = default;
  // An error means the event is not stored; the log then does not publish it.
  virtual absl::Status Record(const v1::MetricsEvent& event) = 0;
  virtual absl::Status Record(const v1::GradientSnapshot& snapshot) = 0;
  // Commits what is batched.
  virtual absl::Status Flush() = 0;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_STORE_EVENT_JOURNAL_H_
