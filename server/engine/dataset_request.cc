#include "server/engine/dataset_request.h"

#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gradlab {

namespace fs = std::filesystem;

std::vector<std::string> DatasetSearchPath(const std::string& dataset, const std::string& data_dir,
                                           const std::string& root) {
  if (!data_dir.empty()) return {data_dir};
  std::vector<std::string> path;
  auto under_root = [&](const std::string& name) {
    if (!root.empty()) path.push_back((fs::path(root) / name).string());
  };
  if (dataset == "cifar10") {
    if (!root.empty()) path.push_back(root);
    under_root("cifar10");
  } else if (dataset == "fashion_mnist") {
    under_root("fashion-mnist");
    under_root("fashion_mnist");
    path.push_back("/usr/share/datasets/fashion-mnist");
  } else if (dataset == "mnist") {
    under_root("mnist");
    path.push_back("/usr/share/datasets/mnist");
  }
  return path;
}

absl::StatusOr<std::string> LocateDataset(const std::string& dataset,
                                          const std::vector<std::string>& search_path) {
  if (dataset == "synthetic") return std::string();
  std::vector<std::string> marker_files;
  std::vector<std::string> candidates;
  if (dataset == "cifar10") {
    marker_files = {"data_batch_1.bin"};
    for (const std::string& dir : search_path) {
      candidates.push_back(dir);
      candidates.push_back((fs::path(dir) / "cifar-10-batches-bin").string());
    }
  } else if (dataset == "fashion_mnist" || dataset == "mnist") {
    marker_files = {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"};
    candidates = search_path;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown dataset \"", dataset, "\""));
  }
  for (const std::string& dir : candidates) {
    for (const std::string& marker : marker_files) {
      std::error_code error;
      if (fs::exists(fs::path(dir) / marker, error)) return dir;
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "dataset ", dataset, " is not present: no ", absl::StrJoin(marker_files, " or "), " in ",
      candidates.empty() ? "any folder (none configured)" : absl::StrJoin(candidates, ", "),
      dataset == "cifar10"         ? " (the CIFAR-10 binary version)"
      : dataset == "fashion_mnist" ? " (Debian package dataset-fashion-mnist)"
                                   : ""));
}

DatasetRequest DatasetRequestFor(const ExperimentSpec& spec) {
  DatasetRequest request;
  request.name = spec.dataset;
  request.data_dir = spec.data_dir;
  request.max_train_samples = spec.max_train_samples;
  request.max_test_samples = spec.max_test_samples;
  request.seed = spec.seed;
  return request;
}

}  // namespace gradlab
