#include "server/engine/data_parallel.h"

// ProcessGroupGloo is declared under USE_C10D_GLOO, which the torch CMake target defines
// (Debian's LibTorch is built with Gloo; Gloo's headers come from libgloo-dev).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace gradlab {
namespace {

// An exception's message without the C++ backtrace LibTorch's own errors carry.
std::string MessageOf(const std::exception& e) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&e);
  return torch_error != nullptr ? torch_error->what_without_backtrace() : e.what();
}

// c10d's Store over a RendezvousStore, for ProcessGroupGloo. c10d reports failures as
// exceptions, which Join turns back into a status. A rendezvous store answers at once, so
// waiting for keys (get waits too) polls Check, from every 1 ms to every 50 ms.
class RendezvousStoreAdapter final : public c10d::Store {
 public:
  RendezvousStoreAdapter(std::shared_ptr<RendezvousStore> store, std::string name,
                         std::chrono::milliseconds timeout)
      : c10d::Store(timeout), store_(std::move(store)), name_(std::move(name)) {}

  void set(const std::string& key, const std::vector<uint8_t>& value) override {
    Ok(store_->Set(key, std::string(value.begin(), value.end())));
  }
  std::vector<uint8_t> compareSet(const std::string& key, const std::vector<uint8_t>& expected,
                                  const std::vector<uint8_t>& desired) override {
    return Bytes(Ok(store_->CompareSet(key, std::string(expected.begin(), expected.end()),
                                       std::string(desired.begin(), desired.end()))));
  }
  std::vector<uint8_t> get(const std::string& key) override {
    wait({key});
    return Bytes(Ok(store_->Get(key)));
  }
  int64_t add(const std::string& key, int64_t value) override {
    return Ok(store_->Add(key, value));
  }
  bool deleteKey(const std::string& key) override { return Ok(store_->Delete(key)); }
  bool check(const std::vector<std::string>& keys) override { return Ok(store_->Check(keys)); }
  int64_t getNumKeys() override { return Ok(store_->KeyCount()); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    const absl::Time deadline = absl::Now() + absl::FromChrono(timeout);
    absl::Duration pause = absl::Milliseconds(1);
    while (!Ok(store_->Check(keys))) {
      if (absl::Now() >= deadline) {
        throw std::runtime_error(absl::StrCat("the rendezvous at ", name_, " did not get key(s) ",
                                              absl::StrJoin(keys, ", "), " within ",
                                              absl::FormatDuration(absl::FromChrono(timeout))));
      }
      absl::SleepFor(pause);
      pause = std::min(2 * pause, absl::Milliseconds(50));
    }
  }

 private:
  void Ok(const absl::Status& status) const {
    if (!status.ok()) {
      throw std::runtime_error(absl::StrCat("the rendezvous at ", name_, ": ", status.ToString()));
    }
  }
  template <typename T>
  T Ok(absl::StatusOr<T> result) const {
    Ok(result.status());
    return *std::move(result);
  }
  static std::vector<uint8_t> Bytes(const std::string& text) {
    return std::vector<uint8_t>(text.begin(), text.end());
  }

  const std::shared_ptr<RendezvousStore> store_;
  const std::string name_;
};

}  // namespace

torch::Tensor ShardOfBatch(const torch::Tensor& batch, int rank, int world_size) {
  return batch.slice(/*dim=*/0, /*start=*/rank, /*end=*/batch.size(0), /*step=*/world_size);
}

GradientAverager::GradientAverager() = default;
GradientAverager::~GradientAverager() = default;

absl::StatusOr<std::unique_ptr<GradientAverager>> GradientAverager::Join(
    const ProcessGroupOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", options.rank, " of world size ",
                                                   options.world_size,
                                                   ": the rank must be in [0, world size)"));
  }
  if (options.store == nullptr) {
    return absl::InvalidArgumentError("a process group needs a rendezvous store");
  }
  const auto timeout = std::chrono::milliseconds(absl::ToInt64Milliseconds(options.timeout));
  const std::string& store = options.store_name;
  std::unique_ptr<GradientAverager> averager(new GradientAverager());
  averager->rank_ = options.rank;
  averager->world_size_ = options.world_size;
  try {
    averager->store_ =
        c10::make_intrusive<RendezvousStoreAdapter>(options.store, options.store_name, timeout);
    auto group_options = c10d::ProcessGroupGloo::Options::create(timeout);
    group_options->devices.push_back(
        options.local_address.empty()
            ? c10d::ProcessGroupGloo::createDefaultDevice()
            : c10d::ProcessGroupGloo::createDeviceForHostname(options.local_address));
    group_options->threads = 1;
    averager->group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(
        averager->store_, options.rank, options.world_size, group_options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "rank ", options.rank, " of ", options.world_size, " could not join the group at ", store,
        " within ", absl::FormatDuration(options.timeout), ": ", MessageOf(e)));
  }
  return averager;
}

absl::StatusOr<int> GradientAverager::Average(const std::vector<torch::Tensor>& parameters,
                                              int64_t local_samples, int64_t batch_samples,
                                              bool stop) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> gradients;
  for (torch::Tensor parameter : parameters) {
    if (!parameter.grad().defined()) parameter.mutable_grad() = torch::zeros_like(parameter);
    gradients.push_back(parameter.grad());
  }
  // One buffer: every gradient times this rank's samples, then the sample count itself
  // and the stop vote, summed over the ranks in one all-reduce; the gradients are then
  // divided by the total count.
  std::vector<torch::Tensor> pieces;
  pieces.reserve(gradients.size() + 1);
  for (const torch::Tensor& gradient : gradients) {
    pieces.push_back(gradient.flatten() * static_cast<double>(local_samples));
  }
  pieces.push_back(torch::tensor({static_cast<float>(local_samples), stop ? 1.0f : 0.0f}));
  torch::Tensor sum = torch::cat(pieces);
  const absl::Time start = absl::Now();
  if (absl::Status summed = AllReduce(sum, "gradient"); !summed.ok()) return summed;
  gradient_traffic_.time += absl::Now() - start;
  ++gradient_traffic_.all_reduces;
  gradient_traffic_.bytes += sum.numel() * static_cast<int64_t>(sum.element_size());
  const int64_t size = sum.size(0);
  const int stop_votes = static_cast<int>(std::lround(sum[size - 1].item<double>()));
  const double total_samples = sum[size - 2].item<double>();
  if (std::llround(total_samples) != batch_samples || batch_samples < 1) {
    return absl::DataLossError(absl::StrCat("the ranks' gradients are over ", total_samples,
                                            " samples in all, not the batch's ", batch_samples,
                                            ": a rank is out of step with the others"));
  }
  int64_t offset = 0;
  for (torch::Tensor& gradient : gradients) {
    const int64_t n = gradient.numel();
    gradient.copy_(sum.narrow(0, offset, n).view_as(gradient) / total_samples);
    offset += n;
  }
  return stop_votes;
}

absl::StatusOr<int> GradientAverager::CountVotes(bool stop) {
  torch::Tensor votes = torch::tensor({stop ? 1 : 0}, torch::kInt32);
  if (absl::Status summed = AllReduce(votes, "stop vote"); !summed.ok()) return summed;
  return votes.item<int>();
}

absl::Status GradientAverager::Sum(torch::Tensor& values) { return AllReduce(values, "score"); }

absl::Status GradientAverager::Broadcast(std::string& bytes) {
  // The size first, so that the other ranks can make room for the bytes.
  torch::Tensor size = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kInt64);
  std::vector<torch::Tensor> buffer = {size};
  try {
    group_->broadcast(buffer)->wait();
    bytes.resize(static_cast<size_t>(size.item<int64_t>()));
    if (bytes.empty()) return absl::OkStatus();
    buffer = {torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kUInt8)};
    group_->broadcast(buffer)->wait();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("the broadcast to rank ", rank_, " of ", world_size_,
                                               " failed: ", MessageOf(e)));
  }
  return absl::OkStatus();
}

absl::Status GradientAverager::AllReduce(torch::Tensor& values, const char* what) {
  std::vector<torch::Tensor> buffer = {values};
  try {
    group_->allreduce(buffer)->wait();
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("the ", what, " all-reduce of rank ", rank_, " of ",
                                               world_size_, " failed: ", MessageOf(e)));
  }
  return absl::OkStatus();
}

}  // namespace gradlab
