// The real gradlabd for end-to-end tests: started on free gRPC and HTTP ports, which it
// prints, with the flags a test adds.
#ifndef GRADLAB_TESTS_TESTING_GRADLABD_PROCESS_H_
#define GRADLAB_TESTS_TESTING_GRADLABD_PROCESS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/testing/child_process.h"

namespace gradlab {

struct GradlabdProcess {
  ChildProcess process;
  std::string grpc_address;  // "127.0.0.1:PORT"
  int http_port = 0;
};

// `binary` with --listen=127.0.0.1:0 --http_listen=127.0.0.1:0 and then `flags` (later
// flags win), once it has printed both ports; `env` adds to its environment. A non-zero
// `address_space_limit` runs it under `prlimit --as` with that many bytes, so that a test
// of something that could allocate without bound fails instead of exhausting the machine.
absl::StatusOr<GradlabdProcess> StartGradlabd(const std::string& binary,
                                              const std::vector<std::string>& flags,
                                              const std::vector<std::string>& env = {},
                                              int64_t address_space_limit = 0);

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_GRADLABD_PROCESS_H_
