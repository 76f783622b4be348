#include "common/dataset_table.h"

namespace gradlab {

const std::vector<DatasetTraits>& DatasetTable() {
  static const auto* const kTable = new std::vector<DatasetTraits>{
      {"cifar10", 3, 32, 50'000, 10'000},
      {"fashion_mnist", 1, 28, 60'000, 10'000},
      {"mnist", 1, 28, 60'000, 10'000},
      // Generated from the seed; max_train_samples and max_test_samples set its size.
      {"synthetic", 3, 32, 2'000, 500},
  };
  return *kTable;
}

const DatasetTraits* FindDataset(absl::string_view name) {
  for (const DatasetTraits& dataset : DatasetTable()) {
    if (dataset.name == name) return &dataset;
  }
  return nullptr;
}

}  // namespace gradlab
