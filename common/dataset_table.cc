#include "common/dataset_table.h"

namespace gradlab {

const std::vector<DatasetTraits>& DatasetTable() {
  static const auto* const kTable = new std::vector<DatasetTraits>{
      {"cifar10",
       3,
       32,
       50'000,
       10'000,
       {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}},
      {"fashion_mnist",
       1,
       28,
       60'000,
       10'000,
       {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot"}},
      {"mnist", 1, 28, 60'000, 10'000, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
      // Generated from the seed; max_train_samples and max_test_samples set its size.
      {"synthetic",
       3,
       32,
       2'000,
       500,
       {"class 0", "class 1", "class 2", "class 3", "class 4", "class 5", "class 6", "class 7",
        "class 8", "class 9"}},
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
