#include "client/format.h"

#include <google/protobuf/text_format.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace gradlab {
namespace {

// Compares `actual` with client/testdata/NAME; GRADLAB_UPDATE_GOLDEN=1 rewrites the file
// (review the diff before committing it).
void ExpectGolden(const std::string& name, const std::string& actual) {
  const std::string path = "client/testdata/" + name;
  if (std::getenv("GRADLAB_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << actual;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing golden file " << path << " (run from the repository root)";
  std::stringstream expected;
  expected << in.rdbuf();
  EXPECT_EQ(actual, expected.str()) << "golden file " << path;
}

template <typename Message>
Message Parse(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message));
  return message;
}

TEST(FormatTest, EpochLineIsTheReferenceFormat) {
  auto metrics = Parse<v1::EpochMetrics>(
      "epoch: 1 train_loss: 2.30321 train_accuracy: 0.1 test_loss: 2.30289 test_accuracy: 0.1 "
      "best_test_accuracy: 0.1");
  EXPECT_EQ(EpochLine(metrics), "[Epoch 01] train 2.3032/10.00% | val 2.3029/10.00% (best 10.00%)");
}

TEST(FormatTest, ProgressLineShowsBarRateAndEta) {
  auto progress = Parse<v1::BatchProgress>(
      "epoch: 3 batch: 120 batches: 391 running_loss: 1.23456 running_accuracy: 0.4567 "
      "images_per_second: 812");
  EXPECT_EQ(ProgressLine(progress, 128),
            "[Epoch 03] [#######-----------------] 120/391 loss 1.2346 acc 45.67% 812 img/s "
            "ETA 42.7s");
}

TEST(FormatTest, Durations) {
  EXPECT_EQ(Duration(12.34), "12.3s");
  EXPECT_EQ(Duration(245), "4m05s");
  EXPECT_EQ(Duration(3723), "1h02m03s");
}

v1::Experiment Finished(const std::string& id, const std::string& model, double best) {
  v1::Experiment e;
  e.set_id(id);
  e.set_state(v1::SUCCEEDED);
  e.mutable_spec()->set_model(model);
  e.mutable_spec()->set_dataset("fashion_mnist");
  e.mutable_spec()->set_epochs(2);
  e.set_current_epoch(2);
  e.mutable_last_metrics()->set_epoch(2);
  e.set_best_test_accuracy(best);
  e.mutable_created_time()->set_seconds(1'790'000'000);
  return e;
}

TEST(FormatTest, ExperimentTableGolden) {
  v1::Experiment queued;
  queued.set_id("q2w3e4r5");
  queued.set_name("long run");
  queued.set_state(v1::QUEUED);
  queued.set_queue_position(2);
  queued.mutable_spec()->set_model("resnet");
  queued.mutable_spec()->set_dataset("cifar10");
  queued.mutable_spec()->set_epochs(20);
  ExpectGolden("experiment_table.txt",
               ExperimentTable({queued, Finished("a2b3c4d5", "deep_cnn", 0.0985)}));
}

TEST(FormatTest, GradientTableGolden) {
  auto snapshot = Parse<v1::GradientSnapshot>(R"pb(
    step: 1
    epoch: 1
    batch: 1
    layers { name: "conv1.weight" grad_norm: 1.221e-05 weight_norm: 4.657 ratio: 2.621e-06 }
    layers { name: "conv1.bias" grad_norm: 3.1e-06 weight_norm: 0.6 ratio: 5.2e-06 }
    layers { name: "conv10.weight" grad_norm: 0.01552 weight_norm: 9.234 ratio: 0.001681 }
    layers { name: "fc.weight" grad_norm: 0.01162 weight_norm: 1.835 ratio: 0.006334 }
    layers { name: "fc.bias" grad_norm: 0.2 weight_norm: 0.05 ratio: 4 }
    activations { name: "conv1" std: 0.25 }
    activations { name: "conv10" std: 0.0003 }
    activations { name: "fc" std: 0.03 }
  )pb");
  ExpectGolden("gradient_table.txt", GradientTable(snapshot));
  EXPECT_NEAR(FirstToLastGradRatio(snapshot), 1.221e-05 / 0.01162, 1e-12);
}

// The deep plain CNN's picture (one class for every image) and a model that learned.
TEST(FormatTest, PredictionsTableGolden) {
  v1::Predictions collapsed;
  collapsed.set_epoch(0);
  collapsed.set_samples(10000);
  collapsed.set_test_loss(2.30321);
  collapsed.set_evaluation_seconds(4.25);
  for (const char* name :
       {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}) {
    collapsed.add_class_names(name);
  }
  for (int t = 0; t < 10; ++t) {
    for (int c = 0; c < 10; ++c) collapsed.add_confusion(c == 0 ? 1000 : 0);
  }
  for (int c = 0; c < 10; ++c) collapsed.add_predicted_counts(c == 0 ? 10000 : 0);
  for (double mean :
       {0.1076, 0.0987, 0.0978, 0.1012, 0.0995, 0.0991, 0.1003, 0.0987, 0.0989, 0.0982}) {
    collapsed.add_mean_softmax(mean);
  }
  auto learned = Parse<v1::Predictions>(R"pb(
    epoch: 3
    samples: 60
    test_loss: 0.61
    class_names: [ "T-shirt/top", "Trouser", "Pullover" ]
    confusion: [ 16, 1, 3, 0, 20, 0, 5, 0, 15 ]
    predicted_counts: [ 21, 21, 18 ]
    mean_softmax: [ 0.35, 0.34, 0.31 ]
  )pb");
  ExpectGolden("predictions_table.txt",
               PredictionsTable(collapsed) + "\n" + PredictionsTable(learned));
}

TEST(FormatTest, ComparisonTableGolden) {
  ComparisonRow shallow{
      Finished("s1s1s1s1", "simple_cnn", 0.4215), 2.2214, 0.4215, 3.26, 1740, 0.0394};
  ComparisonRow deep{
      Finished("d2d2d2d2", "deep_cnn", 0.0985), 2.3034, 0.0985, 42.5, 124.1, 0.00105};
  ComparisonRow failed{Finished("r3r3r3r3", "resnet", 0), 0, 0, 0, 0, 0};
  failed.experiment.set_state(v1::FAILED);
  failed.experiment.clear_last_metrics();
  ExpectGolden("comparison_table.txt", ComparisonTable({shallow, deep, failed}));
}

TEST(FormatTest, ServerInfoGolden) {
  auto info = Parse<v1::ServerInfo>(R"pb(
    version: "0.1.0"
    workers: 1
    threads_per_job: 2
    queue_capacity: 100
    queue_length: 1
    max_run_memory_bytes: 6442450944
    models {
      name: "resnet"
      parameter_count: 2777674
      input_shape: "3x32x32"
      default_spec {
        batch_norm: true
        epochs: 20
        batch_size: 128
        learning_rate: 0.001
        momentum: 0.9
      }
    }
    datasets { name: "fashion_mnist" present: true location: "/usr/share/datasets/fashion-mnist" }
    registered_workers { id: "w1" name: "host-a" address: "10.0.0.2" cpus: 8 threads_per_job: 2 }
    registered_workers {
      id: "w2"
      name: "host-b"
      address: "10.0.0.3"
      cpus: 8
      threads_per_job: 2
      experiment_id: "k3v9x2mq"
      rank: 1
    }
  )pb");
  ExpectGolden("server_info.txt", ServerInfoText(info));
  info.clear_registered_workers();
  EXPECT_NE(ServerInfoText(info).find("no workers registered"), std::string::npos);
}

TEST(FormatTest, FinalStateLine) {
  v1::Experiment e = Finished("x", "resnet", 0.4865);
  EXPECT_EQ(FinalStateLine(e), "SUCCEEDED after 2 epochs, best test accuracy 48.65%");
  e.set_state(v1::FAILED);
  e.set_error("test_batch.bin: cannot open");
  e.clear_last_metrics();
  EXPECT_EQ(FinalStateLine(e), "FAILED after 0 epochs: test_batch.bin: cannot open");
}

v1::Sweep TwoCellSweep() {
  return Parse<v1::Sweep>(R"pb(
    id: "swp12345"
    name: "bn, \"quoted\""
    state: RUNNING
    seeds: [ 42, 43 ]
    runs_total: 4
    runs_done: 3
    spec { axes { field: "batch_norm" } }
    cells {
      index: 0
      description: "batch_norm=false"
      values { bool_value: false }
      experiment_ids: [ "aaaa1111", "bbbb2222" ]
      runs_succeeded: 1
      runs_failed: 1
      final_test_accuracy { count: 1 mean: 0.1 min: 0.1 max: 0.1 }
      best_test_accuracy { count: 1 mean: 0.1 min: 0.1 max: 0.1 }
      final_train_loss { count: 1 mean: 2.302585 min: 2.302585 max: 2.302585 }
      first_layer_step1_grad_norm { count: 2 mean: 3.1e-7 std: 2e-8 }
      last_layer_step1_grad_norm { count: 2 mean: 0.052 std: 0.004 }
    }
    cells {
      index: 1
      description: "batch_norm=true"
      values { bool_value: true }
      experiment_ids: [ "cccc3333", "dddd4444" ]
      runs_succeeded: 1
      final_test_accuracy { count: 1 mean: 0.7123 }
    }
  )pb");
}

TEST(FormatTest, SweepTableShowsMeanAndSpreadPerCell) {
  v1::Sweep sweep = TwoCellSweep();
  sweep.mutable_cells(0)->mutable_final_test_accuracy()->set_count(2);
  sweep.mutable_cells(0)->mutable_final_test_accuracy()->set_std(0.0123);
  ExpectGolden("sweep_table.txt", SweepTable(sweep));
  ExpectGolden("sweep_list.txt", SweepListTable({sweep}));
}

TEST(FormatTest, MetricsCsvHasARowPerRunAndEpochWithItsCellAndQuotesWhatItMust) {
  const v1::Sweep sweep = TwoCellSweep();
  std::vector<RunEpochs> runs(2);
  runs[0].experiment =
      Parse<v1::Experiment>(R"pb(id: "aaaa1111"
                                 name: "bn, run 1"
                                 spec { model: "deep_cnn" dataset: "synthetic" seed: 42 })pb");
  runs[0].epochs = {Parse<v1::EpochMetrics>("epoch: 1 train_loss: 2.5 test_accuracy: 0.1"),
                    Parse<v1::EpochMetrics>("epoch: 2 train_loss: 0.1 test_accuracy: 0.3")};
  runs[1].experiment =
      Parse<v1::Experiment>(R"pb(id: "cccc3333"
                                 spec { model: "deep_cnn" dataset: "synthetic" seed: 42 })pb");
  runs[1].epochs = {Parse<v1::EpochMetrics>("epoch: 1 train_loss: 2.25 test_accuracy: 0.5")};
  ExpectGolden("sweep_metrics.csv", MetricsCsv(&sweep, runs));
  // An experiment of no sweep: no axes' columns, its own model, dataset and seed.
  runs.pop_back();
  const std::string alone = MetricsCsv(nullptr, runs);
  EXPECT_EQ(alone.substr(0, alone.find("\r\n")),
            "experiment,name,sweep,cell,model,dataset,seed,epoch,train_loss,train_accuracy,"
            "test_loss,test_accuracy,best_test_accuracy,learning_rate,epoch_seconds,"
            "images_per_second");
  EXPECT_NE(alone.find("aaaa1111,\"bn, run 1\",,,deep_cnn,synthetic,42,2,0.1,0,0,0.3,"),
            std::string::npos)
      << alone;
}

TEST(FormatTest, PredictionsCsvHasARowPerEpochTrueAndPredictedClass) {
  const v1::Sweep sweep = TwoCellSweep();
  std::vector<RunEpochs> runs(1);
  runs[0].experiment =
      Parse<v1::Experiment>(R"pb(id: "aaaa1111"
                                 name: "bn, run 1"
                                 spec { model: "deep_cnn" dataset: "synthetic" seed: 42 })pb");
  runs[0].predictions = {Parse<v1::Predictions>(R"pb(
                           epoch: 0
                           class_names: [ "cat", "dog, big" ]
                           samples: 5
                           confusion: [ 3, 0, 2, 0 ]
                           mean_softmax_by_class: [ 0.75, 0.25, 0.625, 0.375 ]
                         )pb"),
                         Parse<v1::Predictions>(R"pb(
                           epoch: 1
                           class_names: [ "cat", "dog, big" ]
                           samples: 5
                           confusion: [ 2, 1, 0, 2 ]
                           mean_softmax_by_class: [ 0.5, 0.5, 0.125, 0.875 ]
                         )pb")};
  ExpectGolden("sweep_predictions.csv", PredictionsCsv(&sweep, runs));
}

}  // namespace
}  // namespace gradlab
