// Listening addresses as gradlab's flags take them: "host:port" or "[v6 host]:port".
#ifndef GRADLAB_COMMON_HOST_PORT_H_
#define GRADLAB_COMMON_HOST_PORT_H_

#include <string>

#include "absl/status/statusor.h"

namespace gradlab {

struct HostPort {
  std::string host;  // without brackets
  int port = 0;      // 0-65535; 0 picks a free port
};

// `flag` names the flag in the error, e.g. "--http_listen".
absl::StatusOr<HostPort> ParseHostPort(const std::string& text, const std::string& flag);

// Only this machine can connect: 127.0.0.0/8, ::1 or localhost. 0.0.0.0, :: and every other
// address are reachable from elsewhere.
bool IsLoopbackHost(const std::string& host);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_HOST_PORT_H_
