// Writes Prometheus's text exposition format (version 0.0.4): families with HELP and
// TYPE, samples with escaped label values. gradlabd needs only this writer: its numbers
// are read off the registry and ServerMetrics at scrape time, and its series are bounded
// by the API (methods it does not serve count as one). Debian's prometheus-cpp 1.0 would
// make every scrape-time value a Collectable and bound nothing by itself, so it is not
// used. `promtool check metrics` checks the output in the tests.
#ifndef GRADLAB_SERVER_METRICS_PROMETHEUS_TEXT_H_
#define GRADLAB_SERVER_METRICS_PROMETHEUS_TEXT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace gradlab {

using PrometheusLabels = std::vector<std::pair<std::string, std::string>>;

class PrometheusText {
 public:
  enum class Type { kCounter, kGauge };

  // Starts a family; its samples follow. Counter names end in "_total" by convention.
  void Family(absl::string_view name, Type type, absl::string_view help);
  // A sample of the current family.
  void Sample(const PrometheusLabels& labels, double value);

  const std::string& text() const { return text_; }

 private:
  std::string family_;
  std::string text_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_METRICS_PROMETHEUS_TEXT_H_
