#include "server/engine/trainer.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/learning_rate_schedule.h"
#include "common/model_table.h"
#include "common/usable_cpus.h"
#include "server/engine/batch_prefetcher.h"
#include "server/engine/batch_transform.h"
#include "server/engine/checkpoint_dict.h"
#include "server/engine/data_parallel.h"
#include "server/engine/datasets.h"
#include "server/engine/models.h"
#include "server/engine/prediction_tally.h"
#include "server/engine/torch_errors.h"

namespace gradlab {

ModelOptions ModelOptionsFor(const ExperimentSpec& spec, const Dataset& dataset) {
  return ModelOptionsFor(spec, dataset.channels(), dataset.height(), dataset.width(),
                         dataset.num_classes);
}

namespace {

// The built-in conv models. Not an uploaded one: a script's x.view(n, -1) fails on a
// channels-last tensor, and the check at upload does not try that layout.
bool ChannelsLastHelps(const std::string& model) {
  const ModelTraits* traits = FindModel(model);
  return traits != nullptr && traits->convolutional;
}

// Runs the forward pass in bfloat16 where CPU autocast does (convolutions, linear
// layers), as torch.autocast("cpu", dtype=torch.bfloat16) does in Python.
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
    previous_ = at::autocast::is_cpu_enabled();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~Bf16Autocast() {
    if (!enabled_) return;
    // The weights cast for this pass are not reused by the next one: they change in between.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(previous_);
  }
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  const bool enabled_;
  bool previous_ = false;
};

// Sums a loss and a count of correct predictions over the samples seen so far.
struct RunningScore {
  double loss_sum = 0;
  int64_t correct = 0;
  int64_t samples = 0;

  void Add(const torch::Tensor& logits, const torch::Tensor& labels,
           const torch::Tensor& mean_loss) {
    const int64_t n = labels.size(0);
    loss_sum += mean_loss.item<double>() * static_cast<double>(n);
    correct += logits.argmax(1).eq(labels).sum().item<int64_t>();
    samples += n;
  }
  // The score over every rank's samples (each rank calls it, with its own).
  absl::Status SumAcrossRanks(GradientAverager& group) {
    torch::Tensor values = torch::tensor(
        {loss_sum, static_cast<double>(correct), static_cast<double>(samples)}, torch::kFloat64);
    if (absl::Status summed = group.Sum(values); !summed.ok()) return summed;
    loss_sum = values[0].item<double>();
    correct = values[1].item<int64_t>();
    samples = values[2].item<int64_t>();
    return absl::OkStatus();
  }

  double loss() const { return samples ? loss_sum / static_cast<double>(samples) : 0; }
  double accuracy() const {
    return samples ? static_cast<double>(correct) / static_cast<double>(samples) : 0;
  }
};

// One run's state. Lives on the training thread for the whole of Train().
class TrainingRun {
 public:
  TrainingRun(const ExperimentSpec& spec, const Dataset& dataset, const TrainingControl& control,
              TrainingEventSink& sink, std::shared_ptr<ClassifierImpl> model)
      : spec_(spec),
        dataset_(dataset),
        control_(control),
        sink_(sink),
        model_(std::move(model)),
        transform_(dataset.mean, dataset.std),
        optimizer_(model_->parameters(), torch::optim::SGDOptions(spec.learning_rate)
                                             .momentum(spec.momentum)
                                             .weight_decay(spec.weight_decay)),
        data_generator_(at::make_generator<at::CPUGeneratorImpl>(spec.seed)),
        // One process shuffles and augments from one generator, as the reference does. The
        // ranks of a data-parallel run must draw the same permutations, so each augments
        // from a generator of its own.
        augment_generator_(control.data_parallel == nullptr
                               ? data_generator_
                               : at::make_generator<at::CPUGeneratorImpl>(
                                     spec.seed + 7919 * (control.data_parallel->rank() + 1))),
        rank_(control.data_parallel != nullptr ? control.data_parallel->rank() : 0),
        world_size_(control.data_parallel != nullptr ? control.data_parallel->world_size() : 1),
        batches_per_epoch_(
            static_cast<int>((dataset.train.size() + spec.batch_size - 1) / spec.batch_size)),
        channels_last_(control.channels_last && ChannelsLastHelps(spec.model)),
        bf16_(spec.precision == "bf16") {
    if (channels_last_) {
      // The optimizer holds these same tensors; set_data changes their layout in place.
      torch::NoGradGuard no_grad;
      for (torch::Tensor& parameter : model_->parameters()) {
        if (parameter.dim() == 4) {
          parameter.set_data(parameter.contiguous(at::MemoryFormat::ChannelsLast));
        }
      }
    }
  }

  absl::Status Run() {
    if (control_.resume_from != nullptr) {
      Restore(*control_.resume_from);
    } else if (spec_.evaluate_at_init) {
      // Epoch 0: what the untrained model predicts. Evaluation draws no random numbers
      // and eval-mode BatchNorm keeps its statistics, so training goes on as without it.
      const absl::Time evaluation_start = control_.clock();
      PredictionTally predictions(dataset_.num_classes);
      absl::StatusOr<RunningScore> test = Evaluate(predictions);
      if (!test.ok()) return test.status();
      if (rank_ == 0) {
        sink_.OnPredictions(
            Told(predictions, 0, test->loss(), control_.clock() - evaluation_start));
      }
    }
    for (int epoch = first_epoch_; epoch <= spec_.epochs; ++epoch) {
      const absl::Time epoch_start = control_.clock();
      RunningScore train;
      if (absl::Status status = TrainEpoch(epoch, train); !status.ok()) return status;
      const absl::Duration train_time = control_.clock() - epoch_start;
      PredictionTally predictions(dataset_.num_classes);
      absl::StatusOr<RunningScore> test = Evaluate(predictions);
      if (!test.ok()) return test.status();
      const absl::Duration evaluation_time = control_.clock() - epoch_start - train_time;
      if (control_.data_parallel != nullptr) {
        if (absl::Status summed = train.SumAcrossRanks(*control_.data_parallel); !summed.ok()) {
          return summed;
        }
      }

      EpochMetrics metrics;
      metrics.epoch = epoch;
      metrics.train_loss = train.loss();
      metrics.train_accuracy = train.accuracy();
      metrics.test_loss = test->loss();
      metrics.test_accuracy = test->accuracy();
      best_test_accuracy_ = std::max(best_test_accuracy_, metrics.test_accuracy);
      metrics.best_test_accuracy = best_test_accuracy_;
      metrics.learning_rate = learning_rate_;
      metrics.epoch_seconds = absl::ToDoubleSeconds(control_.clock() - epoch_start);
      metrics.images_per_second = PerSecond(train.samples, train_time);
      if (rank_ != 0) continue;
      // Before the checkpoint: a run resumed from it has told of this epoch in full.
      sink_.OnPredictions(Told(predictions, epoch, metrics.test_loss, evaluation_time));
      if (control_.save_checkpoint) {
        if (absl::Status status = control_.save_checkpoint(Capture(metrics)); !status.ok()) {
          return status;
        }
      }
      sink_.OnEpochMetrics(metrics);
    }
    return absl::OkStatus();
  }

 private:
  static double PerSecond(int64_t count, absl::Duration elapsed) {
    const double seconds = absl::ToDoubleSeconds(elapsed);
    return seconds > 0 ? static_cast<double>(count) / seconds : 0;
  }

  // The predictions of an evaluation that took `time`, as the sink is told them.
  Predictions Told(const PredictionTally& tally, int epoch, double test_loss,
                   absl::Duration time) const {
    Predictions predictions = tally.Finish(epoch, class_names_, test_loss);
    predictions.evaluation_seconds = absl::ToDoubleSeconds(time);
    return predictions;
  }

  // The schedule's rate for this step, set on the optimizer when it changes.
  void SetLearningRate(int epoch) {
    const double rate = LearningRateAt(spec_, epoch, step_);
    if (rate == learning_rate_) return;
    learning_rate_ = rate;
    for (auto& group : optimizer_.param_groups()) {
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(rate);
    }
  }

  TrainingCheckpoint Capture(const EpochMetrics& metrics) {
    CheckpointDict dict;
    // Contiguous (NCHW), whatever the layout trained in: exports load anywhere.
    for (const auto& [name, tensor] : StateDict(*model_)) {
      dict.insert(kModelPrefix + name, tensor.detach().contiguous());
    }
    torch::serialize::OutputArchive optimizer_archive;
    optimizer_.save(optimizer_archive);
    std::ostringstream optimizer_bytes;
    optimizer_archive.save_to(optimizer_bytes);
    dict.insert(kOptimizerKey, BytesToTensor(optimizer_bytes.str()));
    {
      std::lock_guard<std::mutex> lock(data_generator_.mutex());
      dict.insert(kDataGeneratorKey, data_generator_.get_state());
    }
    dict.insert(kProgressKey, torch::tensor({static_cast<int64_t>(metrics.epoch), step_}));
    dict.insert(kMetricsKey, MetricsToTensor(metrics));
    return TrainingCheckpoint{metrics, PickleCheckpoint(dict)};
  }

  // Throws c10::Error when `state` does not fit this run's model.
  void Restore(const std::string& state) {
    const CheckpointDict dict = UnpickleCheckpoint(state);
    {
      torch::NoGradGuard no_grad;
      for (const auto& [name, tensor] : StateDict(*model_)) {
        const std::string key = kModelPrefix + name;
        TORCH_CHECK(dict.contains(key), "checkpoint: no \"", key, "\" (another model?)");
        const at::Tensor saved = dict.at(key);
        TORCH_CHECK(saved.sizes() == tensor.sizes(), "checkpoint: \"", key, "\" has shape ",
                    saved.sizes(), ", the model's is ", tensor.sizes());
        tensor.copy_(saved);
      }
    }
    const std::string optimizer_bytes = TensorToBytes(dict.at(kOptimizerKey));
    torch::serialize::InputArchive optimizer_archive;
    optimizer_archive.load_from(optimizer_bytes.data(), optimizer_bytes.size());
    optimizer_.load(optimizer_archive);
    {
      std::lock_guard<std::mutex> lock(data_generator_.mutex());
      data_generator_.set_state(dict.at(kDataGeneratorKey));
    }
    const torch::Tensor progress = dict.at(kProgressKey);
    TORCH_CHECK(progress.scalar_type() == torch::kInt64 && progress.numel() == 2,
                "checkpoint: progress is not int64[2]");
    const EpochMetrics metrics = MetricsFromTensor(dict.at(kMetricsKey));
    first_epoch_ = static_cast<int>(progress[0].item<int64_t>()) + 1;
    step_ = progress[1].item<int64_t>();
    best_test_accuracy_ = metrics.best_test_accuracy;
    learning_rate_ =
        static_cast<torch::optim::SGDOptions&>(optimizer_.param_groups().front().options()).lr();
  }

  // The model's fp32 logits for `images`, computed in the run's layout and precision.
  torch::Tensor Forward(const torch::Tensor& images, ActivationRecorder* recorder) {
    Bf16Autocast autocast(bf16_);
    const torch::Tensor input =
        channels_last_ ? images.contiguous(at::MemoryFormat::ChannelsLast) : images;
    return model_->forward(input, recorder).to(torch::kFloat);
  }

  bool StopRequested() const {
    return control_.stop_requested != nullptr &&
           control_.stop_requested->load(std::memory_order_relaxed);
  }

  // How a data-parallel run ends once `votes` ranks voted to stop: cancelled on a rank
  // that voted, and on the others UNAVAILABLE, as when a rank is lost.
  static absl::Status StoppedByVote(bool voted, int votes, absl::string_view where) {
    if (voted) return absl::CancelledError(absl::StrCat("cancelled ", where));
    return absl::UnavailableError(
        absl::StrCat(votes, votes == 1 ? " rank" : " ranks", " of the group stopped ", where));
  }

  // The seed of this step's random operators on this rank: every step and rank its own.
  uint64_t StepSeed() const {
    return spec_.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step_) * 1'000'003ULL +
           static_cast<uint64_t>(rank_);
  }

  bool IsSnapshotStep(int batch_index) const {
    const int every = spec_.gradient_every_n_steps;
    return step_ == 1 || (every > 0 && step_ % every == 0) || batch_index == batches_per_epoch_ - 1;
  }

  // The samples of batch `index` over all ranks: batch_size, or fewer in the last.
  int64_t BatchRows(int index) const {
    const int64_t first = static_cast<int64_t>(index) * spec_.batch_size;
    return std::min<int64_t>(spec_.batch_size, dataset_.train.size() - first);
  }

  // Batch `index` of the epoch whose shuffled order is `order`: gathered, augmented and
  // normalised, in the layout the model trains in. Runs on the prefetcher's thread, or in
  // line when prefetching is off.
  TrainingBatch MakeTrainingBatch(const torch::Tensor& order, int index) {
    const DatasetSplit& split = dataset_.train;
    const int64_t first = static_cast<int64_t>(index) * spec_.batch_size;
    const torch::Tensor indices =
        ShardOfBatch(order.narrow(0, first, BatchRows(index)), rank_, world_size_);
    const torch::Tensor images = split.images.index_select(0, indices);
    torch::Tensor input = spec_.augment.value_or(false)
                              ? transform_.Augment(images, augment_generator_)
                              : transform_.Normalize(images);
    if (channels_last_) input = input.contiguous(at::MemoryFormat::ChannelsLast);
    return TrainingBatch{std::move(input), split.labels.index_select(0, indices)};
  }

  absl::Status TrainEpoch(int epoch, RunningScore& score) {
    model_->train();
    const torch::Tensor order =
        torch::randperm(dataset_.train.size(), data_generator_, torch::kInt64);
    // Owns data_generator_ until it is destroyed at the end of this epoch.
    std::optional<BatchPrefetcher> prefetcher;
    if (control_.prefetch_batches) {
      prefetcher.emplace(batches_per_epoch_,
                         [this, &order](int index) { return MakeTrainingBatch(order, index); });
    }
    const absl::Time start = control_.clock();
    absl::Time last_progress = start;
    for (int b = 0; b < batches_per_epoch_; ++b) {
      // A data-parallel rank votes in the step's all-reduce instead, so that all stop together.
      const bool stop = StopRequested();
      if (stop && control_.data_parallel == nullptr) {
        return absl::CancelledError(absl::StrCat("cancelled in epoch ", epoch, " before batch ",
                                                 b + 1, " of ", batches_per_epoch_));
      }
      const auto [input, labels] = prefetcher ? prefetcher->Next() : MakeTrainingBatch(order, b);
      ++step_;
      // A script's dropout draws from the process-wide generator, which no checkpoint keeps:
      // seeded from the step, its masks repeat when the run resumes.
      if (uploaded_) SeedDefaultGenerator(StepSeed());
      const bool snapshot = rank_ == 0 && IsSnapshotStep(b);
      ActivationRecorder recorder;
      optimizer_.zero_grad();
      // A rank's shard of a last batch smaller than the group can be empty: it adds no
      // gradient, but still takes part in the average.
      if (labels.size(0) > 0) {
        const torch::Tensor logits = Forward(input, snapshot ? &recorder : nullptr);
        const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
        loss.backward();
        score.Add(logits.detach(), labels, loss.detach());
      }
      if (control_.data_parallel != nullptr) {
        absl::StatusOr<int> stop_votes = control_.data_parallel->Average(
            model_->parameters(), labels.size(0), BatchRows(b), stop);
        if (!stop_votes.ok()) return stop_votes.status();
        if (*stop_votes > 0) {
          return StoppedByVote(
              stop, *stop_votes,
              absl::StrCat("in epoch ", epoch, " at batch ", b + 1, " of ", batches_per_epoch_));
        }
      }
      // Snapshots show the gradients the optimizer steps with: averaged over the ranks.
      if (snapshot) sink_.OnGradientSnapshot(Snapshot(epoch, b + 1, recorder));
      SetLearningRate(epoch);
      optimizer_.step();

      const absl::Time now = control_.clock();
      if (rank_ != 0) continue;
      if (now - last_progress >= control_.progress_interval || b == batches_per_epoch_ - 1) {
        last_progress = now;
        // Rank 0's own loss and accuracy so far; its speed times the ranks'.
        sink_.OnBatchProgress(BatchProgress{epoch, b + 1, batches_per_epoch_, score.loss(),
                                            score.accuracy(),
                                            PerSecond(score.samples * world_size_, now - start)});
      }
    }
    return absl::OkStatus();
  }

  GradientSnapshot Snapshot(int epoch, int batch, const ActivationRecorder& recorder) {
    torch::NoGradGuard no_grad;
    GradientSnapshot snapshot;
    snapshot.step = step_;
    snapshot.epoch = epoch;
    snapshot.batch = batch;
    for (const auto& item : model_->named_parameters()) {
      LayerGradient layer;
      layer.name = item.key();
      const torch::Tensor& grad = item.value().grad();
      layer.grad_norm = grad.defined() ? grad.norm().item<double>() : 0.0;
      layer.weight_norm = item.value().norm().item<double>();
      layer.ratio = layer.weight_norm > 0 ? layer.grad_norm / layer.weight_norm : 0.0;
      snapshot.gradients.push_back(std::move(layer));
    }
    for (const auto& [name, std] : recorder.stds()) {
      snapshot.activations.push_back(LayerActivation{name, std});
    }
    return snapshot;
  }

  // The model's loss, accuracy and predictions over the test split, summed over the ranks.
  absl::StatusOr<RunningScore> Evaluate(PredictionTally& predictions) {
    torch::NoGradGuard no_grad;
    model_->eval();
    RunningScore score;
    const DatasetSplit& split = dataset_.test;
    for (int64_t first = 0; first < split.size(); first += spec_.batch_size) {
      const bool stop = StopRequested();
      if (control_.data_parallel != nullptr) {
        absl::StatusOr<int> stop_votes = control_.data_parallel->CountVotes(stop);
        if (!stop_votes.ok()) return stop_votes.status();
        if (*stop_votes > 0) return StoppedByVote(stop, *stop_votes, "during evaluation");
      } else if (stop) {
        return absl::CancelledError("cancelled during evaluation");
      }
      const int64_t n = std::min<int64_t>(spec_.batch_size, split.size() - first);
      // A data-parallel rank evaluates its shard of each batch (a process alone, all of it).
      const torch::Tensor labels =
          ShardOfBatch(split.labels.narrow(0, first, n), rank_, world_size_);
      if (labels.size(0) == 0) continue;
      const torch::Tensor logits = Forward(
          transform_.Normalize(ShardOfBatch(split.images.narrow(0, first, n), rank_, world_size_)),
          nullptr);
      score.Add(logits, labels, torch::nn::functional::cross_entropy(logits, labels));
      predictions.Add(logits, labels);
    }
    if (control_.data_parallel != nullptr) {
      if (absl::Status summed = score.SumAcrossRanks(*control_.data_parallel); !summed.ok()) {
        return summed;
      }
      if (absl::Status summed = predictions.SumAcrossRanks(*control_.data_parallel); !summed.ok()) {
        return summed;
      }
    }
    return score;
  }

  const ExperimentSpec& spec_;
  const Dataset& dataset_;
  const TrainingControl& control_;
  TrainingEventSink& sink_;
  std::shared_ptr<ClassifierImpl> model_;
  BatchTransform transform_;
  torch::optim::SGD optimizer_;
  at::Generator data_generator_;     // shuffling (and augmentation), seeded by the spec
  at::Generator augment_generator_;  // data_generator_ itself, except in data-parallel runs
  // In a data-parallel group (else 0 of 1); only rank 0 tells the sink.
  const int rank_;
  const int world_size_;
  const int batches_per_epoch_;
  const bool channels_last_;
  const bool bf16_;
  const bool uploaded_ = IsUploadedModel(spec_.model);
  const std::vector<std::string> class_names_ = ClassNames(spec_.dataset, dataset_.num_classes);
  int first_epoch_ = 1;
  int64_t step_ = 0;
  double best_test_accuracy_ = 0;
  double learning_rate_ = spec_.learning_rate;  // as the optimizer has it
};

absl::Status CheckTrainable(const ExperimentSpec& spec, const Dataset& dataset) {
  if (dataset.train.size() == 0 || dataset.test.size() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset ", dataset.name, " has ", dataset.train.size(), " training and ",
                     dataset.test.size(), " test samples; both splits need at least one"));
  }
  // Checked at submit against the standard split; here against the files found.
  if (absl::Status status = CheckBatchesTrainable(spec, dataset.train.size()); !status.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("dataset ", dataset.name, " in ", dataset.location, ": ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Train(const ExperimentSpec& spec, const Dataset& dataset,
                   const TrainingControl& control, TrainingEventSink& sink) {
  return CatchTorchErrors([&]() -> absl::Status {
    if (absl::Status status = CheckTrainable(spec, dataset); !status.ok()) return status;
    // LibTorch keeps one intra-op thread count for the whole process: concurrent runs
    // must ask for the same count (the server gives every job --threads_per_job).
    at::init_num_threads();
    at::set_num_threads(spec.threads > 0 ? spec.threads : UsableCpus());
    ModelOptions options = ModelOptionsFor(spec, dataset);
    options.script_file = control.model_file;
    absl::StatusOr<std::shared_ptr<ClassifierImpl>> model = BuildModel(options, spec.seed);
    if (!model.ok()) return model.status();
    return TrainingRun(spec, dataset, control, sink, *std::move(model)).Run();
  });
}

absl::Status TrainRank(const ExperimentSpec& spec, const Dataset& dataset,
                       const ProcessGroupOptions& group, TrainingControl control,
                       TrainingEventSink& sink, GradientTraffic* traffic) {
  absl::StatusOr<std::unique_ptr<GradientAverager>> averager = GradientAverager::Join(group);
  if (!averager.ok()) return averager.status();
  std::string resume_state;
  if (group.rank == 0 && control.resume_from != nullptr) resume_state = *control.resume_from;
  if (absl::Status sent = (*averager)->Broadcast(resume_state); !sent.ok()) return sent;
  control.resume_from = resume_state.empty() ? nullptr : &resume_state;
  control.data_parallel = averager->get();
  absl::Status status = Train(spec, dataset, control, sink);
  if (traffic != nullptr) *traffic = (*averager)->gradient_traffic();
  return status;
}

}  // namespace gradlab
