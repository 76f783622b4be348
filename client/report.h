// `gradlab report`: sweeps and experiments as one self-contained HTML page, for sharing a
// result.
// The page is web/src/report.html with uPlot, the dashboard's chart code and the data
// inline: it opens from a file, offline, and shows the same curves and gradient flow as
// the dashboard.
#ifndef GRADLAB_CLIENT_REPORT_H_
#define GRADLAB_CLIENT_REPORT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gradlab/v1/experiment_service.pb.h"

namespace gradlab {

struct ReportExperiment {
  v1::Experiment experiment;
  std::vector<v1::MetricsEvent> metrics;        // in sequence order
  std::vector<v1::GradientSnapshot> gradients;  // in step order
};

// Each sweep (its grid, bands and step-1 gradient flow, as the dashboard's sweep page),
// then the experiments. `server` and `generated` are shown in the page's header.
std::string RenderReport(const std::vector<v1::Sweep>& sweeps,
                         const std::vector<ReportExperiment>& experiments, absl::string_view server,
                         absl::Time generated);

}  // namespace gradlab

#endif  // GRADLAB_CLIENT_REPORT_H_
