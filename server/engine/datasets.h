// Image datasets held in memory as uint8 tensors: CIFAR-10 (binary layout), MNIST and
// Fashion-MNIST (IDX, raw or gzipped) and a seeded synthetic one. Every malformed file
// gives an absl::Status naming the file, where it went wrong and what was expected.
#ifndef GRADLAB_SERVER_ENGINE_DATASETS_H_
#define GRADLAB_SERVER_ENGINE_DATASETS_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/experiment_spec.h"

namespace gradlab {

struct DatasetSplit {
  torch::Tensor images;  // uint8 [N, C, H, W]
  torch::Tensor labels;  // int64 [N], each in [0, num_classes)
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct Dataset {
  std::string name;
  std::string location;  // the folder the files were read from; empty for synthetic
  DatasetSplit train;
  DatasetSplit test;
  int64_t num_classes = 10;
  // Per-channel normalisation of pixels scaled to [0, 1].
  std::vector<double> mean;
  std::vector<double> std;
  int64_t channels() const { return train.images.size(1); }
  int64_t height() const { return train.images.size(2); }
  int64_t width() const { return train.images.size(3); }
};

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

// Loads the dataset from request.data_dir, or from the default search path when empty.
absl::StatusOr<Dataset> LoadDataset(const DatasetRequest& request);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_DATASETS_H_
