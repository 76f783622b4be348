#include "client/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/proto_json.h"
#include "web/web_assets.h"

namespace gradlab {
namespace {

std::string EscapeHtml(absl::string_view text) {
  return absl::StrReplaceAll(
      text, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}, {"'", "&#39;"}});
}

// JSON inside <script>: "</" would end the element early; "<\/" means the same in JSON.
std::string ScriptSafe(absl::string_view json) {
  return absl::StrReplaceAll(json, {{"</", "<\\/"}});
}

template <typename Message>
std::string JsonArray(const std::vector<Message>& messages) {
  return absl::StrCat(
      "[",
      absl::StrJoin(messages, ",",
                    [](std::string* out, const Message& m) { absl::StrAppend(out, ToJson(m)); }),
      "]");
}

// "1 sweep and 2 experiments".
std::string Counted(size_t sweeps, size_t experiments) {
  const auto count = [](size_t n, const char* what) {
    return absl::StrCat(n, " ", what, n == 1 ? "" : "s");
  };
  if (sweeps == 0) return count(experiments, "experiment");
  if (experiments == 0) return count(sweeps, "sweep");
  return absl::StrCat(count(sweeps, "sweep"), " and ", count(experiments, "experiment"));
}

}  // namespace

std::string RenderReport(const std::vector<v1::Sweep>& sweeps,
                         const std::vector<ReportExperiment>& experiments, absl::string_view server,
                         absl::Time generated) {
  const std::string time =
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", generated, absl::UTCTimeZone());
  std::vector<std::string> ids;
  for (const v1::Sweep& sweep : sweeps) ids.push_back(sweep.id());
  std::vector<std::string> entries;
  for (const ReportExperiment& entry : experiments) {
    ids.push_back(entry.experiment.id());
    entries.push_back(absl::StrCat("{\"experiment\":", ToJson(entry.experiment),
                                   ",\"metrics\":", JsonArray(entry.metrics),
                                   ",\"gradients\":", JsonArray(entry.gradients), "}"));
  }
  const std::string data = absl::StrCat(
      "{\"generatedTime\":\"",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", generated, absl::UTCTimeZone()),
      "\",\"sweeps\":", JsonArray(sweeps), ",\"experiments\":[", absl::StrJoin(entries, ","), "]}");
  // One pass: what is put in is never searched for markers again.
  return absl::StrReplaceAll(
      WebAssetContent("report.html"),
      {{"{{TITLE}}", EscapeHtml(absl::StrCat("gradlab report: ", absl::StrJoin(ids, ", ")))},
       {"{{SUBTITLE}}", EscapeHtml(absl::StrCat(Counted(sweeps.size(), experiments.size()),
                                                " from ", server, ", ", time))},
       {"{{UPLOT_CSS}}", WebAssetContent("uPlot.min.css")},
       {"{{STYLE_CSS}}", WebAssetContent("style.css")},
       {"{{DATA}}", ScriptSafe(data)},
       {"{{UPLOT_JS}}", WebAssetContent("uPlot.iife.min.js")},
       {"{{CHARTS_JS}}", WebAssetContent("charts.js")},
       {"{{REPORT_JS}}", WebAssetContent("report.js")}});
}

}  // namespace gradlab
