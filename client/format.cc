#include "client/format.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/byte_size.h"

namespace gradlab {
namespace {

constexpr int kBarWidth = 24;

std::string Percent(double fraction) { return absl::StrFormat("%.2f%%", 100 * fraction); }

std::string StateName(v1::ExperimentState state) {
  return state == v1::EXPERIMENT_STATE_UNSPECIFIED ? "-" : v1::ExperimentState_Name(state);
}

std::string TimeText(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(timestamp.seconds()),
                          absl::UTCTimeZone());
}

// Left-aligned columns, two spaces apart; numbers are right-aligned by the caller.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      absl::StrAppend(&line, row[c]);
      if (c + 1 < row.size()) line.append(widths[c] - row[c].size() + 2, ' ');
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
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
    rows.push_back({e.id(), e.name().empty() ? "-" : e.name(), e.spec().model(), e.spec().dataset(),
                    state, absl::StrCat(e.current_epoch(), "/", e.spec().epochs()),
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
      {"model:", absl::StrFormat("%s (batch_norm %s, skip_connections %s, init %s)", s.model(),
                                 s.batch_norm() ? "on" : "off", s.skip_connections() ? "on" : "off",
                                 s.init())},
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
                       s.weight_decay(),
                       s.lr_step_size() > 0
                           ? absl::StrFormat(", StepLR(%d, %g)", s.lr_step_size(), s.lr_gamma())
                           : "",
                       s.seed(), s.threads(), s.precision()) +
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
        {r.experiment.spec().model(), r.experiment.id(), StateName(r.experiment.state()),
         if_trained(Percent(r.experiment.best_test_accuracy())),
         if_trained(Percent(r.final_test_accuracy)),
         if_trained(absl::StrFormat("%.4f", r.final_train_loss)), if_trained(Duration(r.seconds)),
         if_trained(absl::StrFormat("%.1f", r.images_per_second)),
         r.first_to_last_grad_ratio > 0 ? absl::StrFormat("%.2e", r.first_to_last_grad_ratio)
                                        : "-"});
  }
  return Table(table);
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
