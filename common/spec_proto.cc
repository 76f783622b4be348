#include "common/spec_proto.h"

#include <algorithm>
#include <cmath>

#include "common/dataset_table.h"

namespace gradlab {
namespace {

// He et al. 2016, Section 4.2: the CIFAR-10 recipe, for the fields `proto` leaves unset.
void ApplyHe2016(const v1::ExperimentSpec& proto, ExperimentSpec& spec) {
  constexpr int64_t kPaperIterations = 64'000;
  if (!proto.has_learning_rate()) spec.learning_rate = 0.1;
  if (!proto.has_momentum()) spec.momentum = 0.9;
  if (!proto.has_weight_decay()) spec.weight_decay = 1e-4;
  if (!proto.has_batch_size()) spec.batch_size = 128;
  if (!proto.has_lr_gamma()) spec.lr_gamma = 0.1;
  if (proto.init().empty()) spec.init = "kaiming_normal_fan_in";
  if (!proto.has_augment()) spec.augment = true;
  if (!proto.has_warmup_iterations() && spec.model == "cifar_resnet" &&
      spec.depth.value_or(0) >= 110) {
    spec.warmup_iterations = 400;
    if (!proto.has_warmup_learning_rate()) spec.warmup_learning_rate = 0.01;
  }
  // The budget and the milestones need the epoch's size; ResolveSpec refuses what it
  // cannot be computed from.
  if (FindDataset(spec.dataset) == nullptr || spec.batch_size < 1 ||
      ExpectedTrainSamples(spec) < 1) {
    return;
  }
  if (!proto.has_epochs()) {
    const int64_t per_epoch = IterationsPerEpoch(spec);
    spec.epochs = static_cast<int>(
        std::min<int64_t>((kPaperIterations + per_epoch - 1) / per_epoch, kMaxEpochs));
  }
  if (proto.lr_milestones().empty() && proto.lr_step_size() == 0 && spec.epochs >= 1) {
    // The paper's 32k and 48k of 64k: half and three quarters of the run.
    const int64_t total = TotalIterations(spec);
    spec.lr_milestone_unit = "iterations";
    spec.lr_milestones.clear();
    for (const double fraction : {0.5, 0.75}) {
      const int milestone = static_cast<int>(std::max<int64_t>(1, std::llround(total * fraction)));
      if (spec.lr_milestones.empty() || milestone > spec.lr_milestones.back()) {
        spec.lr_milestones.push_back(milestone);
      }
    }
  }
}

}  // namespace

ExperimentSpec SpecFromProto(const v1::ExperimentSpec& proto) {
  ExperimentSpec spec;
  if (!proto.model().empty()) spec.model = proto.model();
  if (!proto.dataset().empty()) spec.dataset = proto.dataset();
  spec.data_dir = proto.data_dir();
  if (proto.has_epochs()) spec.epochs = proto.epochs();
  if (proto.has_batch_size()) spec.batch_size = proto.batch_size();
  if (proto.has_learning_rate()) spec.learning_rate = proto.learning_rate();
  if (proto.has_momentum()) spec.momentum = proto.momentum();
  if (proto.has_weight_decay()) spec.weight_decay = proto.weight_decay();
  if (proto.has_lr_step_size()) spec.lr_step_size = proto.lr_step_size();
  if (proto.has_lr_gamma()) spec.lr_gamma = proto.lr_gamma();
  if (proto.has_seed()) spec.seed = proto.seed();
  if (proto.has_augment()) spec.augment = proto.augment();
  if (proto.has_batch_norm()) spec.batch_norm = proto.batch_norm();
  if (proto.has_skip_connections()) spec.skip_connections = proto.skip_connections();
  if (!proto.init().empty()) spec.init = proto.init();
  if (proto.has_max_train_samples()) spec.max_train_samples = proto.max_train_samples();
  if (proto.has_max_test_samples()) spec.max_test_samples = proto.max_test_samples();
  if (proto.has_gradient_every_n_steps()) {
    spec.gradient_every_n_steps = proto.gradient_every_n_steps();
  }
  if (proto.has_threads()) spec.threads = proto.threads();
  if (!proto.precision().empty()) spec.precision = proto.precision();
  spec.name = proto.name();
  spec.labels.insert(proto.labels().begin(), proto.labels().end());
  if (proto.has_world_size()) spec.world_size = proto.world_size();
  if (proto.has_depth()) spec.depth = proto.depth();
  spec.shortcut = proto.shortcut();
  spec.lr_milestones.assign(proto.lr_milestones().begin(), proto.lr_milestones().end());
  if (!proto.lr_milestone_unit().empty()) spec.lr_milestone_unit = proto.lr_milestone_unit();
  if (proto.has_warmup_iterations()) spec.warmup_iterations = proto.warmup_iterations();
  if (proto.has_warmup_learning_rate()) spec.warmup_learning_rate = proto.warmup_learning_rate();
  if (proto.has_evaluate_at_init()) spec.evaluate_at_init = proto.evaluate_at_init();
  spec.preset = proto.preset();
  if (spec.preset == "he2016") ApplyHe2016(proto, spec);
  return spec;
}

v1::ExperimentSpec SpecToProto(const ExperimentSpec& spec) {
  v1::ExperimentSpec proto;
  proto.set_model(spec.model);
  proto.set_dataset(spec.dataset);
  proto.set_data_dir(spec.data_dir);
  proto.set_epochs(spec.epochs);
  proto.set_batch_size(spec.batch_size);
  proto.set_learning_rate(spec.learning_rate);
  proto.set_momentum(spec.momentum);
  proto.set_weight_decay(spec.weight_decay);
  proto.set_lr_step_size(spec.lr_step_size);
  proto.set_lr_gamma(spec.lr_gamma);
  proto.set_seed(spec.seed);
  if (spec.augment.has_value()) proto.set_augment(*spec.augment);
  if (spec.batch_norm.has_value()) proto.set_batch_norm(*spec.batch_norm);
  if (spec.skip_connections.has_value()) proto.set_skip_connections(*spec.skip_connections);
  proto.set_init(spec.init);
  proto.set_max_train_samples(spec.max_train_samples);
  proto.set_max_test_samples(spec.max_test_samples);
  proto.set_gradient_every_n_steps(spec.gradient_every_n_steps);
  proto.set_threads(spec.threads);
  proto.set_precision(spec.precision);
  proto.set_name(spec.name);
  proto.mutable_labels()->insert(spec.labels.begin(), spec.labels.end());
  proto.set_world_size(spec.world_size);
  if (spec.depth.has_value()) proto.set_depth(*spec.depth);
  proto.set_shortcut(spec.shortcut);
  proto.mutable_lr_milestones()->Add(spec.lr_milestones.begin(), spec.lr_milestones.end());
  proto.set_lr_milestone_unit(spec.lr_milestone_unit);
  proto.set_warmup_iterations(spec.warmup_iterations);
  if (spec.warmup_learning_rate.has_value()) {
    proto.set_warmup_learning_rate(*spec.warmup_learning_rate);
  }
  proto.set_evaluate_at_init(spec.evaluate_at_init);
  proto.set_preset(spec.preset);
  return proto;
}

}  // namespace gradlab
