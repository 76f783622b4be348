// Which Host headers the HTTP face answers, against DNS rebinding: a web page the user
// opens can make their browser send requests to 127.0.0.1:8080 under a name its own DNS
// points there, and read the answers unless the server checks that the name is its own
// (as Jupyter and Grafana do).
#ifndef GRADLAB_SERVER_HTTP_HOST_CHECK_H_
#define GRADLAB_SERVER_HTTP_HOST_CHECK_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace gradlab {

class HostCheck {
 public:
  // `listen_host`: --http_listen's host (a wildcard, 0.0.0.0 or ::, names nothing);
  // `port`: the port it listens on; `https`: the port a Host without one means is 443,
  // else 80; `allowed_hosts`: --http_allowed_hosts, names (or addresses) allowed on any
  // port, for a proxy or a service name in front of the server.
  HostCheck(const std::string& listen_host, int port, bool https,
            std::vector<std::string> allowed_hosts);

  // Whether a request with this Host header is answered: the listen host, localhost,
  // 127.0.0.1 or [::1] with the port it listens on, or an allowed host on any port.
  // Names compare without case; an empty or missing Host is not allowed.
  bool Allows(absl::string_view host_header) const;

  // What the refusal says, naming what would have been allowed.
  std::string Refusal(absl::string_view host_header) const;

 private:
  std::vector<std::string> own_names_;  // on `port_` only
  std::vector<std::string> allowed_hosts_;
  int port_;
  int default_port_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_HTTP_HOST_CHECK_H_
