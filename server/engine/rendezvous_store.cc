#include "server/engine/rendezvous_store.h"

#include <cstdint>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/client_text.h"

namespace gradlab {

absl::Status MemoryRendezvousStore::CheckRoom(const std::string& key, size_t value_bytes) const {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a rendezvous key must have 1 to ", kMaxKeyBytes,
                                                   " bytes (given: ", QuoteClientText(key), ")"));
  }
  if (value_bytes > kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a rendezvous value may have at most ",
                                                   kMaxValueBytes, " bytes (given: ", value_bytes,
                                                   " for key ", QuoteClientText(key), ")"));
  }
  if (values_.size() >= kMaxKeys && values_.count(key) == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the group's rendezvous holds its most keys (", kMaxKeys, ")"));
  }
  return absl::OkStatus();
}

absl::Status MemoryRendezvousStore::Set(const std::string& key, const std::string& value) {
  absl::MutexLock lock(&mu_);
  if (absl::Status room = CheckRoom(key, value.size()); !room.ok()) return room;
  values_[key] = value;
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryRendezvousStore::Get(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = values_.find(key);
  if (it == values_.end()) {
    return absl::NotFoundError(
        absl::StrCat("the rendezvous has no key ", QuoteClientText(key), " yet"));
  }
  return it->second;
}

absl::StatusOr<int64_t> MemoryRendezvousStore::Add(const std::string& key, int64_t amount) {
  absl::MutexLock lock(&mu_);
  if (absl::Status room = CheckRoom(key, 0); !room.ok()) return room;
  int64_t sum = 0;
  auto it = values_.find(key);
  if (it != values_.end() && !absl::SimpleAtoi(it->second, &sum)) {
    return absl::FailedPreconditionError(
        absl::StrCat("rendezvous key ", QuoteClientText(key), " holds no integer to add to"));
  }
  if ((amount > 0 && sum > INT64_MAX - amount) || (amount < 0 && sum < INT64_MIN - amount)) {
    return absl::OutOfRangeError(
        absl::StrCat("adding ", amount, " to rendezvous key ", QuoteClientText(key), " overflows"));
  }
  sum += amount;
  values_[key] = absl::StrCat(sum);
  return sum;
}

absl::StatusOr<std::string> MemoryRendezvousStore::CompareSet(const std::string& key,
                                                              const std::string& expected,
                                                              const std::string& desired) {
  absl::MutexLock lock(&mu_);
  if (absl::Status room = CheckRoom(key, desired.size()); !room.ok()) return room;
  auto it = values_.find(key);
  if (it == values_.end()) {
    if (!expected.empty()) return expected;
    values_[key] = desired;
    return desired;
  }
  if (it->second == expected) it->second = desired;
  return it->second;
}

absl::StatusOr<bool> MemoryRendezvousStore::Delete(const std::string& key) {
  absl::MutexLock lock(&mu_);
  return values_.erase(key) > 0;
}

absl::StatusOr<bool> MemoryRendezvousStore::Check(const std::vector<std::string>& keys) {
  absl::MutexLock lock(&mu_);
  for (const std::string& key : keys) {
    if (values_.count(key) == 0) return false;
  }
  return true;
}

absl::StatusOr<int64_t> MemoryRendezvousStore::KeyCount() {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(values_.size());
}

}  // namespace gradlab
