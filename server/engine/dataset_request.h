// What a run asks of a dataset (its name, folder, sample limits and seed) and where its
// files are found, without LibTorch: the job queue and the worker agent include this and
// server/engine/trainer.h only, and hand the loaded dataset on to the trainer unopened.
// server/engine/datasets.h has the dataset itself.
#ifndef GRADLAB_SERVER_ENGINE_DATASET_REQUEST_H_
#define GRADLAB_SERVER_ENGINE_DATASET_REQUEST_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/experiment_spec.h"

namespace gradlab {

struct Dataset;  // server/engine/datasets.h

// The shape and size of the synthetic dataset: class-dependent low-frequency patterns
// plus noise, generated from the seed; learnable by every model within a few epochs.
struct SyntheticOptions {
  int64_t channels = 3;
  int64_t height = 32;
  int64_t width = 32;
  int64_t num_classes = 10;
  int64_t train_size = 2000;
  int64_t test_size = 500;
};

struct DatasetRequest {
  std::string name;               // one of DatasetNames()
  std::string data_dir;           // empty: the dataset's default location
  int64_t max_train_samples = 0;  // 0: all; otherwise the first N (the synthetic size)
  int64_t max_test_samples = 0;
  uint64_t seed = 42;  // synthetic only
  SyntheticOptions synthetic;
  // Loading ends with CANCELLED soon after this becomes true: it is checked before each
  // file and between reads of 64 KiB. May be null.
  const std::atomic<bool>* stop_requested = nullptr;
  // For tests: runs after each read of a dataset file (a fault hook, to slow loading down).
  std::function<void()> after_read;
};

// The folders to look for `dataset` in: `data_dir` alone when it is set; otherwise,
// under `root` (the server's --data_dir; may be empty), `root` itself for cifar10 and a
// subfolder named after the dataset ("fashion-mnist" or "fashion_mnist", "mnist",
// "cifar10"), then the system's copy (/usr/share/datasets/fashion-mnist from Debian's
// dataset-fashion-mnist, /usr/share/datasets/mnist).
std::vector<std::string> DatasetSearchPath(const std::string& dataset, const std::string& data_dir,
                                           const std::string& root);

// The first folder of `search_path` that holds the dataset's files (for cifar10, the
// folder or its `cifar-10-batches-bin/` subfolder). FAILED_PRECONDITION saying where it
// looked when none does. Synthetic datasets need no files and give "".
absl::StatusOr<std::string> LocateDataset(const std::string& dataset,
                                          const std::vector<std::string>& search_path);

// What a resolved spec trains on: its dataset, data_dir, sample limits and seed.
DatasetRequest DatasetRequestFor(const ExperimentSpec& spec);

// LoadDataset (server/engine/datasets.h) for callers that only pass the dataset on to
// Train or TrainRank, and so need not see its tensors.
absl::StatusOr<std::shared_ptr<const Dataset>> LoadSharedDataset(const DatasetRequest& request);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_DATASET_REQUEST_H_
