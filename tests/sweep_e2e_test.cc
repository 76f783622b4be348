// Sweeps end to end: the real gradlab CLI against the real gradlabd, over real SQLite
// state. A sweep run whole, the same sweep killed with SIGKILL halfway and restarted, which
// must end with the same aggregate, and the CLI's refusals.
#include <google/protobuf/util/json_util.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gradlab/v1/experiment_service.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// batch_norm {false, true} x 2 seeds of a quick synthetic mlp: 4 runs of a second or so.
const std::vector<std::string> kSweep = {
    "sweep",           "--vary=batch_norm=false,true", "--seeds=2",
    "--model=mlp",     "--dataset=synthetic",          "--epochs=4",
    "--batch_size=64", "--max_train_samples=2048",     "--max_test_samples=256",
    "--name=bn study"};

class SweepE2eTest : public ::testing::Test {
 protected:
  void SetUp() override { root_ = FreshTestDir("gradlab_sweep_e2e"); }

  void StartServer(const std::string& state) {
    absl::StatusOr<GradlabdProcess> server = StartGradlabd(
        GRADLABD_PATH, {"--threads_per_job=1", "--state_dir=" + (root_ / state).string()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::make_unique<GradlabdProcess>(*std::move(server));
  }

  CommandResult Gradlab(std::vector<std::string> args) {
    args.insert(args.begin(), {GRADLAB_PATH, "--server=" + server_->grpc_address, "--timeout=120"});
    return RunCommand(args, {}, absl::Seconds(600));
  }
  // With what it says on stderr in `out` too.
  CommandResult GradlabSaying(std::vector<std::string> args) {
    args.insert(args.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", GRADLAB_PATH,
                               "--server=" + server_->grpc_address});
    return RunCommand(args, {}, absl::Seconds(120));
  }

  v1::Sweep GetSweep(const std::string& id) {
    CommandResult result = Gradlab({"--json", "sweep-get", id});
    EXPECT_EQ(result.exit_code, 0) << result.out;
    v1::Sweep sweep;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(result.out, &sweep).ok()) << result.out;
    return sweep;
  }

  v1::Sweep WaitFor(const std::string& id, const std::function<bool(const v1::Sweep&)>& done) {
    const absl::Time deadline = absl::Now() + absl::Minutes(10);
    v1::Sweep sweep;
    while (absl::Now() < deadline) {
      sweep = GetSweep(id);
      if (done(sweep)) return sweep;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "sweep " << id << " did not get there: " << sweep.DebugString();
    return sweep;
  }

  fs::path root_;
  std::unique_ptr<GradlabdProcess> server_;
};

// The cells' aggregates without their runs' ids, which differ from server to server.
std::vector<std::string> Aggregates(const v1::Sweep& sweep) {
  std::vector<std::string> cells;
  for (v1::SweepCell cell : sweep.cells()) {
    cell.clear_experiment_ids();
    cells.push_back(cell.DebugString());
  }
  return cells;
}

TEST_F(SweepE2eTest, ASweepKilledHalfwayEndsWithTheAggregateOfAnUninterruptedOne) {
  StartServer("whole");
  CommandResult whole = Gradlab(kSweep);
  ASSERT_EQ(whole.exit_code, 0) << whole.out;
  // Live progress, then the table of mean +- std over the seeds.
  EXPECT_THAT(whole.out, HasSubstr("2 cells x 2 seeds, 4 runs queued"));
  EXPECT_THAT(whole.out, HasSubstr("[4/4 done] batch_norm="));
  EXPECT_THAT(whole.out, HasSubstr("[Epoch 04]"));
  EXPECT_THAT(whole.out, HasSubstr("SUCCEEDED, 4/4 runs done, seeds 42,43"));
  EXPECT_THAT(whole.out, HasSubstr("FINAL TEST ACC"));
  EXPECT_THAT(whole.out, HasSubstr("batch_norm=true   2/2"));
  EXPECT_THAT(whole.out, HasSubstr(" ± "));
  CommandResult listed = Gradlab({"--json", "sweeps"});
  ASSERT_EQ(listed.exit_code, 0);
  v1::Sweep summary;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  std::string(absl::StripAsciiWhitespace(listed.out)), &summary)
                  .ok())
      << listed.out;
  const v1::Sweep uninterrupted = GetSweep(summary.id());
  ASSERT_EQ(uninterrupted.state(), v1::SUCCEEDED);
  // The HTTP JSON API serves the same sweep.
  httplib::Client http("127.0.0.1", server_->http_port);
  httplib::Result page = http.Get("/api/v1/sweeps/" + summary.id());
  ASSERT_TRUE(page) << httplib::to_string(page.error());
  EXPECT_EQ(page->status, 200);
  v1::Sweep over_http;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(page->body, &over_http).ok())
      << page->body;
  EXPECT_EQ(over_http.SerializeAsString(), uninterrupted.SerializeAsString());
  // Its events stream (what StreamSweep sends): the finished sweep, its sequence as the
  // event's id, then the end.
  httplib::Result events = http.Get("/api/v1/sweeps/" + summary.id() + "/events");
  ASSERT_TRUE(events) << httplib::to_string(events.error());
  EXPECT_EQ(events->status, 200);
  const std::string frame_start =
      absl::StrCat("id: ", uninterrupted.sequence(), "\nevent: sweep\ndata: ");
  const size_t data = events->body.find(frame_start);
  ASSERT_NE(data, std::string::npos) << events->body.substr(0, 300);
  const size_t data_end = events->body.find('\n', data + frame_start.size());
  v1::Sweep streamed;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(
          events->body.substr(data + frame_start.size(), data_end - data - frame_start.size()),
          &streamed)
          .ok());
  EXPECT_EQ(streamed.SerializeAsString(), uninterrupted.SerializeAsString());
  EXPECT_THAT(events->body, HasSubstr("event: end\ndata: {\"code\":\"OK\""));
  httplib::Result metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("gradlab_sweeps{state=\"SUCCEEDED\"} 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("gradlab_sweeps{state=\"RUNNING\"} 0\n"));
  // Tidy CSV, as Python's csv module reads it: one row per run and epoch, whose numbers
  // give the server's aggregate again.
  const std::string csv = (root_ / "sweep.csv").string();
  ASSERT_EQ(Gradlab({"export-metrics", summary.id(), "-o", csv}).exit_code, 0);
  CommandResult read = RunCommand({"/usr/bin/python3", "-c", R"(
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
print(len(rows), sorted(rows[0].keys()) == sorted(
    ["experiment", "name", "sweep", "cell", "batch_norm", "model", "dataset", "seed", "epoch",
     "train_loss", "train_accuracy", "test_loss", "test_accuracy", "best_test_accuracy",
     "learning_rate", "epoch_seconds", "images_per_second"]))
print(sorted({(r["batch_norm"], r["seed"]) for r in rows}))
last = [float(r["test_accuracy"]) for r in rows if r["batch_norm"] == "true" and r["epoch"] == "4"]
print(repr(statistics.mean(last)))
)",
                                   csv});
  ASSERT_EQ(read.exit_code, 0) << read.out;
  std::vector<std::string> lines = absl::StrSplit(read.out, '\n');
  ASSERT_GE(lines.size(), 3u) << read.out;
  EXPECT_EQ(lines[0], "16 True");
  EXPECT_EQ(lines[1], "[('false', '42'), ('false', '43'), ('true', '42'), ('true', '43')]");
  EXPECT_DOUBLE_EQ(std::stod(lines[2]), uninterrupted.cells(1).final_test_accuracy().mean());
  // What each cell's runs predicted at initialisation and after the last epoch, as shares
  // of the test images; the predictions' CSV gives the same shares again.
  for (const v1::SweepCell& cell : uninterrupted.cells()) {
    EXPECT_EQ(cell.initial_predicted_classes().epoch(), 0);
    EXPECT_EQ(cell.final_predicted_classes().epoch(), 4);
    ASSERT_EQ(cell.final_predicted_classes().share_size(), 10);
    double shares = 0;
    for (const v1::Spread& share : cell.final_predicted_classes().share()) {
      EXPECT_EQ(share.count(), 2);
      shares += share.mean();
    }
    EXPECT_NEAR(shares, 1.0, 1e-12);
    EXPECT_EQ(cell.initial_predicted_classes().top_share().count(), 2);
  }
  const std::string predictions_csv = (root_ / "sweep_predictions.csv").string();
  ASSERT_EQ(Gradlab({"export-metrics", summary.id(), "--table=predictions", "-o", predictions_csv})
                .exit_code,
            0);
  CommandResult shares = RunCommand({"/usr/bin/python3", "-c", R"(
import collections, csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
print(len(rows))
# Cell 1's runs at epoch 4: each run's share of images predicted as class 3, averaged.
by_run = collections.defaultdict(lambda: [0, 0])
for r in rows:
    if r["cell"] == "1" and r["epoch"] == "4":
        by_run[r["experiment"]][0] += int(r["count"]) if r["predicted_class"] == "3" else 0
        by_run[r["experiment"]][1] += int(r["count"])
print(repr(statistics.mean(a / n for a, n in by_run.values())))
)",
                                     predictions_csv});
  ASSERT_EQ(shares.exit_code, 0) << shares.out;
  std::vector<std::string> share_lines = absl::StrSplit(shares.out, '\n');
  ASSERT_GE(share_lines.size(), 2u) << shares.out;
  EXPECT_EQ(share_lines[0], "2000");  // 4 runs x epochs 0 to 4 x 10 x 10 classes
  EXPECT_NEAR(std::stod(share_lines[1]),
              uninterrupted.cells(1).final_predicted_classes().share(3).mean(), 1e-15);

  server_->process.Signal(SIGTERM);
  EXPECT_EQ(server_->process.Wait(absl::Seconds(30)), 0);

  StartServer("killed");
  std::vector<std::string> detached = kSweep;
  detached.push_back("--nofollow");
  CommandResult started = Gradlab(detached);
  ASSERT_EQ(started.exit_code, 0) << started.out;
  const std::string id(absl::StripAsciiWhitespace(started.out));
  const v1::Sweep halfway = WaitFor(id, [](const v1::Sweep& s) { return s.runs_done() >= 1; });
  server_->process.Signal(SIGKILL);
  EXPECT_EQ(server_->process.Wait(absl::Seconds(30)), 128 + SIGKILL);
  ASSERT_LT(halfway.runs_done(), 4) << "the sweep finished before it could be killed";

  StartServer("killed");
  const v1::Sweep resumed =
      WaitFor(id, [](const v1::Sweep& s) { return s.state() == v1::SUCCEEDED; });
  EXPECT_EQ(resumed.name(), "bn study");
  EXPECT_EQ(Aggregates(resumed), Aggregates(uninterrupted));

  // Deleting the sweep deletes its runs.
  EXPECT_EQ(Gradlab({"sweep-delete", id}).exit_code, 0);
  EXPECT_EQ(Gradlab({"sweep-get", id}).exit_code, 3);
  CommandResult experiments = Gradlab({"--json", "list"});
  EXPECT_EQ(experiments.exit_code, 0);
  EXPECT_EQ(experiments.out, "");
}

TEST_F(SweepE2eTest, BadSweepsAreRefusedWithWhatIsWrong) {
  StartServer("state");
  CommandResult result = GradlabSaying({"sweep", "--vary=batch_norm=maybe", "--model=mlp"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.out, HasSubstr("\"maybe\" is not true or false"));
  result = GradlabSaying({"sweep", "--model=mlp"});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.out, HasSubstr("at least one --vary"));
  // Refused by the server, naming the cell: nothing is queued.
  result =
      GradlabSaying({"sweep", "--vary=learning_rate=0.1,50", "--model=mlp", "--dataset=synthetic"});
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_THAT(result.out, HasSubstr("learning_rate=50"));
  result = GradlabSaying({"sweep", "--vary=epochs=1,2,3,4,5,6,7,8,9,10,11", "--seeds=10",
                          "--model=mlp", "--dataset=synthetic"});
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_THAT(result.out, HasSubstr("--max_sweep_runs"));
  EXPECT_EQ(Gradlab({"--json", "list"}).out, "");
  EXPECT_EQ(Gradlab({"sweep-cancel", "nosuchid"}).exit_code, 3);
}

// He et al.'s CIFAR ResNets through the server: a sweep over depth and skip connections
// (the degradation study's grid, tiny), each run building the net of its cell.
TEST_F(SweepE2eTest, ASweepOfCifarResNetDepthsAndTheirPlainTwins) {
  StartServer("state");
  CommandResult result = Gradlab({"--json", "sweep", "--model=cifar_resnet", "--vary=depth=8,14",
                                  "--vary=skip_connections=false,true", "--dataset=synthetic",
                                  "--epochs=1", "--batch_size=32", "--max_train_samples=64",
                                  "--max_test_samples=32", "--name=depths"});
  ASSERT_EQ(result.exit_code, 0) << result.out;
  v1::Sweep sweep;  // --json: the finished sweep, one line
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  std::string(absl::StripAsciiWhitespace(result.out)), &sweep)
                  .ok())
      << result.out;
  EXPECT_EQ(sweep.state(), v1::SUCCEEDED);
  ASSERT_EQ(sweep.cells_size(), 4);
  EXPECT_EQ(sweep.cells(3).description(), "depth=14, skip_connections=true");
  for (const v1::SweepCell& cell : sweep.cells()) {
    const int depth = static_cast<int>(cell.values(0).number_value());
    CommandResult got = Gradlab({"--json", "get", cell.experiment_ids(0)});
    ASSERT_EQ(got.exit_code, 0);
    v1::Experiment run;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(got.out, &run).ok()) << got.out;
    EXPECT_EQ(run.spec().depth(), depth);
    EXPECT_EQ(run.spec().shortcut(), "zero_pad");
    // Every conv and the linear layer has a step-1 gradient: 6n+2 layer weights.
    int layer_weights = 0;
    for (const v1::SweepLayerGradient& layer : cell.step1_gradients()) {
      layer_weights += layer.layer_weight();
    }
    EXPECT_EQ(layer_weights, depth) << cell.description();
  }
  // The server describes the model at its default depth, with the paper's count.
  CommandResult info = Gradlab({"--json", "info"});
  ASSERT_EQ(info.exit_code, 0);
  v1::ServerInfo server_info;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(info.out, &server_info).ok());
  bool listed = false;
  for (const v1::ModelInfo& model : server_info.models()) {
    if (model.name() != "cifar_resnet") continue;
    listed = true;
    EXPECT_EQ(model.parameter_count(), 269'722);
    EXPECT_EQ(model.default_spec().depth(), 20);
  }
  EXPECT_TRUE(listed);
}

}  // namespace
}  // namespace gradlab
