#include "server/http/host_check.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/client_text.h"

namespace gradlab {
namespace {

// "name:port", "[v6]:port", "name" or "[v6]" -> lower-case name (brackets kept for v6) and
// port (0 when none); false when it is none of those.
bool SplitHost(absl::string_view header, std::string& name, int& port) {
  port = 0;
  absl::string_view host = header;
  absl::string_view port_text;
  if (absl::StartsWith(host, "[")) {
    const size_t close = host.find(']');
    if (close == absl::string_view::npos) return false;
    port_text = host.substr(close + 1);
    host = host.substr(0, close + 1);
    if (!port_text.empty() && !absl::ConsumePrefix(&port_text, ":")) return false;
  } else if (const size_t colon = host.rfind(':'); colon != absl::string_view::npos) {
    port_text = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty() || (!port_text.empty() && !absl::SimpleAtoi(port_text, &port))) return false;
  name = absl::AsciiStrToLower(host);
  return true;
}

std::string Bracketed(const std::string& host) {
  return host.find(':') != std::string::npos && !absl::StartsWith(host, "[")
             ? absl::StrCat("[", host, "]")
             : host;
}

}  // namespace

HostCheck::HostCheck(const std::string& listen_host, int port, bool https,
                     std::vector<std::string> allowed_hosts)
    : own_names_({"localhost", "127.0.0.1", "[::1]"}),
      port_(port),
      default_port_(https ? 443 : 80) {
  if (!listen_host.empty() && listen_host != "0.0.0.0" && listen_host != "::") {
    own_names_.push_back(absl::AsciiStrToLower(Bracketed(listen_host)));
  }
  for (std::string& host : allowed_hosts) {
    allowed_hosts_.push_back(absl::AsciiStrToLower(Bracketed(host)));
  }
}

bool HostCheck::Allows(absl::string_view host_header) const {
  std::string name;
  int port = 0;
  if (!SplitHost(host_header, name, port)) return false;
  if (std::find(allowed_hosts_.begin(), allowed_hosts_.end(), name) != allowed_hosts_.end()) {
    return true;
  }
  return (port == 0 ? default_port_ : port) == port_ &&
         std::find(own_names_.begin(), own_names_.end(), name) != own_names_.end();
}

std::string HostCheck::Refusal(absl::string_view host_header) const {
  return absl::StrCat(
      "Host ", QuoteClientText(host_header), " is not this server's: it answers ",
      absl::StrJoin(own_names_, ", "), " on port ", port_,
      allowed_hosts_.empty() ? "" : absl::StrCat(", and ", absl::StrJoin(allowed_hosts_, ", ")),
      " (gradlabd --http_allowed_hosts adds names, e.g. the one a proxy or a service uses)");
}

}  // namespace gradlab
