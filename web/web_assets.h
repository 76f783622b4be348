// The dashboard's files (web/src and uPlot), compiled in: gradlabd serves them and
// `gradlab report` inlines them, with nothing read from disk or the network at run time.
#ifndef GRADLAB_WEB_WEB_ASSETS_H_
#define GRADLAB_WEB_WEB_ASSETS_H_

#include "absl/strings/string_view.h"

namespace gradlab {

struct WebAsset {
  absl::string_view name;          // e.g. "dashboard.js"
  absl::string_view content_type;  // e.g. "text/javascript; charset=utf-8"
  absl::string_view content;
};

// The asset called `name`, or nullptr when there is none.
const WebAsset* FindWebAsset(absl::string_view name);

// The asset called `name`; it must exist (the names are fixed at build time).
absl::string_view WebAssetContent(absl::string_view name);

}  // namespace gradlab

#endif  // GRADLAB_WEB_WEB_ASSETS_H_
