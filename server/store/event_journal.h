// Where an experiment's event log keeps its events durably. The log calls Record with
// each event, in sequence order, before any reader can see it.
#ifndef GRADLAB_SERVER_STORE_EVENT_JOURNAL_H_
#define GRADLAB_SERVER_STORE_EVENT_JOURNAL_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

// At most this many recorded events are not yet durable at any moment. Batch progress
// and gradient snapshots are committed in batches of up to this size; state changes and
// epoch metrics are committed and synced, with any batch before them, before Record
// returns. After a crash the log goes on numbering past the stored events by this much,
// so that no sequence number a reader may have seen is given out again.
inline constexpr int kMaxUncommittedEvents = 64;

// How many events of the bounded kinds an experiment's log keeps, in memory and in the
// store alike; state changes and epoch metrics are always kept in full. The step-1
// gradient snapshot is kept besides the newest ones.
struct LogRetention {
  size_t batch_progress = 256;
  size_t gradient_snapshots = 2000;
};

// One experiment's events as read back from where they were kept, in sequence order, up to
// the first damaged one.
struct StoredEvents {
  std::vector<v1::MetricsEvent> metrics;
  std::vector<v1::GradientSnapshot> gradients;
  // OK, or DATA_LOSS naming the experiment and the sequence of the first event whose
  // checksum does not match or that does not parse; the events above are those before it.
  absl::Status damage;
};

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
