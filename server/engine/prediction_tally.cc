#include "server/engine/prediction_tally.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/dataset_table.h"

namespace gradlab {

PredictionTally::PredictionTally(int64_t classes)
    : classes_(classes), sums_(torch::zeros({2, classes * classes}, torch::kFloat64)) {}

void PredictionTally::Add(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  const torch::Tensor probabilities = torch::softmax(logits.to(torch::kFloat64), 1);
  const torch::Tensor cells = labels * classes_ + logits.argmax(1);
  sums_[0].add_(torch::bincount(cells, {}, classes_ * classes_).to(torch::kFloat64));
  sums_[1].view({classes_, classes_}).index_add_(0, labels, probabilities);
}

absl::Status PredictionTally::SumAcrossRanks(GradientAverager& group) { return group.Sum(sums_); }

Predictions PredictionTally::Finish(int epoch, std::vector<std::string> class_names,
                                    double test_loss) const {
  Predictions predictions;
  predictions.epoch = epoch;
  predictions.class_names = std::move(class_names);
  predictions.test_loss = test_loss;
  const torch::Tensor confusion = sums_[0].view({classes_, classes_});
  const torch::Tensor images_per_class = confusion.sum(1);
  predictions.samples = static_cast<int64_t>(images_per_class.sum().item<double>());
  const torch::Tensor by_class =
      sums_[1].view({classes_, classes_}) / images_per_class.clamp_min(1).unsqueeze(1);
  const torch::Tensor overall =
      sums_[1].view({classes_, classes_}).sum(0) / std::max<int64_t>(1, predictions.samples);
  const torch::Tensor counts = sums_[0].to(torch::kInt64).contiguous();
  predictions.confusion.assign(counts.data_ptr<int64_t>(),
                               counts.data_ptr<int64_t>() + counts.numel());
  const torch::Tensor mean = overall.contiguous();
  predictions.mean_softmax.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + classes_);
  const torch::Tensor per_class = by_class.contiguous();
  predictions.mean_softmax_by_class.assign(per_class.data_ptr<double>(),
                                           per_class.data_ptr<double>() + per_class.numel());
  return predictions;
}

std::vector<std::string> ClassNames(const std::string& dataset, int64_t classes) {
  const DatasetTraits* traits = FindDataset(dataset);
  if (traits != nullptr && static_cast<int64_t>(traits->class_names.size()) == classes) {
    return traits->class_names;
  }
  std::vector<std::string> names;
  for (int64_t i = 0; i < classes; ++i) names.push_back(absl::StrCat("class ", i));
  return names;
}

}  // namespace gradlab
