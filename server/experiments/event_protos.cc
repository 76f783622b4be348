#include "server/experiments/event_protos.h"

namespace gradlab {

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  const int64_t seconds = absl::ToUnixSeconds(time);
  timestamp.set_seconds(seconds);
  timestamp.set_nanos(
      static_cast<int32_t>(absl::ToInt64Nanoseconds(time - absl::FromUnixSeconds(seconds))));
  return timestamp;
}

v1::EpochMetrics ToProto(const EpochMetrics& m) {
  v1::EpochMetrics proto;
  proto.set_epoch(m.epoch);
  proto.set_train_loss(m.train_loss);
  proto.set_train_accuracy(m.train_accuracy);
  proto.set_test_loss(m.test_loss);
  proto.set_test_accuracy(m.test_accuracy);
  proto.set_best_test_accuracy(m.best_test_accuracy);
  proto.set_learning_rate(m.learning_rate);
  proto.set_epoch_seconds(m.epoch_seconds);
  proto.set_images_per_second(m.images_per_second);
  return proto;
}

v1::BatchProgress ToProto(const BatchProgress& p) {
  v1::BatchProgress proto;
  proto.set_epoch(p.epoch);
  proto.set_batch(p.batch);
  proto.set_batches(p.batches);
  proto.set_running_loss(p.running_loss);
  proto.set_running_accuracy(p.running_accuracy);
  proto.set_images_per_second(p.images_per_second);
  return proto;
}

v1::GradientSnapshot ToProto(const GradientSnapshot& s) {
  v1::GradientSnapshot proto;
  proto.set_step(s.step);
  proto.set_epoch(s.epoch);
  proto.set_batch(s.batch);
  for (const LayerGradient& g : s.gradients) {
    v1::LayerGradient* layer = proto.add_layers();
    layer->set_name(g.name);
    layer->set_grad_norm(g.grad_norm);
    layer->set_weight_norm(g.weight_norm);
    layer->set_ratio(g.ratio);
  }
  for (const LayerActivation& a : s.activations) {
    v1::LayerActivation* activation = proto.add_activations();
    activation->set_name(a.name);
    activation->set_std(a.std);
  }
  return proto;
}

v1::Predictions ToProto(const Predictions& p) {
  v1::Predictions proto;
  proto.set_epoch(p.epoch);
  proto.mutable_class_names()->Add(p.class_names.begin(), p.class_names.end());
  proto.set_samples(p.samples);
  proto.mutable_confusion()->Add(p.confusion.begin(), p.confusion.end());
  const size_t classes = p.mean_softmax.size();
  for (size_t predicted = 0; predicted < classes; ++predicted) {
    int64_t count = 0;
    for (size_t truth = 0; truth < classes; ++truth)
      count += p.confusion[truth * classes + predicted];
    proto.add_predicted_counts(count);
  }
  proto.mutable_mean_softmax()->Add(p.mean_softmax.begin(), p.mean_softmax.end());
  proto.mutable_mean_softmax_by_class()->Add(p.mean_softmax_by_class.begin(),
                                             p.mean_softmax_by_class.end());
  proto.set_evaluation_seconds(p.evaluation_seconds);
  proto.set_test_loss(p.test_loss);
  return proto;
}

void RecordEpoch(const v1::EpochMetrics& metrics, v1::Experiment& record) {
  record.set_current_epoch(metrics.epoch());
  *record.mutable_last_metrics() = metrics;
  if (record.best_epoch() == 0 || metrics.test_accuracy() > record.best_test_accuracy()) {
    record.set_best_epoch(metrics.epoch());
  }
  record.set_best_test_accuracy(metrics.best_test_accuracy());
}

bool AfterEpoch(const v1::MetricsEvent& event, int epoch) {
  return (event.has_batch_progress() && event.batch_progress().epoch() > epoch) ||
         (event.has_epoch_metrics() && event.epoch_metrics().epoch() > epoch) ||
         (event.has_predictions() && event.predictions().epoch() > epoch);
}

void ResetEpochFields(const std::vector<v1::MetricsEvent>& events, v1::Experiment& record) {
  record.clear_last_metrics();
  record.set_current_epoch(0);
  record.set_best_epoch(0);
  record.set_best_test_accuracy(0);
  for (const v1::MetricsEvent& event : events) {
    if (event.has_epoch_metrics()) RecordEpoch(event.epoch_metrics(), record);
  }
}

}  // namespace gradlab
