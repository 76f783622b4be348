// A sweep's grid: expansion into runs (cells row-major, runs seed-major) and the checks that
// refuse a sweep whole, naming the axis, the value or the cell.
#include "common/sweep_grid.h"

#include "common/experiment_spec.h"
#include "common/spec_proto.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace gradlab {
namespace {

using ::testing::HasSubstr;

// A SweepSpec from its JSON, as grpcurl and the HTTP API send it.
v1::SweepSpec Sweep(const std::string& json) {
  v1::SweepSpec sweep;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &sweep);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return sweep;
}

absl::Status Refusal(const std::string& json, int64_t max_runs = 1000) {
  absl::StatusOr<SweepGrid> grid = ExpandSweep(Sweep(json), max_runs);
  EXPECT_FALSE(grid.ok()) << json;
  return grid.status();
}

TEST(SweepGridTest, ExpandsTheCrossProductTimesTheSeedsFirstSeedsFirst) {
  absl::StatusOr<SweepGrid> grid = ExpandSweep(Sweep(R"({
    "name": "why deep nets do not learn",
    "base": {"model": "deep_cnn", "dataset": "fashion_mnist", "epochs": 5},
    "axes": [{"field": "batch_norm", "values": [false, true]},
             {"field": "init", "values": ["pytorch_default", "kaiming_normal"]}],
    "seed_count": 3,
    "labels": {"study": "depth"}})"),
                                               1000);
  ASSERT_TRUE(grid.ok()) << grid.status();
  EXPECT_EQ(grid->seeds, (std::vector<uint64_t>{42, 43, 44})) << "the base's seed, then +1, +2";
  ASSERT_EQ(grid->cells.size(), 4u);
  v1::SweepSpec sweep = Sweep(R"({"axes": [{"field": "batch_norm"}, {"field": "init"}]})");
  EXPECT_EQ(SweepCellText(sweep, grid->cells[0]), "batch_norm=false, init=pytorch_default");
  EXPECT_EQ(SweepCellText(sweep, grid->cells[1]), "batch_norm=false, init=kaiming_normal");
  EXPECT_EQ(SweepCellText(sweep, grid->cells[3]), "batch_norm=true, init=kaiming_normal");

  ASSERT_EQ(grid->runs.size(), 12u);
  for (size_t i = 0; i < grid->runs.size(); ++i) {
    const SweepRun& run = grid->runs[i];
    EXPECT_EQ(run.cell, static_cast<int>(i % 4)) << "every cell's first seed before any second";
    EXPECT_EQ(run.seed_index, static_cast<int>(i / 4));
    EXPECT_EQ(run.spec.seed(), grid->seeds[run.seed_index]);
    EXPECT_EQ(run.spec.model(), "deep_cnn");
    EXPECT_EQ(run.spec.epochs(), 5);
    EXPECT_EQ(run.spec.batch_norm(), run.cell >= 2);
    EXPECT_EQ(run.spec.init(), run.cell % 2 == 0 ? "pytorch_default" : "kaiming_normal");
    EXPECT_EQ(run.spec.labels().at("study"), "depth");
    // Every default resolved, so that a run repeats from its record.
    EXPECT_TRUE(run.spec.has_augment());
    EXPECT_EQ(run.spec.batch_size(), 128);
    EXPECT_TRUE(ResolveSpec(SpecFromProto(run.spec)).ok());
  }
}

TEST(SweepGridTest, SeedsAreGivenOrCountedAndNumbersTakeTheirFieldsTypes) {
  absl::StatusOr<SweepGrid> grid = ExpandSweep(Sweep(R"({
    "base": {"model": "resnet", "dataset": "synthetic", "seed": 7},
    "axes": [{"field": "learning_rate", "values": [0.1, 0.01]},
             {"field": "batch_size", "values": [64]},
             {"field": "skip_connections", "values": [true, false]}],
    "seeds": [3, 1]})"),
                                               8);
  ASSERT_TRUE(grid.ok()) << grid.status();
  EXPECT_EQ(grid->seeds, (std::vector<uint64_t>{3, 1}));
  ASSERT_EQ(grid->runs.size(), 8u);
  EXPECT_DOUBLE_EQ(grid->runs[2].spec.learning_rate(), 0.01);
  EXPECT_EQ(grid->runs[2].spec.batch_size(), 64);
  EXPECT_FALSE(grid->runs[1].spec.skip_connections());
  EXPECT_EQ(grid->runs[7].spec.seed(), 1u);

  absl::StatusOr<SweepGrid> alone = ExpandSweep(Sweep(R"({"base": {"dataset": "synthetic"}})"), 1);
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_EQ(alone->runs.size(), 1u) << "no axes, no seeds: the base once, with its seed";
  EXPECT_EQ(alone->runs[0].spec.seed(), 42u);
  EXPECT_EQ(SweepCellText(v1::SweepSpec(), alone->cells[0]), "(no axes)");
}

TEST(SweepGridTest, BadSweepsAreRefusedWholeNamingWhatIsWrong) {
  struct Case {
    std::string json;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"axes": [{"field": "width", "values": [1]}]})",
            "sweep.axes[0] (\"width\"): not an ExperimentSpec field a sweep can vary"},
           {R"({"axes": [{"field": "labels", "values": ["a"]}]})",
            "sweep.axes[0] (\"labels\"): not an ExperimentSpec field"},
           {R"({"axes": [{"field": "seed", "values": [1, 2]}]})",
            "seed cannot be an axis (give sweep.seeds or sweep.seed_count)"},
           {R"({"axes": [{"field": "name", "values": ["a"]}]})", "name cannot be an axis"},
           {R"({"axes": [{"field": "init", "values": ["a"]}, {"field": "init", "values": ["b"]}]})",
            "sweep.axes[1] (\"init\"): the field is already sweep.axes[0] (\"init\")"},
           {R"({"axes": [{"field": "epochs", "values": []}]})", "(\"epochs\"): has no values"},
           {R"({"axes": [{"field": "batch_norm", "values": [1]}]})",
            "(\"batch_norm\"): value \"1\" is a number, not a bool (true or false)"},
           {R"({"axes": [{"field": "epochs", "values": [2.5]}]})",
            "(\"epochs\"): value \"2.5\" is a number, not a whole number in [-2147483648, "
            "2147483647]"},
           {R"({"axes": [{"field": "epochs", "values": ["3"]}]})",
            "value \"3\" is a string, not a whole number"},
           {R"({"axes": [{"field": "learning_rate", "values": [0.1, null]}]})",
            "value \"null\" is null, not a number"},
           {R"({"axes": [{"field": "init", "values": ["kaiming_normal", "kaiming_normal"]}]})",
            "(\"init\"): value \"kaiming_normal\" is given twice"},
           {R"({"axes": [{"field": "learning_rate", "values": [0.1, 0.10]}]})",
            "value \"0.1\" is given twice"},
           {R"({"axes": [{"field": "epochs", "values": [1, 0]}]})",
            "sweep cell epochs=0: spec.epochs: 0 is out of range [1, 1000]"},
           {R"({"axes": [{"field": "init", "values": ["pytorch_default", "xavier"]}]})",
            "sweep cell init=xavier: spec.init"},
           {R"({"seeds": [1, 2, 1]})", "sweep.seeds: 1 is given twice"},
           {R"({"seeds": [1], "seed_count": 2})", "give seeds or seed_count, not both"},
           {R"({"seed_count": 0})", "sweep.seed_count: 0 is out of range [1, 100]"},
           {R"({"seed_count": 101})", "sweep.seed_count: 101 is out of range [1, 100]"},
           {R"({"name": ")" + std::string(201, 'n') + R"("})",
            "sweep.name: at most 200 characters (given: 201)"},
       }) {
    const absl::Status status = Refusal(c.json);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.message)) << c.json;
  }
}

TEST(SweepGridTest, AGridLargerThanTheLimitIsRefusedNamingBothNumbers) {
  const std::string json = R"({"axes": [{"field": "batch_norm", "values": [false, true]},
                                        {"field": "epochs", "values": [1, 2, 3]}],
                               "seed_count": 5})";
  EXPECT_TRUE(ExpandSweep(Sweep(json), 30).ok());
  EXPECT_THAT(std::string(Refusal(json, 29).message()),
              HasSubstr("sweep: 2 x 3 values and 5 seeds make more runs than the 29 this "
                        "server takes in one sweep"));
  // Many large axes neither overflow nor expand before they are refused.
  std::string values;
  for (int i = 1; i <= 1000; ++i) values += (i > 1 ? "," : "") + std::to_string(i);
  std::string huge = R"({"axes": [)";
  for (const char* field : {"epochs", "batch_size", "lr_step_size", "gradient_every_n_steps",
                            "threads", "max_train_samples", "max_test_samples"}) {
    huge += std::string(huge.back() == '[' ? "" : ",") + R"({"field": ")" + field +
            R"(", "values": [)" + values + "]}";
  }
  huge += "]}";
  EXPECT_THAT(std::string(Refusal(huge, 1000).message()),
              HasSubstr("1000 x 1000 x 1000 x 1000 x 1000 x 1000 x 1000 values and 1 seed"));
}

TEST(SweepGridTest, ValuesReadAsPeopleWriteThem) {
  google::protobuf::Value value;
  value.set_number_value(0.001);
  EXPECT_EQ(SweepValueText(value), "0.001");
  value.set_number_value(128);
  EXPECT_EQ(SweepValueText(value), "128");
  value.set_bool_value(true);
  EXPECT_EQ(SweepValueText(value), "true");
  value.set_string_value("kaiming_normal");
  EXPECT_EQ(SweepValueText(value), "kaiming_normal");
}

TEST(ParseSweepAxisTest, ReadsEachValueAsItsFieldsType) {
  absl::StatusOr<v1::SweepAxis> axis = ParseSweepAxis("batch_norm=false,true");
  ASSERT_TRUE(axis.ok()) << axis.status();
  EXPECT_EQ(axis->field(), "batch_norm");
  ASSERT_EQ(axis->values_size(), 2);
  EXPECT_FALSE(axis->values(0).bool_value());
  EXPECT_TRUE(axis->values(1).bool_value());

  axis = ParseSweepAxis("learning_rate=0.01,1e-3");
  ASSERT_TRUE(axis.ok()) << axis.status();
  EXPECT_EQ(axis->values(1).number_value(), 0.001);
  axis = ParseSweepAxis("init=pytorch_default,kaiming_normal");
  ASSERT_TRUE(axis.ok()) << axis.status();
  EXPECT_EQ(axis->values(1).string_value(), "kaiming_normal");
  // What ExpandSweep takes: the grid of these two axes is 4 cells.
  v1::SweepSpec sweep;
  *sweep.add_axes() = *ParseSweepAxis("batch_norm=false,true");
  *sweep.add_axes() = *axis;
  EXPECT_EQ(ExpandSweep(sweep, 100)->cells.size(), 4u);
}

TEST(ParseSweepAxisTest, SaysWhatIsWrong) {
  EXPECT_THAT(ParseSweepAxis("batch_norm").status().message(), HasSubstr("FIELD=VALUE"));
  EXPECT_THAT(ParseSweepAxis("=1").status().message(), HasSubstr("FIELD=VALUE"));
  EXPECT_THAT(ParseSweepAxis("width=1,2").status().message(),
              HasSubstr("\"width\" is not an ExperimentSpec field"));
  EXPECT_THAT(ParseSweepAxis("batch_norm=yes,maybe").status().message(),
              HasSubstr("\"maybe\" is not true or false"));
  EXPECT_THAT(ParseSweepAxis("epochs=1,two").status().message(),
              HasSubstr("\"two\" is not a number"));
}

}  // namespace
}  // namespace gradlab
