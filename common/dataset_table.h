// Every dataset gradlab trains on, as its standard files hold it: the shape of an image
// and the size of each split. What a spec can be checked against before any file is read
// (a user's folder may hold fewer samples; the run checks the real counts again).
// datasets_test checks the table against the files and the synthetic generator.
#ifndef GRADLAB_COMMON_DATASET_TABLE_H_
#define GRADLAB_COMMON_DATASET_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace gradlab {

struct DatasetTraits {
  std::string name;
  int64_t channels = 3;
  int64_t side = 32;  // images are side x side pixels
  int64_t train_size = 0;
  int64_t test_size = 0;
  // What its labels 0, 1, ... stand for, as the dataset's own documentation names them.
  std::vector<std::string> class_names;
};

// In the order ServerInfo lists them.
const std::vector<DatasetTraits>& DatasetTable();
// The row of `name`, or null.
const DatasetTraits* FindDataset(absl::string_view name);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_DATASET_TABLE_H_
