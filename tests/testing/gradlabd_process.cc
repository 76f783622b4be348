#include "tests/testing/gradlabd_process.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace gradlab {

absl::StatusOr<GradlabdProcess> StartGradlabd(const std::string& binary,
                                              const std::vector<std::string>& flags,
                                              const std::vector<std::string>& env,
                                              int64_t address_space_limit) {
  std::vector<std::string> argv;
  std::vector<std::string> environment = env;
#if defined(__SANITIZE_ADDRESS__)
  // ASan reserves terabytes of address space for its shadow memory, so an address-space
  // limit would stop it starting; its own resident-memory limit bounds the process instead.
  if (address_space_limit > 0) {
    const char* inherited = std::getenv("ASAN_OPTIONS");
    environment.push_back(absl::StrCat("ASAN_OPTIONS=", inherited == nullptr ? "" : inherited,
                                       ":hard_rss_limit_mb=", address_space_limit >> 20));
  }
#else
  if (address_space_limit > 0) {
    argv = {"/usr/bin/prlimit", absl::StrCat("--as=", address_space_limit)};
  }
#endif
  for (const std::string& arg :
       {binary, std::string("--listen=127.0.0.1:0"), std::string("--http_listen=127.0.0.1:0")}) {
    argv.push_back(arg);
  }
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<ChildProcess> process = ChildProcess::Start(argv, environment);
  if (!process.ok()) return process.status();
  absl::StatusOr<std::string> grpc_line =
      process->ReadLineContaining("listening on port", absl::Seconds(60));
  if (!grpc_line.ok()) return grpc_line.status();
  absl::StatusOr<std::string> http_line =
      process->ReadLineContaining("dashboard on http port", absl::Seconds(10));
  if (!http_line.ok()) return http_line.status();
  GradlabdProcess started{*std::move(process),
                          "127.0.0.1:" + grpc_line->substr(grpc_line->rfind(' ') + 1), 0};
  if (!absl::SimpleAtoi(http_line->substr(http_line->rfind(' ') + 1), &started.http_port)) {
    return absl::InternalError(absl::StrCat("no port in \"", *http_line, "\""));
  }
  return started;
}

}  // namespace gradlab
