#include "server/engine/memory_estimate.h"

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/dataset_table.h"
#include "common/free_memory.h"
#include "common/model_table.h"
#include "server/engine/datasets.h"
#include "server/engine/torch_errors.h"
#include "server/engine/trainer.h"
#include "server/engine/training_events.h"

namespace gradlab {
namespace {

// The batch sizes (per rank) the probe trains at; the run's is extrapolated from them.
constexpr int64_t kProbeSmallBatch = 16;
constexpr int64_t kProbeLargeBatch = 32;
// The synthetic dataset is generated at these sizes to measure its bytes per sample.
constexpr int64_t kProbeSmallSplit = 64;
constexpr int64_t kProbeLargeSplit = 128;
// What a run costs beyond what LibTorch's allocator hands out and the terms below count,
// fitted to every run of bench/run_memory (docs/PERFORMANCE.md, "Memory of a run"): a
// fixed part (LibTorch's and oneDNN's code that a server's first run of a kind pages in,
// the threads' stacks), a fixed part more while training, and a share of what the probe
// saw: training churns through tensors of many sizes on several threads (the training
// thread, the prefetcher, OpenMP's), and the allocator holds more than is live (its
// per-thread caches, spans in part used), where loading allocates a few large buffers in
// turn.
constexpr int64_t kRuntimeBytes = int64_t{8} << 20;
constexpr int64_t kTrainingRuntimeBytes = int64_t{16} << 20;
constexpr double kTrainingSlack = 1.20;

// Counts what LibTorch's CPU allocator hands out and takes back on the threads that carry
// it as their PROFILER_STATE debug info (the probe's), and the most it held at once.
class AllocationCounter final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void* /*ptr*/, int64_t alloc_size, int64_t /*total_allocated*/,
                         int64_t /*total_reserved*/, c10::Device /*device*/) override {
    const int64_t now = held_.fetch_add(alloc_size) + alloc_size;
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_.load(); }

 private:
  std::atomic<int64_t> held_{0};
  std::atomic<int64_t> peak_{0};
};

// The most bytes LibTorch allocates at once while `measured` runs on this thread.
absl::StatusOr<int64_t> PeakAllocation(const std::function<absl::Status()>& measured) {
  auto counter = std::make_shared<AllocationCounter>();
  absl::Status status;
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, counter);
    status = measured();
  }
  if (!status.ok()) return status;
  return counter->peak();
}

// A straight line through two measurements: the bytes at `size` are base + per_unit * size.
struct LinearCost {
  double base = 0;
  double per_unit = 0;
  int64_t At(int64_t size) const {
    return std::max<int64_t>(0, static_cast<int64_t>(base + per_unit * static_cast<double>(size)));
  }
};

LinearCost Through(int64_t small_size, int64_t small_bytes, int64_t large_size,
                   int64_t large_bytes) {
  LinearCost line;
  line.per_unit =
      static_cast<double>(large_bytes - small_bytes) / static_cast<double>(large_size - small_size);
  line.base = static_cast<double>(small_bytes) - line.per_unit * static_cast<double>(small_size);
  return line;
}

DatasetSplit RandomSplit(const DatasetTraits& shape, int64_t size) {
  return DatasetSplit{
      torch::randint(0, 256, {size, shape.channels, shape.side, shape.side}, torch::kUInt8),
      torch::arange(size, torch::kInt64).remainder(10)};
}

// One epoch of `spec` over two batches of `batch` random samples (and one test batch), in
// line on this thread, as the run trains it except for prefetching and checkpoints. Two
// steps, because the second is a run's steady state: its backward pass allocates beside
// the optimizer's momentum, which the first step creates.
absl::StatusOr<int64_t> ProbeTraining(const ExperimentSpec& spec, const std::string& model_file,
                                      const DatasetTraits& shape, int64_t batch) {
  ExperimentSpec probe = spec;
  probe.epochs = 1;
  probe.batch_size = static_cast<int>(batch);
  probe.world_size = 1;
  probe.lr_step_size = 0;
  Dataset data;
  data.name = "memory probe";
  data.train = RandomSplit(shape, 2 * batch);
  data.test = RandomSplit(shape, batch);
  data.mean.assign(shape.channels, 0.5);
  data.std.assign(shape.channels, 0.25);
  TrainingControl control;
  control.prefetch_batches = false;
  control.model_file = model_file;
  control.progress_interval = absl::InfiniteDuration();
  IgnoringSink sink;
  return PeakAllocation([&] { return Train(probe, data, control, sink); });
}

// What the probes found for one model shape: training bytes against the batch size per
// rank, and the parameters (for the checkpoint).
struct ModelCost {
  LinearCost training;
  int64_t parameters = 0;
};

absl::StatusOr<ModelCost> MeasureModel(const ExperimentSpec& spec, const std::string& model_file,
                                       const DatasetTraits& shape) {
  ModelOptions options =
      ModelOptionsFor(spec, shape.channels, shape.side, shape.side, /*num_classes=*/10);
  options.script_file = model_file;
  absl::StatusOr<int64_t> parameters = CountParameters(options);
  if (!parameters.ok()) return parameters.status();
  absl::StatusOr<int64_t> small = ProbeTraining(spec, model_file, shape, kProbeSmallBatch);
  if (!small.ok()) return small.status();
  absl::StatusOr<int64_t> large = ProbeTraining(spec, model_file, shape, kProbeLargeBatch);
  if (!large.ok()) return large.status();
  return ModelCost{Through(kProbeSmallBatch, *small, kProbeLargeBatch, *large), *parameters};
}

// The synthetic dataset's generation, against the training samples: its peak is the
// training split's (the test split, generated next, is smaller; then the per-channel
// statistics are computed over the training split in double precision).
absl::StatusOr<LinearCost> MeasureSyntheticGeneration(uint64_t seed) {
  const auto generate = [seed](int64_t size) {
    return PeakAllocation([&] {
      DatasetRequest request;
      request.name = "synthetic";
      request.seed = seed;
      request.max_train_samples = size;
      request.max_test_samples = 1;
      return LoadDataset(request).status();
    });
  };
  absl::StatusOr<int64_t> small = generate(kProbeSmallSplit);
  if (!small.ok()) return small.status();
  absl::StatusOr<int64_t> large = generate(kProbeLargeSplit);
  if (!large.ok()) return large.status();
  return Through(kProbeSmallSplit, *small, kProbeLargeSplit, *large);
}

// The probes' results so far: the model costs by everything that changes them, and the
// synthetic dataset's generation.
class ProbeCache {
 public:
  // An uploaded model's spec.model holds its id: the file is the same for the same key.
  absl::StatusOr<ModelCost> Model(const ExperimentSpec& spec, const std::string& model_file,
                                  const DatasetTraits& shape) {
    const Key key =
        std::make_tuple(spec.model, shape.channels, shape.side, spec.batch_norm.value_or(false),
                        spec.skip_connections.value_or(false), spec.precision,
                        spec.augment.value_or(false), spec.depth.value_or(0), spec.shortcut);
    std::optional<ModelCost>* slot;
    {
      absl::MutexLock lock(&mu_);
      slot = &models_[key];  // a map's values stay where they are
    }
    return Cached(*slot, [&] { return MeasureModel(spec, model_file, shape); });
  }

  absl::StatusOr<LinearCost> Synthetic() {
    std::optional<LinearCost>* slot;
    {
      absl::MutexLock lock(&mu_);
      slot = &synthetic_;
    }
    return Cached(*slot, [] { return MeasureSyntheticGeneration(42); });
  }

 private:
  using Key =
      std::tuple<std::string, int64_t, int64_t, bool, bool, std::string, bool, int, std::string>;

  // `slot`'s value (one of this cache's), measured first if it has none. Measured outside
  // the lock: two requests for a new shape at once measure it twice.
  template <typename Cost, typename Measure>
  absl::StatusOr<Cost> Cached(std::optional<Cost>& slot, const Measure& measure)
      ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (slot.has_value()) return *slot;
    }
    absl::StatusOr<Cost> cost = measure();
    ReleaseFreeMemory();  // the probe's tensors
    if (!cost.ok()) return cost.status();
    absl::MutexLock lock(&mu_);
    slot = *cost;
    return *cost;
  }

  absl::Mutex mu_;
  std::map<Key, std::optional<ModelCost>> models_ ABSL_GUARDED_BY(mu_);
  std::optional<LinearCost> synthetic_ ABSL_GUARDED_BY(mu_);
};

ProbeCache& Probes() {
  static auto* const cache = new ProbeCache;
  return *cache;
}

// The dataset's peak while it loads, from its files' layout: each file is read whole
// (whatever max_train_samples keeps) into a buffer of its size and copied into a tensor;
// CIFAR-10's five training files are then concatenated. Either way the training split is
// held twice at the peak. (The test split is read after, and is smaller.)
int64_t FileLoadingBytes(const DatasetTraits& dataset) {
  const int64_t image_bytes = dataset.channels * dataset.side * dataset.side;
  return 2 * dataset.train_size * (image_bytes + 8);
}

}  // namespace

absl::StatusOr<MemoryEstimate> EstimateRunMemory(const ExperimentSpec& spec,
                                                 const std::string& model_file) {
  return CatchTorchErrors([&]() -> absl::StatusOr<MemoryEstimate> {
    const DatasetTraits& dataset = *FindDataset(spec.dataset);
    absl::StatusOr<ModelCost> model = Probes().Model(spec, model_file, dataset);
    if (!model.ok()) return model.status();

    const int64_t image_bytes = dataset.channels * dataset.side * dataset.side;
    const int64_t train_samples = ExpectedTrainSamples(spec);
    const int64_t test_samples = ExpectedTestSamples(spec);
    const int64_t batch_per_rank = (spec.batch_size + spec.world_size - 1) / spec.world_size;

    MemoryEstimate estimate;
    // The prefetcher's thread prepares the next batch (float, and its padded copy when
    // augmenting) while a step trains; the probe made its batches in line.
    estimate.training_bytes =
        kTrainingRuntimeBytes +
        static_cast<int64_t>(kTrainingSlack *
                             static_cast<double>(model->training.At(batch_per_rank) +
                                                 2 * batch_per_rank * image_bytes * 4));
    const int64_t kept = (train_samples + test_samples) * (image_bytes + 8);
    int64_t loading = 0;
    if (spec.dataset == "synthetic") {
      absl::StatusOr<LinearCost> generation = Probes().Synthetic();
      if (!generation.ok()) return generation.status();
      loading = generation->At(train_samples) + test_samples * (image_bytes + 8);
    } else {
      loading = FileLoadingBytes(dataset);
    }
    estimate.dataset_bytes = std::max(kept, loading);
    // Parameters and momentum, serialised: the pickle, its copy as the checkpoint, and
    // the sealed file's buffer. A checkpoint is written after the epoch's evaluation, when
    // of the training's tensors only the parameters, their gradients and momentum remain.
    estimate.checkpoint_bytes = 3 * 2 * model->parameters * 4;
    const int64_t checkpointing = 3 * model->parameters * 4 + estimate.checkpoint_bytes;
    estimate.peak_bytes =
        kRuntimeBytes + std::max(loading, kept + std::max(estimate.training_bytes, checkpointing));
    return estimate;
  });
}

}  // namespace gradlab
