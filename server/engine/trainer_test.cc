#include "server/engine/trainer.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/datasets.h"
#include "server/engine/testing/recording_sink.h"
#include "server/engine/testing/torchscript_fixtures.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

Dataset Synthetic(int64_t train, int64_t test, int64_t side, int64_t channels = 3) {
  DatasetRequest request;
  request.name = "synthetic";
  request.max_train_samples = train;
  request.max_test_samples = test;
  request.synthetic.channels = channels;
  request.synthetic.height = side;
  request.synthetic.width = side;
  absl::StatusOr<Dataset> dataset = LoadDataset(request);
  EXPECT_TRUE(dataset.ok()) << dataset.status();
  return *std::move(dataset);
}

ExperimentSpec Spec(const std::string& model, int epochs) {
  ExperimentSpec spec;
  spec.model = model;
  spec.dataset = "synthetic";
  spec.epochs = epochs;
  spec.batch_size = 32;
  spec.learning_rate = 0.01;
  spec.threads = 2;
  absl::StatusOr<ExperimentSpec> resolved = ResolveSpec(spec);
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  return *resolved;
}

TEST(TrainerTest, SimpleCnnLearnsSyntheticData) {
  const Dataset data = Synthetic(1000, 300, 32);
  RecordingSink sink;
  ASSERT_TRUE(Train(Spec("simple_cnn", 3), data, {}, sink).ok());
  ASSERT_EQ(sink.epochs.size(), 3u);
  EXPECT_EQ(sink.epochs.back().epoch, 3);
  // Chance is 10%.
  EXPECT_GT(sink.epochs.back().test_accuracy, 0.6);
  EXPECT_LT(sink.epochs.back().train_loss, sink.epochs.front().train_loss);
  EXPECT_GT(sink.epochs.back().images_per_second, 0);
  EXPECT_GT(sink.epochs.back().epoch_seconds, 0);
  EXPECT_DOUBLE_EQ(sink.epochs.back().best_test_accuracy,
                   std::max({sink.epochs[0].test_accuracy, sink.epochs[1].test_accuracy,
                             sink.epochs[2].test_accuracy}));
}

TEST(TrainerTest, ResNetLearnsSyntheticData) {
  const Dataset data = Synthetic(640, 200, 16);
  RecordingSink sink;
  ASSERT_TRUE(Train(Spec("resnet", 2), data, {}, sink).ok());
  ASSERT_EQ(sink.epochs.size(), 2u);
  EXPECT_GT(sink.epochs.back().test_accuracy, 0.6);
}

TEST(TrainerTest, SameSeedGivesIdenticalMetricsAndSnapshots) {
  const Dataset data = Synthetic(200, 64, 16);
  ExperimentSpec spec = Spec("simple_cnn", 2);
  spec.augment = true;
  spec.gradient_every_n_steps = 2;
  RecordingSink first, second;
  ASSERT_TRUE(Train(spec, data, {}, first).ok());
  ASSERT_TRUE(Train(spec, data, {}, second).ok());
  ASSERT_EQ(first.epochs.size(), second.epochs.size());
  for (size_t i = 0; i < first.epochs.size(); ++i) {
    EXPECT_EQ(first.epochs[i].train_loss, second.epochs[i].train_loss);
    EXPECT_EQ(first.epochs[i].train_accuracy, second.epochs[i].train_accuracy);
    EXPECT_EQ(first.epochs[i].test_loss, second.epochs[i].test_loss);
    EXPECT_EQ(first.epochs[i].test_accuracy, second.epochs[i].test_accuracy);
  }
  ASSERT_EQ(first.snapshots.size(), second.snapshots.size());
  for (size_t i = 0; i < first.snapshots.size(); ++i) {
    for (size_t k = 0; k < first.snapshots[i].gradients.size(); ++k) {
      EXPECT_EQ(first.snapshots[i].gradients[k].grad_norm,
                second.snapshots[i].gradients[k].grad_norm);
    }
  }

  spec.seed = 43;
  RecordingSink other;
  ASSERT_TRUE(Train(spec, data, {}, other).ok());
  EXPECT_NE(first.epochs.back().train_loss, other.epochs.back().train_loss);
}

TEST(TrainerTest, SnapshotsAtStepOneEveryNStepsAndEveryEpochEnd) {
  // 200 samples in batches of 32: 7 batches per epoch, 14 steps in all.
  const Dataset data = Synthetic(200, 32, 16);
  ExperimentSpec spec = Spec("deep_cnn", 2);
  spec.gradient_every_n_steps = 5;
  RecordingSink sink;
  ASSERT_TRUE(Train(spec, data, {}, sink).ok());
  std::vector<int64_t> steps;
  for (const GradientSnapshot& s : sink.snapshots) steps.push_back(s.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 5, 7, 10, 14}));
  EXPECT_EQ(sink.snapshots[2].epoch, 1);
  EXPECT_EQ(sink.snapshots[2].batch, 7);
  EXPECT_EQ(sink.snapshots[3].epoch, 2);
  EXPECT_EQ(sink.snapshots[3].batch, 3);

  const GradientSnapshot& first = sink.snapshots.front();
  // 10 convs and fc, each with weight and bias.
  ASSERT_EQ(first.gradients.size(), 22u);
  EXPECT_EQ(first.gradients.front().name, "conv1.weight");
  EXPECT_EQ(first.gradients.back().name, "fc.bias");
  for (const LayerGradient& layer : first.gradients) {
    EXPECT_GE(layer.grad_norm, 0) << layer.name;
    EXPECT_GT(layer.weight_norm, 0) << layer.name;
    EXPECT_DOUBLE_EQ(layer.ratio, layer.grad_norm / layer.weight_norm);
  }
  ASSERT_EQ(first.activations.size(), 11u);
  EXPECT_EQ(first.activations.front().name, "conv1");
  EXPECT_EQ(first.activations.back().name, "fc");

  spec.gradient_every_n_steps = 0;
  RecordingSink sparse;
  ASSERT_TRUE(Train(spec, data, {}, sparse).ok());
  steps.clear();
  for (const GradientSnapshot& s : sparse.snapshots) steps.push_back(s.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 7, 14}));
}

TEST(TrainerTest, CancellationStopsWithinOneBatch) {
  const Dataset data = Synthetic(640, 64, 16);
  std::atomic<bool> stop{false};
  TrainingControl control;
  control.stop_requested = &stop;
  control.progress_interval = absl::ZeroDuration();  // a progress event after every batch
  RecordingSink sink;
  sink.StopAfterBatches(3, &stop);
  absl::Status status = Train(Spec("simple_cnn", 5), data, control, sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("cancelled in epoch 1 before batch 4"));
  ASSERT_FALSE(sink.progress.empty());
  EXPECT_EQ(sink.progress.back().batch, 3);
  EXPECT_TRUE(sink.epochs.empty());
}

TEST(TrainerTest, BatchProgressIsPacedByTheClock) {
  const Dataset data = Synthetic(320, 32, 8);
  // Each call of the fake clock advances it by 100 ms; progress every 500 ms of it.
  absl::Time now = absl::UnixEpoch();
  TrainingControl control;
  control.clock = [&now] { return now += absl::Milliseconds(100); };
  RecordingSink sink;
  ExperimentSpec spec = Spec("mlp", 1);
  ASSERT_TRUE(Train(spec, data, control, sink).ok());
  // 10 batches; one clock reading per batch plus the epoch's own readings.
  ASSERT_GE(sink.progress.size(), 2u);
  EXPECT_LT(sink.progress.size(), 10u);
  EXPECT_EQ(sink.progress.back().batch, 10);
  EXPECT_EQ(sink.progress.back().batches, 10);
  EXPECT_GT(sink.progress.back().images_per_second, 0);
  // The evaluations' times, on the same clock: one reading before and one after each.
  ASSERT_EQ(sink.predictions.size(), 2u);
  EXPECT_DOUBLE_EQ(sink.predictions[0].evaluation_seconds, 0.1);
  EXPECT_DOUBLE_EQ(sink.predictions[1].evaluation_seconds, 0.1);
}

TEST(TrainerTest, StepLrMultipliesTheRateAfterEachStep) {
  const Dataset data = Synthetic(64, 32, 8);
  ExperimentSpec spec = Spec("mlp", 3);
  spec.lr_step_size = 1;
  spec.lr_gamma = 0.5;
  RecordingSink sink;
  ASSERT_TRUE(Train(spec, data, {}, sink).ok());
  ASSERT_EQ(sink.epochs.size(), 3u);
  EXPECT_DOUBLE_EQ(sink.epochs[0].learning_rate, 0.01);
  EXPECT_DOUBLE_EQ(sink.epochs[1].learning_rate, 0.005);
  EXPECT_DOUBLE_EQ(sink.epochs[2].learning_rate, 0.0025);
}

TEST(TrainerTest, WarmUpAndIterationMilestonesChangeTheRateWithinEpochs) {
  const Dataset data = Synthetic(96, 32, 8);  // 3 steps per epoch
  ExperimentSpec spec = Spec("mlp", 3);
  spec.warmup_iterations = 4;
  spec.warmup_learning_rate = 0.001;
  spec.lr_milestones = {8};
  spec.lr_milestone_unit = "iterations";
  spec.lr_gamma = 0.5;
  RecordingSink sink;
  ASSERT_TRUE(Train(spec, data, {}, sink).ok());
  ASSERT_EQ(sink.epochs.size(), 3u);
  EXPECT_EQ(sink.epochs[0].learning_rate, 0.001);  // step 3: warming up
  EXPECT_EQ(sink.epochs[1].learning_rate, 0.01);   // step 6
  EXPECT_EQ(sink.epochs[2].learning_rate, 0.005);  // step 9, after the milestone at 8

  // The warm-up trains: the same run without it ends elsewhere.
  spec.warmup_iterations = 0;
  RecordingSink without;
  ASSERT_TRUE(Train(spec, data, {}, without).ok());
  EXPECT_NE(without.epochs[0].train_loss, sink.epochs[0].train_loss);
}

// Epoch 0 before the first step, then each epoch's from its own evaluation; the extra
// pass at initialisation changes nothing of the training.
TEST(TrainerTest, PredictionsAtInitialisationAndAfterEveryEpochChangeNothingOfTheTraining) {
  const Dataset data = Synthetic(96, 40, 8);
  ExperimentSpec spec = Spec("resnet", 2);
  spec.augment = true;
  RecordingSink sink;
  ASSERT_TRUE(Train(spec, data, {}, sink).ok());
  ASSERT_EQ(sink.predictions.size(), 3u);
  for (int epoch = 0; epoch <= 2; ++epoch) {
    const Predictions& p = sink.predictions[epoch];
    EXPECT_EQ(p.epoch, epoch);
    EXPECT_EQ(p.samples, 40);
    EXPECT_EQ(p.class_names.size(), 10u);
    int64_t correct = 0;
    for (int c = 0; c < 10; ++c) correct += p.confusion[c * 10 + c];
    if (epoch == 0) continue;
    EXPECT_EQ(p.test_loss, sink.epochs[epoch - 1].test_loss);
    EXPECT_EQ(correct / 40.0, sink.epochs[epoch - 1].test_accuracy);
  }
  EXPECT_NEAR(sink.predictions[0].test_loss, std::log(10.0), 0.5) << "an untrained model";

  spec.evaluate_at_init = false;
  RecordingSink without;
  ASSERT_TRUE(Train(spec, data, {}, without).ok());
  ASSERT_EQ(without.predictions.size(), 2u);
  EXPECT_EQ(without.predictions[0].epoch, 1);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(without.epochs[i].train_loss, sink.epochs[i].train_loss);
    EXPECT_EQ(without.epochs[i].test_loss, sink.epochs[i].test_loss);
    EXPECT_EQ(without.predictions[i].confusion, sink.predictions[i + 1].confusion);
  }
}

TEST(TrainerTest, MlpBatchNormWithALastBatchOfOneIsRefused) {
  const Dataset data = Synthetic(65, 32, 8);
  RecordingSink sink;
  absl::Status status = Train(Spec("mlp", 1), data, {}, sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("65 training samples in batches of 32 leave a last batch of 1, but a batch "
                        "needs at least 2 samples"));
}

// The fields a resumed run must reproduce bit for bit (timings aside).
void ExpectSameEpoch(const EpochMetrics& a, const EpochMetrics& b) {
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.train_loss, b.train_loss) << "epoch " << a.epoch;
  EXPECT_EQ(a.train_accuracy, b.train_accuracy) << "epoch " << a.epoch;
  EXPECT_EQ(a.test_loss, b.test_loss) << "epoch " << a.epoch;
  EXPECT_EQ(a.test_accuracy, b.test_accuracy) << "epoch " << a.epoch;
  EXPECT_EQ(a.best_test_accuracy, b.best_test_accuracy) << "epoch " << a.epoch;
  EXPECT_EQ(a.learning_rate, b.learning_rate) << "epoch " << a.epoch;
}

// Every state a checkpoint keeps matters here: momentum, augmentation and shuffling
// from one generator, BatchNorm's running statistics, the learning rate schedule (a
// warm-up that outlasts epoch 1, then a milestone within epoch 4).
TEST(TrainerTest, ResumingFromAnyEpochsCheckpointGivesTheUninterruptedRunsEpochs) {
  const Dataset data = Synthetic(96, 32, 16);  // 3 steps per epoch
  ExperimentSpec spec = Spec("resnet", 4);
  spec.augment = true;
  spec.batch_norm = true;
  spec.warmup_iterations = 4;
  spec.warmup_learning_rate = 0.002;
  spec.lr_milestones = {10};
  spec.lr_milestone_unit = "iterations";
  spec.lr_gamma = 0.5;
  spec.gradient_every_n_steps = 3;
  std::vector<TrainingCheckpoint> checkpoints;
  TrainingControl control;
  control.save_checkpoint = [&](const TrainingCheckpoint& checkpoint) {
    checkpoints.push_back(checkpoint);
    return absl::OkStatus();
  };
  RecordingSink whole;
  ASSERT_TRUE(Train(spec, data, control, whole).ok());
  ASSERT_EQ(checkpoints.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(checkpoints[i].metrics.epoch, i + 1);
    absl::StatusOr<EpochMetrics> stored = CheckpointMetrics(checkpoints[i].state);
    ASSERT_TRUE(stored.ok()) << stored.status();
    ExpectSameEpoch(*stored, whole.epochs[i]);
  }

  for (int resume_after : {1, 2, 3}) {
    SCOPED_TRACE(absl::StrCat("resumed after epoch ", resume_after));
    TrainingControl resumed_control;
    resumed_control.resume_from = &checkpoints[resume_after - 1].state;
    RecordingSink resumed;
    ASSERT_TRUE(Train(spec, data, resumed_control, resumed).ok());
    ASSERT_EQ(resumed.epochs.size(), static_cast<size_t>(4 - resume_after));
    for (size_t i = 0; i < resumed.epochs.size(); ++i) {
      ExpectSameEpoch(resumed.epochs[i], whole.epochs[resume_after + i]);
    }
    // So are their predictions; epoch 0 is not told of again.
    ASSERT_EQ(resumed.predictions.size(), resumed.epochs.size());
    for (size_t i = 0; i < resumed.predictions.size(); ++i) {
      const Predictions& want = whole.predictions[resume_after + 1 + i];
      EXPECT_EQ(resumed.predictions[i].epoch, want.epoch);
      EXPECT_EQ(resumed.predictions[i].confusion, want.confusion);
      EXPECT_EQ(resumed.predictions[i].mean_softmax, want.mean_softmax);
    }
    // The snapshots of the resumed epochs, step numbers included, are the same too.
    ASSERT_FALSE(resumed.snapshots.empty());
    const size_t offset = whole.snapshots.size() - resumed.snapshots.size();
    for (size_t i = 0; i < resumed.snapshots.size(); ++i) {
      EXPECT_EQ(resumed.snapshots[i].step, whole.snapshots[offset + i].step);
      EXPECT_EQ(resumed.snapshots[i].gradients[0].grad_norm,
                whole.snapshots[offset + i].gradients[0].grad_norm);
    }
  }
}

// The layouts convolve (and, in the resnet, normalise) with different summation orders:
// the same numbers up to float rounding, which training then compounds step by step.
// The prefetching thread draws augmentation from the run's generator in the same order as
// preparing each batch in line would, so the two give the same run bit for bit.
TEST(TrainerTest, PrefetchingBatchesChangesNoResult) {
  const Dataset data = Synthetic(200, 64, 16);
  ExperimentSpec spec = Spec("simple_cnn", 3);
  spec.augment = true;
  spec.gradient_every_n_steps = 3;
  TrainingControl in_line;
  in_line.prefetch_batches = false;
  TrainingControl prefetching;
  ASSERT_TRUE(prefetching.prefetch_batches) << "prefetching is the default";
  RecordingSink expected, actual;
  ASSERT_TRUE(Train(spec, data, in_line, expected).ok());
  ASSERT_TRUE(Train(spec, data, prefetching, actual).ok());
  ASSERT_EQ(actual.epochs.size(), 3u);
  ASSERT_EQ(expected.epochs.size(), 3u);
  for (size_t i = 0; i < actual.epochs.size(); ++i) {
    ExpectSameEpoch(actual.epochs[i], expected.epochs[i]);
  }
  ASSERT_EQ(actual.snapshots.size(), expected.snapshots.size());
  for (size_t i = 0; i < actual.snapshots.size(); ++i) {
    for (size_t k = 0; k < actual.snapshots[i].gradients.size(); ++k) {
      EXPECT_EQ(actual.snapshots[i].gradients[k].grad_norm,
                expected.snapshots[i].gradients[k].grad_norm)
          << "step " << actual.snapshots[i].step << " " << actual.snapshots[i].gradients[k].name;
    }
  }
}

TEST(TrainerTest, ChannelsLastAgreesWithNchwWithinFloatRounding) {
  const Dataset data = Synthetic(256, 64, 16);
  for (const char* model : {"simple_cnn", "deep_cnn", "resnet"}) {
    SCOPED_TRACE(model);
    ExperimentSpec spec = Spec(model, 1);
    spec.augment = true;
    RecordingSink nchw, nhwc;
    TrainingControl control;
    control.channels_last = false;
    ASSERT_TRUE(Train(spec, data, control, nchw).ok());
    control.channels_last = true;
    ASSERT_TRUE(Train(spec, data, control, nhwc).ok());
    // Step 1, before any update: the forward pass layer by layer, then the gradients.
    const GradientSnapshot& a = nchw.snapshots[0];
    const GradientSnapshot& b = nhwc.snapshots[0];
    ASSERT_EQ(a.activations.size(), b.activations.size());
    for (size_t k = 0; k < a.activations.size(); ++k) {
      EXPECT_NEAR(b.activations[k].std, a.activations[k].std, 1e-5 * a.activations[k].std)
          << a.activations[k].name;
    }
    ASSERT_EQ(a.gradients.size(), b.gradients.size());
    for (size_t k = 0; k < a.gradients.size(); ++k) {
      EXPECT_NEAR(b.gradients[k].grad_norm, a.gradients[k].grad_norm,
                  1e-3 * a.gradients[k].grad_norm + 1e-12)
          << a.gradients[k].name;
    }
    // After an epoch of updates.
    EXPECT_NEAR(nhwc.epochs[0].train_loss, nchw.epochs[0].train_loss,
                1e-2 * nchw.epochs[0].train_loss);
    EXPECT_NEAR(nhwc.epochs[0].test_loss, nchw.epochs[0].test_loss,
                1e-2 * nchw.epochs[0].test_loss);
  }
}

TEST(TrainerTest, Bf16LearnsLikeFp32AndItsRunsAreExactlyRepeatable) {
  const Dataset data = Synthetic(1000, 300, 32);
  ExperimentSpec fp32 = Spec("simple_cnn", 3);
  ExperimentSpec bf16 = fp32;
  bf16.precision = "bf16";
  RecordingSink full, low, low_again;
  ASSERT_TRUE(Train(fp32, data, {}, full).ok());
  ASSERT_TRUE(Train(bf16, data, {}, low).ok());
  // Autocast ran: bf16 rounds differently from fp32...
  EXPECT_NE(low.epochs[0].train_loss, full.epochs[0].train_loss);
  // ...and learns as well.
  EXPECT_GT(low.epochs.back().test_accuracy, 0.6);
  EXPECT_NEAR(low.epochs.back().test_accuracy, full.epochs.back().test_accuracy, 0.1);
  // The weights stay fp32.
  EXPECT_GT(low.snapshots.back().gradients[0].weight_norm, 0);
  ASSERT_TRUE(Train(bf16, data, {}, low_again).ok());
  for (size_t i = 0; i < low.epochs.size(); ++i) {
    EXPECT_EQ(low.epochs[i].train_loss, low_again.epochs[i].train_loss);
    EXPECT_EQ(low.epochs[i].test_accuracy, low_again.epochs[i].test_accuracy);
  }
}

// An uploaded copy of simple_cnn (tests/reference/models.py's, traced after
// torch.manual_seed(42), the spec's seed) trains as the built-in one does, bit for bit:
// the same initial weights, data order and augmentation, and the same operators in the
// same order (the built-in in NCHW here; an uploaded model always is). The JIT's graph
// optimisations, on as LibTorch has them by default, change no rounding. Its gradient
// snapshots name the same parameters; it records no activations (a script has no hooks).
TEST(TrainerTest, AnUploadedSimpleCnnTrainsAsTheBuiltInOneDoes) {
  const Dataset data = Synthetic(200, 64, 32);
  ExperimentSpec built_in = Spec("simple_cnn", 2);
  built_in.augment = true;
  built_in.gradient_every_n_steps = 3;
  ExperimentSpec uploaded = built_in;
  uploaded.model = "uploaded:simple_cnn";
  uploaded.batch_norm.reset();
  uploaded.skip_connections.reset();
  ASSERT_TRUE(ResolveSpec(uploaded).ok());
  TrainingControl nchw;
  nchw.channels_last = false;
  TrainingControl from_file;
  from_file.model_file = TorchScriptFixture("simple_cnn.pt");
  RecordingSink expected, actual;
  ASSERT_TRUE(Train(built_in, data, nchw, expected).ok());
  absl::Status trained = Train(uploaded, data, from_file, actual);
  ASSERT_TRUE(trained.ok()) << trained;
  ASSERT_EQ(actual.epochs.size(), 2u);
  for (size_t i = 0; i < actual.epochs.size(); ++i) {
    ExpectSameEpoch(actual.epochs[i], expected.epochs[i]);
  }
  ASSERT_EQ(actual.snapshots.size(), expected.snapshots.size());
  for (size_t i = 0; i < actual.snapshots.size(); ++i) {
    ASSERT_EQ(actual.snapshots[i].gradients.size(), expected.snapshots[i].gradients.size());
    for (size_t k = 0; k < actual.snapshots[i].gradients.size(); ++k) {
      EXPECT_EQ(actual.snapshots[i].gradients[k].name, expected.snapshots[i].gradients[k].name);
      EXPECT_EQ(actual.snapshots[i].gradients[k].grad_norm,
                expected.snapshots[i].gradients[k].grad_norm);
    }
    EXPECT_TRUE(actual.snapshots[i].activations.empty());
  }
  EXPECT_EQ(actual.predictions.back().confusion, expected.predictions.back().confusion);
}

// Checkpoints and resume, and bf16 autocast, reach an uploaded module's code as they reach
// a built-in model's. good.pt has dropout, whose masks come from the process-wide
// generator: the trainer seeds it from the step, so a resumed run draws the same masks.
TEST(TrainerTest, AnUploadedModelResumesExactlyAndTrainsInBf16) {
  const Dataset data = Synthetic(96, 32, 32);
  ExperimentSpec spec = Spec("uploaded:good", 2);
  spec.augment = true;
  TrainingControl control;
  control.model_file = TorchScriptFixture("good.pt");
  std::vector<TrainingCheckpoint> checkpoints;
  control.save_checkpoint = [&](const TrainingCheckpoint& checkpoint) {
    checkpoints.push_back(checkpoint);
    return absl::OkStatus();
  };
  RecordingSink whole;
  ASSERT_TRUE(Train(spec, data, control, whole).ok());
  ASSERT_EQ(checkpoints.size(), 2u);
  TrainingControl resumed_control;
  resumed_control.model_file = control.model_file;
  resumed_control.resume_from = &checkpoints[0].state;
  RecordingSink resumed;
  ASSERT_TRUE(Train(spec, data, resumed_control, resumed).ok());
  ASSERT_EQ(resumed.epochs.size(), 1u);
  ExpectSameEpoch(resumed.epochs[0], whole.epochs[1]);

  spec.precision = "bf16";
  RecordingSink low;
  TrainingControl bf16_control;
  bf16_control.model_file = control.model_file;
  ASSERT_TRUE(Train(spec, data, bf16_control, low).ok());
  EXPECT_NE(low.epochs[0].train_loss, whole.epochs[0].train_loss);
  EXPECT_NEAR(low.epochs[0].train_loss, whole.epochs[0].train_loss,
              0.05 * whole.epochs[0].train_loss);

  TrainingControl missing;
  missing.model_file = "/nonexistent/model.pt";
  EXPECT_EQ(Train(spec, data, missing, low).code(), absl::StatusCode::kInvalidArgument);
}

TEST(TrainerTest, ACheckpointThatFailsToSaveEndsTheRunWithItsError) {
  TrainingControl control;
  control.save_checkpoint = [](const TrainingCheckpoint&) {
    return absl::ResourceExhaustedError("disk full");
  };
  RecordingSink sink;
  const absl::Status status = Train(Spec("simple_cnn", 3), Synthetic(64, 32, 8), control, sink);
  EXPECT_EQ(status, absl::ResourceExhaustedError("disk full"));
  EXPECT_TRUE(sink.epochs.empty());  // the epoch is not reported before its checkpoint is safe
}

TEST(TrainerTest, ACheckpointOfAnotherModelIsRefused) {
  const Dataset data = Synthetic(64, 32, 8);
  std::string state;
  TrainingControl control;
  control.save_checkpoint = [&](const TrainingCheckpoint& checkpoint) {
    state = checkpoint.state;
    return absl::OkStatus();
  };
  RecordingSink sink;
  ASSERT_TRUE(Train(Spec("simple_cnn", 1), data, control, sink).ok());
  TrainingControl resume;
  resume.resume_from = &state;
  absl::Status status = Train(Spec("deep_cnn", 2), data, resume, sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("checkpoint: \"model.conv1.weight\" has shape"));
  const std::string garbage = "not a pickle";
  resume.resume_from = &garbage;
  EXPECT_FALSE(Train(Spec("simple_cnn", 2), data, resume, sink).ok());
  EXPECT_FALSE(CheckpointMetrics(garbage).ok());
}

TEST(TrainerTest, LibTorchErrorsBecomeStatuses) {
  Dataset data = Synthetic(64, 32, 8);
  // Labels beyond the model's classes make cross_entropy throw inside LibTorch.
  data.train.labels.fill_(42);
  RecordingSink sink;
  absl::Status status = Train(Spec("simple_cnn", 1), data, {}, sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(status.message()), HasSubstr("LibTorch error"));
}

}  // namespace
}  // namespace gradlab
