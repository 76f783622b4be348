// The real `gradlab` CLI against a real gradlabd: every command, --json, exit codes.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "gtest/gtest.h"
#include "re2/re2.h"
#include "tests/testing/child_process.h"
#include "tests/testing/tcp_proxy.h"

namespace gradlab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// One gradlabd for the whole suite; each test submits its own experiments.
class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::filesystem::path state_dir =
        std::filesystem::path(::testing::TempDir()) / "cli_e2e_state";
    std::filesystem::remove_all(state_dir);
    absl::StatusOr<ChildProcess> server = ChildProcess::Start(
        {GRADLABD_PATH, "--listen=127.0.0.1:0", "--http_listen=127.0.0.1:0", "--threads_per_job=2",
         "--data_dir=/nonexistent", "--allowed_data_dirs=" + ::testing::TempDir(),
         "--state_dir=" + state_dir.string()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = new ChildProcess(*std::move(server));
    absl::StatusOr<std::string> line =
        server_->ReadLineContaining("listening on port", absl::Seconds(60));
    ASSERT_TRUE(line.ok()) << line.status();
    address_ = new std::string("127.0.0.1:" + line->substr(line->rfind(' ') + 1));
  }
  static void TearDownTestSuite() {
    server_->Signal(SIGTERM);
    EXPECT_EQ(server_->Wait(absl::Seconds(10) * GRADLAB_TEST_SLOWDOWN), 0);
    delete server_;
    delete address_;
  }

  static CommandResult Gradlab(std::vector<std::string> args,
                               absl::Duration timeout = absl::Seconds(300)) {
    // Admitting a deep_cnn run measures a training step of it, which takes some 12 s under
    // AddressSanitizer (3 s without, both on a busy machine): more than 10 s.
    args.insert(args.begin(), {GRADLAB_PATH, "--server=" + *address_,
                               absl::StrCat("--timeout=", 10 * GRADLAB_TEST_SLOWDOWN)});
    return RunCommand(args, {}, timeout * GRADLAB_TEST_SLOWDOWN);
  }

  // Quick synthetic runs.
  static std::vector<std::string> Quick(int epochs = 2) {
    return {"--model=mlp",
            "--dataset=synthetic",
            "--epochs=" + std::to_string(epochs),
            "--max_train_samples=256",
            "--max_test_samples=64",
            "--batch_size=32"};
  }

  static std::string Submit(std::vector<std::string> flags) {
    flags.insert(flags.begin(), "submit");
    CommandResult result = Gradlab(flags);
    EXPECT_EQ(result.exit_code, 0) << result.out;
    return std::string(absl::StripAsciiWhitespace(result.out));
  }

  template <typename Message>
  static std::vector<Message> ParseJsonLines(const std::string& out) {
    std::vector<Message> messages;
    for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
      Message message;
      auto status = google::protobuf::util::JsonStringToMessage(std::string(line), &message);
      EXPECT_TRUE(status.ok()) << status.ToString() << ": " << line;
      messages.push_back(message);
    }
    return messages;
  }

  static ChildProcess* server_;
  static std::string* address_;
};

ChildProcess* CliTest::server_ = nullptr;
std::string* CliTest::address_ = nullptr;

TEST_F(CliTest, SubmitFollowPrintsReferenceEpochLinesAndExitsZero) {
  std::vector<std::string> args = {"submit", "--follow"};
  for (const std::string& flag : Quick()) args.push_back(flag);
  CommandResult result = Gradlab(args);
  EXPECT_EQ(result.exit_code, 0) << result.out;
  EXPECT_TRUE(RE2::PartialMatch(
      result.out,
      R"(\[Epoch 01\] train \d\.\d{4}/\d+\.\d\d% \| val \d\.\d{4}/\d+\.\d\d% \(best \d+\.\d\d%\)\n)"))
      << result.out;
  EXPECT_THAT(result.out, HasSubstr("[Epoch 02]"));
  EXPECT_TRUE(RE2::PartialMatch(result.out,
                                R"(SUCCEEDED after 2 epochs, best test accuracy \d+\.\d\d%\n$)"))
      << result.out;
}

TEST_F(CliTest, SubmitListGetWatchGradsAndTheirJson) {
  const std::string id = Submit(Quick());
  ASSERT_TRUE(RE2::FullMatch(id, "[a-z0-9]{8}")) << id;
  CommandResult watch = Gradlab({"watch", id});
  EXPECT_EQ(watch.exit_code, 0);

  CommandResult list = Gradlab({"list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.out, HasSubstr("ID"));
  EXPECT_THAT(list.out, HasSubstr(id));
  std::vector<v1::Experiment> listed =
      ParseJsonLines<v1::Experiment>(Gradlab({"--json", "list", "--state=SUCCEEDED"}).out);
  ASSERT_FALSE(listed.empty());
  for (const auto& e : listed) EXPECT_EQ(e.state(), v1::SUCCEEDED);

  CommandResult get = Gradlab({"get", id});
  EXPECT_EQ(get.exit_code, 0);
  EXPECT_TRUE(RE2::PartialMatch(get.out, R"(state:\s+SUCCEEDED\n)")) << get.out;
  std::vector<v1::Experiment> got =
      ParseJsonLines<v1::Experiment>(Gradlab({"get", id, "--json"}).out);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id(), id);
  EXPECT_EQ(got[0].spec().learning_rate(), 0.001);

  std::vector<v1::MetricsEvent> events =
      ParseJsonLines<v1::MetricsEvent>(Gradlab({"watch", id, "--json"}).out);
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.front().state_change().state(), v1::QUEUED);

  CommandResult grads = Gradlab({"grads", id, "--step=1"});
  EXPECT_EQ(grads.exit_code, 0);
  EXPECT_THAT(grads.out, HasSubstr("step 1 (epoch 1, batch 1)"));
  EXPECT_TRUE(
      RE2::PartialMatch(grads.out, R"(fc1\.weight\s+\d\.\d{3}e[-+]\d\d\s+\S+\s+\S+\s+\S+\s+#+)"))
      << grads.out;
  std::vector<v1::GradientSnapshot> snapshots =
      ParseJsonLines<v1::GradientSnapshot>(Gradlab({"grads", id, "--json", "--layers=^fc3"}).out);
  ASSERT_EQ(snapshots.size(), 1u);
  EXPECT_GT(snapshots[0].step(), 1);  // the latest, not step 1
  for (const auto& layer : snapshots[0].layers()) EXPECT_THAT(layer.name(), HasSubstr("fc3"));

  // What the model predicts: at initialisation and after each of the 2 epochs, stored
  // and replayed with the run's other events.
  CommandResult init = Gradlab({"preds", id, "--epoch=0"});
  EXPECT_EQ(init.exit_code, 0) << init.out;
  EXPECT_THAT(init.out, HasSubstr("at initialisation (epoch 0), "));
  EXPECT_THAT(init.out, HasSubstr("confusion matrix: % of each true class's images"));
  EXPECT_TRUE(RE2::PartialMatch(init.out, R"(9 class 9\s+\d+\s+\d+\.\d%\s+0\.\d{4})")) << init.out;
  CommandResult latest = Gradlab({"preds", id});
  EXPECT_THAT(latest.out, HasSubstr("epoch 2, "));
  std::vector<v1::Predictions> at_1 =
      ParseJsonLines<v1::Predictions>(Gradlab({"--json", "preds", id, "--epoch=1"}).out);
  ASSERT_EQ(at_1.size(), 1u);
  int64_t counted = 0;
  for (int64_t count : at_1[0].confusion()) counted += count;
  EXPECT_EQ(counted, at_1[0].samples());
  EXPECT_EQ(at_1[0].epoch(), 1);
  CommandResult missing = Gradlab({"preds", id, "--epoch=7"});
  EXPECT_EQ(missing.exit_code, 3);  // "... has no predictions for epoch 7; it has epochs 0 to 2"
  EXPECT_EQ(Gradlab({"preds", id, "--epoch=one"}).exit_code, 2);

  // The predictions as tidy CSV: a row per epoch, true and predicted class, whose counts
  // are the confusion matrices the stream holds.
  CommandResult csv = Gradlab({"export-metrics", id, "--table=predictions"});
  ASSERT_EQ(csv.exit_code, 0);
  std::vector<std::string> lines = absl::StrSplit(csv.out, "\r\n", absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u + 3 * 10 * 10) << csv.out;  // epochs 0 to 2, 10 x 10 classes
  EXPECT_EQ(lines[0],
            "experiment,name,sweep,cell,model,dataset,seed,epoch,true_class,true_label,"
            "predicted_class,predicted_label,count,mean_softmax");
  std::map<int, int64_t> counted_by_epoch;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> fields = absl::StrSplit(lines[i], ',');
    ASSERT_EQ(fields.size(), 14u) << lines[i];
    EXPECT_EQ(fields[0], id);
    const int epoch = std::stoi(fields[7]);
    counted_by_epoch[epoch] += std::stoll(fields[12]);
    if (epoch == 1) {
      const int t = std::stoi(fields[8]), p = std::stoi(fields[10]);
      EXPECT_EQ(fields[9], "class " + fields[8]);
      EXPECT_EQ(std::stoll(fields[12]), at_1[0].confusion(t * 10 + p)) << lines[i];
    }
  }
  EXPECT_THAT(counted_by_epoch, ElementsAre(Pair(0, at_1[0].samples()), Pair(1, at_1[0].samples()),
                                            Pair(2, at_1[0].samples())));
  EXPECT_EQ(Gradlab({"export-metrics", id, "--table=confusion"}).exit_code, 2);

  const std::string report = ::testing::TempDir() + "/cli_e2e_report.html";
  CommandResult written = Gradlab({"report", id, "-o", report});
  EXPECT_EQ(written.exit_code, 0);
  EXPECT_THAT(written.out, HasSubstr("wrote " + report + ": 1 experiment, "));
  std::ifstream html_file(report);
  const std::string html((std::istreambuf_iterator<char>(html_file)), {});
  EXPECT_THAT(html, HasSubstr("\"id\":\"" + id + "\""));
  EXPECT_THAT(html, HasSubstr("\"predictions\":{\"epoch\":0,"));  // initialisation's, too
  std::vector<google::protobuf::Struct> summary =
      ParseJsonLines<google::protobuf::Struct>(Gradlab({"--json", "report", id, "-o", report}).out);
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].fields().at("file").string_value(), report);
  EXPECT_EQ(summary[0].fields().at("experiments").number_value(), 1);
  EXPECT_GT(summary[0].fields().at("snapshots").number_value(), 1);
  EXPECT_EQ(summary[0].fields().at("bytes").number_value(), static_cast<double>(html.size()));
}

TEST_F(CliTest, WatchResumesFromTheLastSequenceWhenTheConnectionDrops) {
  // About a second of training after the drop, on one thread.
  std::vector<std::string> flags = {
      "--model=mlp",           "--dataset=synthetic", "--epochs=6", "--max_train_samples=1024",
      "--max_test_samples=64", "--batch_size=8",      "--threads=1"};
  const std::string id = Submit(flags);
  TcpProxy proxy(std::stoi(address_->substr(address_->rfind(':') + 1)));
  absl::StatusOr<ChildProcess> watch = ChildProcess::Start(
      {GRADLAB_PATH, "--server=127.0.0.1:" + std::to_string(proxy.port()), "watch", id});
  ASSERT_TRUE(watch.ok());
  absl::StatusOr<std::string> first = watch->ReadLineContaining("[Epoch 02]", absl::Seconds(120));
  ASSERT_TRUE(first.ok()) << first.status();
  proxy.DropConnections();
  const std::string rest = watch->ReadAll(absl::Seconds(120));
  EXPECT_EQ(watch->Wait(absl::Seconds(10)), 0) << rest;
  // Every epoch after the drop exactly once, then the end.
  for (int epoch = 3; epoch <= 6; ++epoch) {
    const std::string line = absl::StrCat("[Epoch 0", epoch, "]");
    ASSERT_NE(rest.find(line), std::string::npos) << rest;
    EXPECT_EQ(rest.find(line), rest.rfind(line)) << rest;
  }
  EXPECT_EQ(rest.find("[Epoch 02]"), std::string::npos) << rest;
  EXPECT_THAT(rest, HasSubstr("SUCCEEDED after 6 epochs"));
  EXPECT_GE(proxy.connections(), 2);  // it did reconnect
}

TEST_F(CliTest, CancelARunningExperiment) {
  const std::string id = Submit(Quick(1000));
  CommandResult cancel = Gradlab({"cancel", id});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.out;
  EXPECT_EQ(cancel.out, id + " CANCELLED\n");
  CommandResult watch = Gradlab({"watch", id});
  EXPECT_EQ(watch.exit_code, 1);
  EXPECT_THAT(watch.out, HasSubstr("CANCELLED after"));
}

TEST_F(CliTest, InfoAndHealth) {
  CommandResult info = Gradlab({"info"});
  EXPECT_EQ(info.exit_code, 0);
  EXPECT_TRUE(RE2::PartialMatch(info.out, R"(resnet\s+2777674\s+3x32x32)")) << info.out;
  EXPECT_TRUE(RE2::PartialMatch(info.out, R"(cifar_resnet\s+269722\s+3x32x32)")) << info.out;
  EXPECT_TRUE(RE2::PartialMatch(info.out, R"(fashion_mnist\s+yes)")) << info.out;
  std::vector<v1::ServerInfo> parsed =
      ParseJsonLines<v1::ServerInfo>(Gradlab({"info", "--json"}).out);
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0].models_size(), 5);
  CommandResult health = Gradlab({"health"});
  EXPECT_EQ(health.exit_code, 0);
  EXPECT_EQ(health.out, "SERVING\n");
}

TEST_F(CliTest, ExportWritesAStateDictThatPyTorchLoadsThenDeleteRemovesTheExperiment) {
  const std::string id =
      Submit({"--model=resnet", "--dataset=synthetic", "--epochs=2", "--max_train_samples=64",
              "--max_test_samples=32", "--batch_size=32"});
  ASSERT_EQ(Gradlab({"watch", id}).exit_code, 0);
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "cli_export";
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "model.pt").string();
  std::filesystem::remove(file);

  CommandResult exported = Gradlab({"export", id, "-o", file, "--which=last"});
  ASSERT_EQ(exported.exit_code, 0) << exported.out;
  EXPECT_THAT(exported.out, HasSubstr("the model of epoch 2 of " + id + " (last)"));
  ASSERT_TRUE(std::filesystem::exists(file));
  EXPECT_FALSE(std::filesystem::exists(file + ".partial"));
  CommandResult best = Gradlab({"--json", "export", id, "-o", file});
  EXPECT_EQ(best.exit_code, 0) << best.out;
  EXPECT_THAT(best.out, HasSubstr("\"file\":\"" + file + "\""));

  // Debian's python3-torch, when present, loads it into the PyTorch module.
  if (std::filesystem::exists("/usr/lib/python3/dist-packages/torch/__init__.py")) {
    CommandResult loaded =
        RunCommand({"/usr/bin/python3", "tests/reference/load_export.py", file, "resnet"});
    EXPECT_EQ(loaded.exit_code, 0) << loaded.out;
    EXPECT_THAT(loaded.out, HasSubstr("into resnet; logits shape [1, 10]"));
  } else {
    std::cerr << "python3-torch is not installed: the PyTorch round trip was not checked\n";
  }

  EXPECT_EQ(Gradlab({"export", id}).exit_code, 2);  // no -o
  EXPECT_EQ(Gradlab({"export", id, "-o", file, "--which=first"}).exit_code, 2);
  EXPECT_EQ(Gradlab({"export", "nosuchid", "-o", file}).exit_code, 3);
  CommandResult deleted = Gradlab({"delete", id});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.out;
  EXPECT_EQ(deleted.out, "deleted " + id + "\n");
  EXPECT_EQ(Gradlab({"get", id}).exit_code, 3);
  EXPECT_EQ(Gradlab({"delete", id}).exit_code, 3);
}

TEST_F(CliTest, DeletingAnUnfinishedExperimentIsRefused) {
  const std::string id = Submit(Quick(1000));
  EXPECT_EQ(Gradlab({"delete", id}).exit_code, 3);  // the message: registry_persistence_test
  EXPECT_EQ(Gradlab({"cancel", id}).exit_code, 0);
  EXPECT_EQ(Gradlab({"delete", id}).exit_code, 0);
}

TEST_F(CliTest, ExitCodesForEachKindOfFailure) {
  // A failed run: the dataset folder is there but its files are corrupt.
  const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "cli_corrupt";
  std::filesystem::create_directories(dir);
  for (const char* name : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    std::ofstream(dir / name) << "this is not an IDX file at all";
  }
  CommandResult failed = Gradlab(
      {"submit", "--follow", "--model=mlp", "--dataset=mnist", "--data_dir=" + dir.string()});
  EXPECT_EQ(failed.exit_code, 1) << failed.out;
  EXPECT_THAT(failed.out, HasSubstr("FAILED after 0 epochs"));
  EXPECT_THAT(failed.out, HasSubstr("bad magic number"));

  EXPECT_EQ(Gradlab({"submit", "--epochz=3"}).exit_code, 2);
  EXPECT_EQ(Gradlab({"submit", "--epochs=three"}).exit_code, 2);
  EXPECT_EQ(Gradlab({"list", "--model=resnet"}).exit_code, 2);
  EXPECT_EQ(Gradlab({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(Gradlab({"get"}).exit_code, 2);
  EXPECT_EQ(Gradlab({"grads", "x", "--step=1", "--last"}).exit_code, 2);

  CommandResult invalid = Gradlab({"submit", "--model=vgg"});
  EXPECT_EQ(invalid.exit_code, 3);
  EXPECT_EQ(Gradlab({"get", "nosuchid"}).exit_code, 3);
  EXPECT_EQ(Gradlab({"report", "-o", "x.html"}).exit_code, 2);
  EXPECT_EQ(Gradlab({"report", "someid"}).exit_code, 2);
  const std::string report = ::testing::TempDir() + "/cli_e2e_missing_report.html";
  std::filesystem::remove(report);
  EXPECT_EQ(Gradlab({"report", "nosuchid", "-o", report}).exit_code, 3);
  EXPECT_FALSE(std::filesystem::exists(report)) << "a refused report left a file";

  CommandResult unreachable =
      RunCommand({GRADLAB_PATH, "--server=127.0.0.1:1", "--timeout=2", "list"});
  EXPECT_EQ(unreachable.exit_code, 4);
  CommandResult help = RunCommand({GRADLAB_PATH, "submit", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("exit codes:"));
}

TEST_F(CliTest, CompareRunsEachModelAndPrintsTheTable) {
  CommandResult compare =
      Gradlab({"compare", "--models=mlp,simple_cnn", "--dataset=synthetic", "--epochs=1",
               "--max_train_samples=256", "--max_test_samples=64", "--batch_size=32"});
  EXPECT_EQ(compare.exit_code, 0) << compare.out;
  EXPECT_THAT(compare.out, HasSubstr("MODEL"));
  EXPECT_TRUE(RE2::PartialMatch(compare.out, R"(\nmlp\s+\S{8}\s+SUCCEEDED\s+\d+\.\d\d%)"))
      << compare.out;
  EXPECT_TRUE(RE2::PartialMatch(compare.out, R"(\nsimple_cnn\s+\S{8}\s+SUCCEEDED)")) << compare.out;
}

// scripts/demo runs this compare on a larger subset (4,000 training images, 3 epochs);
// here, on a smaller one, the same phenomenon must already show.
TEST_F(CliTest, DemoCompareShowsThePhenomenonOnASmallerSubset) {
  CommandResult compare = Gradlab(
      {"--json", "compare", "--models=simple_cnn,deep_cnn,resnet", "--dataset=fashion_mnist",
       "--epochs=2", "--max_train_samples=2000", "--max_test_samples=2000"},
      absl::Minutes(10));
  EXPECT_EQ(compare.exit_code, 0) << compare.out;
  std::vector<v1::Experiment> experiments = ParseJsonLines<v1::Experiment>(compare.out);
  ASSERT_EQ(experiments.size(), 3u);
  std::map<std::string, v1::Experiment> by_model;
  for (const auto& e : experiments) by_model[e.spec().model()] = e;
  // Measured: simple_cnn 42.2%, deep_cnn 9.9% (loss 2.3029), resnet 48.7%.
  EXPECT_NEAR(by_model["deep_cnn"].best_test_accuracy(), 0.10, 0.01);
  EXPECT_NEAR(by_model["deep_cnn"].last_metrics().test_loss(), std::log(10.0), 0.01);
  EXPECT_GT(by_model["simple_cnn"].best_test_accuracy(), 0.30);
  EXPECT_GT(by_model["resnet"].best_test_accuracy(), 0.35);
}

TEST(CliBinaryTest, DoesNotLinkLibTorch) {
  CommandResult ldd = RunCommand({"/usr/bin/ldd", GRADLAB_PATH});
  ASSERT_EQ(ldd.exit_code, 0);
  EXPECT_THAT(ldd.out, HasSubstr("libgrpc++"));
  EXPECT_THAT(ldd.out, ::testing::Not(HasSubstr("libtorch")));
  EXPECT_THAT(ldd.out, ::testing::Not(HasSubstr("libc10")));
}

}  // namespace
}  // namespace gradlab
