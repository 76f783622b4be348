#include "client/format.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/byte_size.h"
#include "common/client_text.h"
#include "common/experiment_spec.h"
#include "common/sweep_grid.h"

namespace gradlab {
namespace {

// spec.model for a table: an uploaded model's id (a sha256) cut to its first 12 digits.
std::string ModelLabel(const std::string& model) {
  constexpr size_t kShown = kUploadedModelPrefix.size() + 12;
  if (!IsUploadedModel(model) || model.size() <= kShown) return model;
  return model.substr(0, kShown) + "...";
}

constexpr int kBarWidth = 24;

// ", StepLR(2, 0.5)", ", lr x0.1 at iterations 782, 1173, warm-up 400 steps at 0.01,
// preset he2016", or "".
std::string ScheduleText(const v1::ExperimentSpec& s) {
  std::string text;
  if (s.lr_step_size() > 0) {
    absl::StrAppendFormat(&text, ", StepLR(%d, %g)", s.lr_step_size(), s.lr_gamma());
  }
  if (!s.lr_milestones().empty()) {
    absl::StrAppendFormat(&text, ", lr x%g at %s %s", s.lr_gamma(), s.lr_milestone_unit(),
                          absl::StrJoin(s.lr_milestones(), ", "));
  }
  if (s.warmup_iterations() > 0) {
    absl::StrAppendFormat(&text, ", warm-up %d steps at %g", s.warmup_iterations(),
                          s.warmup_learning_rate());
  }
  if (!s.preset().empty()) absl::StrAppend(&text, ", preset ", s.preset());
  return text;
}

std::string Percent(double fraction) { return absl::StrFormat("%.2f%%", 100 * fraction); }

std::string StateName(v1::ExperimentState state) {
  return state == v1::EXPERIMENT_STATE_UNSPECIFIED ? "-" : v1::ExperimentState_Name(state);
}

std::string TimeText(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(timestamp.seconds()),
                          absl::UTCTimeZone());
}

// Left-aligned columns, two spaces apart, counted in characters ("±" is one); numbers are
// right-aligned by the caller.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) {
      widths[c] = std::max(widths[c], CharacterCount(row[c]));
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      absl::StrAppend(&line, row[c]);
      if (c + 1 < row.size()) line.append(widths[c] - CharacterCount(row[c]) + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

// "71.23 ± 0.45%" (std shown with two runs or more), "-" over no runs.
std::string PercentSpread(const v1::Spread& spread) {
  if (spread.count() == 0) return "-";
  if (spread.count() == 1) return Percent(spread.mean());
  return absl::StrFormat("%.2f ± %.2f%%", 100 * spread.mean(), 100 * spread.std());
}

// "1.2345 ± 0.0123" for a loss.
std::string LossSpread(const v1::Spread& spread) {
  if (spread.count() == 0) return "-";
  if (spread.count() == 1) return absl::StrFormat("%.4f", spread.mean());
  return absl::StrFormat("%.4f ± %.4f", spread.mean(), spread.std());
}

// "3.1e-05 ± 2.0e-06" for a gradient norm, which spans decades.
std::string NormSpread(const v1::Spread& spread) {
  if (spread.count() == 0) return "-";
  if (spread.count() == 1) return absl::StrFormat("%.2g", spread.mean());
  return absl::StrFormat("%.2g ± %.1g", spread.mean(), spread.std());
}

// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
std::string CsvField(absl::string_view text) {
  if (text.find_first_of(",\"\r\n") == absl::string_view::npos) return std::string(text);
  return absl::StrCat("\"", absl::StrReplaceAll(text, {{"\"", "\"\""}}), "\"");
}

// The shortest text that CSV readers parse back to exactly `value`.
std::string CsvNumber(double value) {
  char text[32];
  const std::to_chars_result end = std::to_chars(text, text + sizeof(text), value);
  return std::string(text, end.ptr);
}

}  // namespace

std::string Duration(double seconds) {
  if (seconds < 60) return absl::StrFormat("%.1fs", seconds);
  const int64_t whole = static_cast<int64_t>(std::llround(seconds));
  if (whole < 3600) return absl::StrFormat("%dm%02ds", whole / 60, whole % 60);
  return absl::StrFormat("%dh%02dm%02ds", whole / 3600, whole / 60 % 60, whole % 60);
}

std::string EpochLine(const v1::EpochMetrics& m) {
  return absl::StrFormat("[Epoch %02d] train %.4f/%s | val %.4f/%s (best %s)", m.epoch(),
                         m.train_loss(), Percent(m.train_accuracy()), m.test_loss(),
                         Percent(m.test_accuracy()), Percent(m.best_test_accuracy()));
}

std::string ProgressLine(const v1::BatchProgress& p, int batch_size) {
  const int done = p.batches() > 0 ? kBarWidth * p.batch() / p.batches() : 0;
  std::string eta = "-";
  if (p.images_per_second() > 0) {
    eta = Duration((p.batches() - p.batch()) * static_cast<double>(batch_size) /
                   p.images_per_second());
  }
  return absl::StrFormat("[Epoch %02d] [%s%s] %d/%d loss %.4f acc %s %.0f img/s ETA %s", p.epoch(),
                         std::string(done, '#'), std::string(kBarWidth - done, '-'), p.batch(),
                         p.batches(), p.running_loss(), Percent(p.running_accuracy()),
                         p.images_per_second(), eta);
}

std::string FinalStateLine(const v1::Experiment& e) {
  std::string line = absl::StrCat(StateName(e.state()), " after ", e.last_metrics().epoch(),
                                  e.last_metrics().epoch() == 1 ? " epoch" : " epochs");
  if (e.last_metrics().epoch() > 0) {
    absl::StrAppend(&line, ", best test accuracy ", Percent(e.best_test_accuracy()));
  }
  if (!e.error().empty()) absl::StrAppend(&line, ": ", e.error());
  return line;
}

std::string ExperimentTable(const std::vector<v1::Experiment>& experiments) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "MODEL", "DATASET", "STATE", "EPOCH", "BEST", "CREATED (UTC)"}};
  for (const v1::Experiment& e : experiments) {
    std::string state = StateName(e.state());
    if (e.state() == v1::QUEUED && e.queue_position() > 0) {
      absl::StrAppend(&state, " #", e.queue_position());
    }
    rows.push_back({e.id(), e.name().empty() ? "-" : e.name(), ModelLabel(e.spec().model()),
                    e.spec().dataset(), state,
                    absl::StrCat(e.current_epoch(), "/", e.spec().epochs()),
                    e.last_metrics().epoch() > 0 ? Percent(e.best_test_accuracy()) : "-",
                    TimeText(e.created_time())});
  }
  return Table(rows);
}

std::string ExperimentDetails(const v1::Experiment& e) {
  const v1::ExperimentSpec& s = e.spec();
  std::vector<std::vector<std::string>> rows = {
      {"id:", e.id()},
      {"name:", e.name().empty() ? "-" : e.name()},
      {"state:",
       StateName(e.state()) +
           (e.queue_position() > 0 ? absl::StrCat(" (position ", e.queue_position(), ")") : "")},
      {"model:",
       absl::StrFormat(
           "%s%s (batch_norm %s, skip_connections %s, init %s)", s.model(),
           s.has_depth() ? absl::StrFormat(", depth %d, shortcut %s", s.depth(), s.shortcut()) : "",
           s.batch_norm() ? "on" : "off", s.skip_connections() ? "on" : "off", s.init())},
      {"dataset:",
       absl::StrFormat("%s at %s (augment %s, train %s, test %s)", s.dataset(),
                       !e.dataset_location().empty() ? e.dataset_location()
                       : s.data_dir().empty()        ? "-"
                                                     : s.data_dir(),
                       s.augment() ? "on" : "off",
                       s.max_train_samples() ? absl::StrCat(s.max_train_samples()) : "all",
                       s.max_test_samples() ? absl::StrCat(s.max_test_samples()) : "all")},
      {"training:",
       absl::StrFormat("%d epochs, batch %d, lr %g, momentum %g, weight decay %g%s, seed %d, "
                       "%d threads, %s",
                       s.epochs(), s.batch_size(), s.learning_rate(), s.momentum(),
                       s.weight_decay(), ScheduleText(s), s.seed(), s.threads(), s.precision()) +
           (s.world_size() > 1
                ? absl::StrFormat(", data-parallel over %d processes", s.world_size())
                : "")},
      {"memory:", e.estimated_peak_bytes() > 0
                      ? absl::StrCat("estimated peak ", FormatBytes(e.estimated_peak_bytes()))
                      : "-"},
      {"created:", TimeText(e.created_time())},
      {"started:", TimeText(e.started_time())},
      {"finished:", TimeText(e.finished_time())},
      {"epoch:", absl::StrCat(e.current_epoch(), " of ", s.epochs())},
  };
  if (e.last_metrics().epoch() > 0) rows.push_back({"last epoch:", EpochLine(e.last_metrics())});
  if (e.attempts_since_epoch() > 1) {
    rows.push_back({"attempts:", absl::StrCat(e.attempts_since_epoch(),
                                              " since the last finished epoch (interrupted)")});
  }
  if (!e.error().empty()) rows.push_back({"error:", e.error()});
  for (const auto& [key, value] : s.labels()) rows.push_back({"label:", key + "=" + value});
  return Table(rows);
}

std::string GradientTable(const v1::GradientSnapshot& snapshot) {
  std::map<std::string, double> activation_std;
  for (const v1::LayerActivation& a : snapshot.activations()) activation_std[a.name()] = a.std();
  double low = INFINITY, high = -INFINITY;
  for (const v1::LayerGradient& g : snapshot.layers()) {
    if (g.grad_norm() > 0) {
      low = std::min(low, std::log10(g.grad_norm()));
      high = std::max(high, std::log10(g.grad_norm()));
    }
  }
  // The bar spans at least one decade below the largest norm.
  low = std::min(low, high - 1);
  std::string out = absl::StrFormat("step %d (epoch %d, batch %d)\n", snapshot.step(),
                                    snapshot.epoch(), snapshot.batch());
  std::vector<std::vector<std::string>> rows = {
      {"LAYER", "GRAD NORM", "WEIGHT NORM", "RATIO", "ACT STD",
       absl::StrFormat("LOG10 GRAD NORM [%d .. %d]", static_cast<int>(std::floor(low)),
                       static_cast<int>(std::ceil(high)))}};
  for (const v1::LayerGradient& g : snapshot.layers()) {
    const std::string layer = g.name().substr(0, g.name().rfind('.'));
    const bool is_weight = absl::EndsWith(g.name(), ".weight");
    auto act = activation_std.find(layer);
    int bar = 0;
    if (g.grad_norm() > 0 && std::isfinite(low)) {
      const double span = std::ceil(high) - std::floor(low);
      bar = static_cast<int>(std::lround(kBarWidth * (std::log10(g.grad_norm()) - std::floor(low)) /
                                         std::max(span, 1.0)));
      bar = std::clamp(bar, 1, kBarWidth);
    }
    rows.push_back(
        {g.name(), absl::StrFormat("%.3e", g.grad_norm()), absl::StrFormat("%.3e", g.weight_norm()),
         absl::StrFormat("%.3e", g.ratio()),
         is_weight && act != activation_std.end() ? absl::StrFormat("%.3e", act->second) : "",
         std::string(bar, '#')});
  }
  return out + Table(rows);
}

std::string PredictionsTable(const v1::Predictions& p) {
  const int classes = p.class_names_size();
  if (classes == 0 || p.confusion_size() != classes * classes ||
      p.predicted_counts_size() != classes || p.mean_softmax_size() != classes) {
    return absl::StrFormat("epoch %d: the predictions are malformed (%d classes)\n", p.epoch(),
                           classes);
  }
  const double samples = static_cast<double>(std::max<int64_t>(1, p.samples()));
  int64_t correct = 0;
  int most = 0;
  for (int c = 0; c < classes; ++c) {
    correct += p.confusion(c * classes + c);
    if (p.predicted_counts(c) > p.predicted_counts(most)) most = c;
  }
  std::string out = absl::StrFormat(
      "%s, %d test images: loss %.4f, accuracy %s%s\n",
      p.epoch() == 0 ? std::string("at initialisation (epoch 0)")
                     : absl::StrCat("epoch ", p.epoch()),
      p.samples(), p.test_loss(), Percent(static_cast<double>(correct) / samples),
      p.evaluation_seconds() > 0 ? absl::StrCat(", evaluated in ", Duration(p.evaluation_seconds()))
                                 : "");
  const double top_share = static_cast<double>(p.predicted_counts(most)) / samples;
  if (top_share > 0.9) {
    absl::StrAppendFormat(&out, "predicts one class for %.1f%% of images: %d %s\n", 100 * top_share,
                          most, p.class_names(most));
  }

  out +=
      "\nconfusion matrix: % of each true class's images (rows) predicted as each class "
      "(columns)\n";
  std::vector<std::vector<std::string>> matrix = {{"TRUE \\ PREDICTED"}};
  for (int c = 0; c < classes; ++c) matrix[0].push_back(absl::StrCat(c));
  for (int t = 0; t < classes; ++t) {
    int64_t images = 0;
    for (int c = 0; c < classes; ++c) images += p.confusion(t * classes + c);
    std::vector<std::string> row = {absl::StrCat(t, " ", p.class_names(t))};
    for (int c = 0; c < classes; ++c) {
      const int64_t count = p.confusion(t * classes + c);
      row.push_back(count == 0 ? "."
                               : absl::StrFormat("%.1f", 100.0 * static_cast<double>(count) /
                                                             static_cast<double>(images)));
    }
    matrix.push_back(std::move(row));
  }
  out += Table(matrix);

  out += "\npredicted classes\n";
  std::vector<std::vector<std::string>> histogram = {
      {"CLASS", "PREDICTED", "SHARE", "MEAN SOFTMAX", ""}};
  for (int c = 0; c < classes; ++c) {
    const double share = static_cast<double>(p.predicted_counts(c)) / samples;
    const int bar = static_cast<int>(std::lround(kBarWidth * share));
    histogram.push_back(
        {absl::StrCat(c, " ", p.class_names(c)), absl::StrCat(p.predicted_counts(c)),
         absl::StrFormat("%.1f%%", 100 * share), absl::StrFormat("%.4f", p.mean_softmax(c)),
         std::string(share > 0 ? std::max(bar, 1) : 0, '#')});
  }
  // A class never predicted has no bar: no padding after its last number either.
  for (absl::string_view line : absl::StrSplit(Table(histogram), '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
  }
  return out;
}

double FirstToLastGradRatio(const v1::GradientSnapshot& snapshot) {
  // Conv and linear layers are those whose outputs the snapshot measured; BatchNorm
  // weights are scales, not layers.
  std::set<std::string> layers;
  for (const v1::LayerActivation& a : snapshot.activations()) layers.insert(a.name() + ".weight");
  const v1::LayerGradient* first = nullptr;
  const v1::LayerGradient* last = nullptr;
  for (const v1::LayerGradient& g : snapshot.layers()) {
    if (layers.count(g.name()) == 0) continue;
    if (first == nullptr) first = &g;
    last = &g;
  }
  if (first == nullptr || last->grad_norm() <= 0) return 0;
  return first->grad_norm() / last->grad_norm();
}

std::string ComparisonTable(const std::vector<ComparisonRow>& rows) {
  std::vector<std::vector<std::string>> table = {{"MODEL", "ID", "STATE", "BEST TEST", "FINAL TEST",
                                                  "FINAL TRAIN LOSS", "TIME", "IMAGES/S",
                                                  "GRAD FIRST/LAST @1"}};
  for (const ComparisonRow& r : rows) {
    const bool trained = r.experiment.last_metrics().epoch() > 0;
    auto if_trained = [trained](std::string text) { return trained ? text : "-"; };
    table.push_back(
        {ModelLabel(r.experiment.spec().model()), r.experiment.id(),
         StateName(r.experiment.state()), if_trained(Percent(r.experiment.best_test_accuracy())),
         if_trained(Percent(r.final_test_accuracy)),
         if_trained(absl::StrFormat("%.4f", r.final_train_loss)), if_trained(Duration(r.seconds)),
         if_trained(absl::StrFormat("%.1f", r.images_per_second)),
         r.first_to_last_grad_ratio > 0 ? absl::StrFormat("%.2e", r.first_to_last_grad_ratio)
                                        : "-"});
  }
  return Table(table);
}

std::string SweepTable(const v1::Sweep& sweep) {
  std::string out = absl::StrFormat(
      "sweep %s%s: %s, %d/%d runs done, seeds %s\n", sweep.id(),
      sweep.name().empty() ? "" : absl::StrCat(" (", sweep.name(), ")"), StateName(sweep.state()),
      sweep.runs_done(), sweep.runs_total(), absl::StrJoin(sweep.seeds(), ","));
  std::vector<std::vector<std::string>> rows = {{"CELL", "RUNS", "FINAL TEST ACC", "BEST TEST ACC",
                                                 "FINAL TRAIN LOSS", "STEP-1 GRAD FIRST",
                                                 "STEP-1 GRAD LAST"}};
  for (const v1::SweepCell& cell : sweep.cells()) {
    const int done = cell.runs_succeeded() + cell.runs_failed() + cell.runs_cancelled();
    std::string runs = absl::StrCat(done, "/", cell.experiment_ids_size());
    if (cell.runs_failed() > 0) absl::StrAppend(&runs, " (", cell.runs_failed(), " failed)");
    if (cell.runs_cancelled() > 0) {
      absl::StrAppend(&runs, " (", cell.runs_cancelled(), " cancelled)");
    }
    rows.push_back({cell.description(), runs, PercentSpread(cell.final_test_accuracy()),
                    PercentSpread(cell.best_test_accuracy()), LossSpread(cell.final_train_loss()),
                    NormSpread(cell.first_layer_step1_grad_norm()),
                    NormSpread(cell.last_layer_step1_grad_norm())});
  }
  return out + Table(rows);
}

std::string SweepListTable(const std::vector<v1::Sweep>& sweeps) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "STATE", "RUNS", "CELLS", "SEEDS", "CREATED (UTC)"}};
  for (const v1::Sweep& sweep : sweeps) {
    rows.push_back({sweep.id(), sweep.name().empty() ? "-" : sweep.name(), StateName(sweep.state()),
                    absl::StrCat(sweep.runs_done(), "/", sweep.runs_total()),
                    absl::StrCat(sweep.cells_size()), absl::StrCat(sweep.seeds_size()),
                    TimeText(sweep.created_time())});
  }
  return Table(rows);
}

namespace {

// The columns that say which run a row of an export belongs to: experiment, name, sweep,
// cell, each of the sweep's axes' fields (with `sweep` given), then model, dataset and seed
// unless they are axes.
class RunColumns {
 public:
  explicit RunColumns(const v1::Sweep* sweep) : sweep_(sweep) {
    if (sweep != nullptr) {
      for (const v1::SweepAxis& axis : sweep->spec().axes()) axes_.push_back(axis.field());
      for (const v1::SweepCell& cell : sweep->cells()) {
        for (const std::string& id : cell.experiment_ids()) cell_of_[id] = &cell;
      }
    }
    for (const char* field : {"model", "dataset", "seed"}) {
      if (std::find(axes_.begin(), axes_.end(), field) == axes_.end()) fixed_.push_back(field);
    }
  }

  std::vector<std::string> Header() const {
    std::vector<std::string> header = {"experiment", "name", "sweep", "cell"};
    header.insert(header.end(), axes_.begin(), axes_.end());
    header.insert(header.end(), fixed_.begin(), fixed_.end());
    return header;
  }

  std::vector<std::string> Of(const v1::Experiment& e) const {
    auto cell = cell_of_.find(e.id());
    std::vector<std::string> columns = {
        CsvField(e.id()), CsvField(e.name()), sweep_ != nullptr ? CsvField(sweep_->id()) : "",
        cell != cell_of_.end() ? absl::StrCat(cell->second->index()) : ""};
    for (size_t a = 0; a < axes_.size(); ++a) {
      const bool known =
          cell != cell_of_.end() && static_cast<int>(a) < cell->second->values_size();
      columns.push_back(known ? CsvField(SweepValueText(cell->second->values(static_cast<int>(a))))
                              : "");
    }
    for (const std::string& field : fixed_) {
      columns.push_back(field == "model"     ? CsvField(e.spec().model())
                        : field == "dataset" ? CsvField(e.spec().dataset())
                                             : absl::StrCat(e.spec().seed()));
    }
    return columns;
  }

 private:
  const v1::Sweep* sweep_;
  std::vector<std::string> axes_;
  std::vector<std::string> fixed_;
  // Each run's cell (and its values), by experiment id.
  std::map<std::string, const v1::SweepCell*> cell_of_;
};

std::string CsvLines(const std::vector<std::string>& lines) {
  return absl::StrCat(absl::StrJoin(lines, "\r\n"), "\r\n");
}

}  // namespace

std::string MetricsCsv(const v1::Sweep* sweep, const std::vector<RunEpochs>& runs) {
  const RunColumns run_columns(sweep);
  std::vector<std::string> header = run_columns.Header();
  header.insert(header.end(),
                {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                 "best_test_accuracy", "learning_rate", "epoch_seconds", "images_per_second"});
  std::vector<std::string> lines = {absl::StrJoin(header, ",")};
  for (const RunEpochs& run : runs) {
    const std::vector<std::string> prefix = run_columns.Of(run.experiment);
    for (const v1::EpochMetrics& m : run.epochs) {
      std::vector<std::string> row = prefix;
      row.insert(row.end(),
                 {absl::StrCat(m.epoch()), CsvNumber(m.train_loss()), CsvNumber(m.train_accuracy()),
                  CsvNumber(m.test_loss()), CsvNumber(m.test_accuracy()),
                  CsvNumber(m.best_test_accuracy()), CsvNumber(m.learning_rate()),
                  CsvNumber(m.epoch_seconds()), CsvNumber(m.images_per_second())});
      lines.push_back(absl::StrJoin(row, ","));
    }
  }
  return CsvLines(lines);
}

std::string PredictionsCsv(const v1::Sweep* sweep, const std::vector<RunEpochs>& runs) {
  const RunColumns run_columns(sweep);
  std::vector<std::string> header = run_columns.Header();
  header.insert(header.end(), {"epoch", "true_class", "true_label", "predicted_class",
                               "predicted_label", "count", "mean_softmax"});
  std::vector<std::string> lines = {absl::StrJoin(header, ",")};
  for (const RunEpochs& run : runs) {
    const std::vector<std::string> prefix = run_columns.Of(run.experiment);
    for (const v1::Predictions& p : run.predictions) {
      const int classes = p.class_names_size();
      if (p.confusion_size() != classes * classes ||
          p.mean_softmax_by_class_size() != classes * classes) {
        continue;  // Not written by a server of this version; nothing sensible to export.
      }
      for (int t = 0; t < classes; ++t) {
        for (int c = 0; c < classes; ++c) {
          std::vector<std::string> row = prefix;
          row.insert(row.end(),
                     {absl::StrCat(p.epoch()), absl::StrCat(t), CsvField(p.class_names(t)),
                      absl::StrCat(c), CsvField(p.class_names(c)),
                      absl::StrCat(p.confusion(t * classes + c)),
                      CsvNumber(p.mean_softmax_by_class(t * classes + c))});
          lines.push_back(absl::StrJoin(row, ","));
        }
      }
    }
  }
  return CsvLines(lines);
}

std::string ModelText(const v1::ModelArtifact& model) {
  std::string out = absl::StrFormat("model %s (%s): %s, %d parameters in %d tensors\n",
                                    model.name(), model.id(), FormatBytes(model.size_bytes()),
                                    model.parameter_count(), model.parameters_size());
  for (const v1::DatasetFit& fit : model.datasets()) {
    absl::StrAppend(&out, "  ", fit.fits() ? "trains on " : "not on ", fit.dataset(),
                    fit.fits() ? "" : absl::StrCat(": ", fit.reason()), "\n");
  }
  return out;
}

std::string ModelListTable(const std::vector<v1::ModelArtifact>& models) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "SIZE", "PARAMETERS", "DATASETS", "UPLOADED (UTC)"}};
  for (const v1::ModelArtifact& model : models) {
    std::vector<std::string> fits;
    for (const v1::DatasetFit& fit : model.datasets()) {
      if (fit.fits()) fits.push_back(fit.dataset());
    }
    rows.push_back({model.id().substr(0, 12), model.name(), FormatBytes(model.size_bytes()),
                    absl::StrCat(model.parameter_count()),
                    fits.empty() ? "none" : absl::StrJoin(fits, ","),
                    TimeText(model.created_time())});
  }
  return Table(rows);
}

std::string ServerInfoText(const v1::ServerInfo& info) {
  std::string out = absl::StrFormat(
      "gradlabd %s: %d training%s at once, %d thread%s per job, queue %d of %d, %s per run\n\n",
      info.version(), info.workers(), info.workers() == 1 ? "" : "s", info.threads_per_job(),
      info.threads_per_job() == 1 ? "" : "s", info.queue_length(), info.queue_capacity(),
      info.max_run_memory_bytes() > 0
          ? absl::StrCat("memory ", FormatBytes(info.max_run_memory_bytes()))
          : std::string("no memory limit"));
  std::vector<std::vector<std::string>> models = {{"MODEL", "PARAMETERS", "INPUT", "DEFAULTS"}};
  for (const v1::ModelInfo& m : info.models()) {
    const v1::ExperimentSpec& s = m.default_spec();
    models.push_back({m.name(), absl::StrCat(m.parameter_count()), m.input_shape(),
                      absl::StrFormat("batch_norm %s, %d epochs, batch %d, lr %g, momentum %g",
                                      s.batch_norm() ? "on" : "off", s.epochs(), s.batch_size(),
                                      s.learning_rate(), s.momentum())});
  }
  std::vector<std::vector<std::string>> datasets = {{"DATASET", "PRESENT", "WHERE"}};
  for (const v1::DatasetInfo& d : info.datasets()) {
    datasets.push_back({d.name(), d.present() ? "yes" : "no", d.location()});
  }
  out += Table(models) + "\n" + Table(datasets);
  if (info.registered_workers().empty()) {
    return out +
           "\nno workers registered (gradlabd --worker --coordinator=...), so world_size 1 only\n";
  }
  std::vector<std::vector<std::string>> workers = {
      {"WORKER", "NAME", "ADDRESS", "CPUS", "THREADS", "TRAINING"}};
  for (const v1::WorkerInfo& w : info.registered_workers()) {
    workers.push_back(
        {w.id(), w.name(), w.address(), absl::StrCat(w.cpus()), absl::StrCat(w.threads_per_job()),
         w.experiment_id().empty() ? "idle" : absl::StrCat(w.experiment_id(), " rank ", w.rank())});
  }
  return out + "\n" + Table(workers);
}

}  // namespace gradlab
