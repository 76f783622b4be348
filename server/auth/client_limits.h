// Limits against a careless or hostile client, each answered with RESOURCE_EXHAUSTED:
// streams open at once per client address (gRPC server streams and HTTP event streams
// together), and StartExperiment calls per minute per caller (its token, or its address on
// a server without tokens). Knows nothing of gRPC or HTTP. Thread-safe.
#ifndef GRADLAB_SERVER_AUTH_CLIENT_LIMITS_H_
#define GRADLAB_SERVER_AUTH_CLIENT_LIMITS_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace gradlab {

struct ClientLimitOptions {
  int max_streams_per_client = 32;  // 0: no limit
  int max_starts_per_minute = 60;   // 0: no limit
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class ClientLimits {
 public:
  explicit ClientLimits(ClientLimitOptions options) : options_(std::move(options)) {}

  // Holds one of a client's streams open; closing it (destroying it) frees it.
  class StreamSlot {
   public:
    StreamSlot(ClientLimits& limits, std::string client)
        : limits_(limits), client_(std::move(client)) {}
    ~StreamSlot() { limits_.CloseStream(client_); }
    StreamSlot(const StreamSlot&) = delete;
    StreamSlot& operator=(const StreamSlot&) = delete;

   private:
    ClientLimits& limits_;
    const std::string client_;
  };

  // A slot for one more stream of `client` (an address), or RESOURCE_EXHAUSTED.
  absl::StatusOr<std::unique_ptr<StreamSlot>> OpenStream(const std::string& client)
      ABSL_LOCKS_EXCLUDED(mu_);
  // OK and counted, or RESOURCE_EXHAUSTED when `caller` started max_starts_per_minute
  // experiments in the last minute. `caller` is never shown in the error.
  absl::Status AllowStart(const std::string& caller) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void CloseStream(const std::string& client) ABSL_LOCKS_EXCLUDED(mu_);

  const ClientLimitOptions options_;
  absl::Mutex mu_;
  std::map<std::string, int> open_streams_ ABSL_GUARDED_BY(mu_);  // no entries at 0
  // The times of each caller's starts within the last minute, oldest first.
  std::map<std::string, std::deque<absl::Time>> recent_starts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_AUTH_CLIENT_LIMITS_H_
