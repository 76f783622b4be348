// The key-value store the ranks of a data-parallel group meet through (what LibTorch's c10d
// calls a Store): each rank publishes the address of its Gloo connections under a key and
// reads the others'. Rank 0, on the coordinator, keeps the group's store in memory; the
// other ranks reach it over the coordinator's authenticated WorkerService (the worker's
// RemoteRendezvousStore), so the rendezvous is as guarded as the API and needs no port of
// its own. No LibTorch here: data_parallel.cc adapts a RendezvousStore to c10d's Store.
#ifndef GRADLAB_SERVER_ENGINE_RENDEZVOUS_STORE_H_
#define GRADLAB_SERVER_ENGINE_RENDEZVOUS_STORE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace gradlab {

// Thread-safe. c10d's operations, each answering at once (waiting for keys is the caller's:
// it polls Check). Values are bytes; Add keeps its integer as decimal text, as c10d does.
class RendezvousStore {
 public:
  virtual ~RendezvousStore() = default;

  virtual absl::Status Set(const std::string& key, const std::string& value) = 0;
  // NOT_FOUND when the key is absent.
  virtual absl::StatusOr<std::string> Get(const std::string& key) = 0;
  // Adds `amount` to the key's integer (0 when absent); the sum.
  virtual absl::StatusOr<int64_t> Add(const std::string& key, int64_t amount) = 0;
  // c10d's compareSet: sets `desired` when the key holds `expected` (or is absent and
  // `expected` is empty); returns the key's value afterwards (`expected` when it is absent).
  virtual absl::StatusOr<std::string> CompareSet(const std::string& key,
                                                 const std::string& expected,
                                                 const std::string& desired) = 0;
  // Whether there was such a key.
  virtual absl::StatusOr<bool> Delete(const std::string& key) = 0;
  // Whether every one of `keys` is present.
  virtual absl::StatusOr<bool> Check(const std::vector<std::string>& keys) = 0;
  virtual absl::StatusOr<int64_t> KeyCount() = 0;
};

// A group's store in the coordinator's memory. Bounded: a rank (or a worker token holder
// who is not one) cannot make it hold more than kMaxKeys keys of kMaxKeyBytes, with values
// of kMaxValueBytes; beyond them, INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming the limit.
// A group of N ranks stores a few keys per rank, each value a socket address.
class MemoryRendezvousStore final : public RendezvousStore {
 public:
  static constexpr size_t kMaxKeys = 4096;
  static constexpr size_t kMaxKeyBytes = 1024;
  static constexpr size_t kMaxValueBytes = 64 * 1024;

  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> Get(const std::string& key) override;
  absl::StatusOr<int64_t> Add(const std::string& key, int64_t amount) override;
  absl::StatusOr<std::string> CompareSet(const std::string& key, const std::string& expected,
                                         const std::string& desired) override;
  absl::StatusOr<bool> Delete(const std::string& key) override;
  absl::StatusOr<bool> Check(const std::vector<std::string>& keys) override;
  absl::StatusOr<int64_t> KeyCount() override;

 private:
  // OK when `key` may be stored with a value of `value_bytes` (counting whether it is new).
  absl::Status CheckRoom(const std::string& key, size_t value_bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_RENDEZVOUS_STORE_H_
