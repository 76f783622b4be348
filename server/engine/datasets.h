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
#include "server/engine/dataset_request.h"

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

// Loads the dataset from request.data_dir, or from the default search path when empty.
// Only regular files are opened (a FIFO, device or socket is FAILED_PRECONDITION, so that
// nothing a user points a dataset at can block the training thread); CANCELLED when
// request.stop_requested is set while it loads.
absl::StatusOr<Dataset> LoadDataset(const DatasetRequest& request);

}  // namespace gradlab

#endif  // GRADLAB_SERVER_ENGINE_DATASETS_H_
