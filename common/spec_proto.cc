#include "common/spec_proto.h"

namespace gradlab {

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
  return proto;
}

}  // namespace gradlab
