#include "tests/testing/test_certificates.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "tests/testing/child_process.h"

namespace gradlab {
namespace {

constexpr char kScript[] = R"(set -e
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1" 2>/dev/null
}
# signed NAME CA [EXTENSIONS]
signed() {
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  printf '%s\n' "${3:-basicConstraints=CA:FALSE}" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
    -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
}
ca ca
ca other_ca
signed server ca "subjectAltName=IP:127.0.0.1,DNS:localhost"
signed client ca
signed other_client other_ca
)";

}  // namespace

absl::StatusOr<TestCertificates> MakeTestCertificates(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const CommandResult made = RunCommand({"/bin/sh", "-c", kScript, "sh", dir.string()});
  if (made.exit_code != 0) {
    return absl::InternalError(absl::StrCat("openssl could not make the test certificates (exit ",
                                            made.exit_code,
                                            "): is the openssl command installed?"));
  }
  auto path = [&](const char* name) { return (dir / name).string(); };
  return TestCertificates{path("ca.pem"),           path("server.pem"),      path("server.key"),
                          path("client.pem"),       path("client.key"),      path("other_ca.pem"),
                          path("other_client.pem"), path("other_client.key")};
}

}  // namespace gradlab
