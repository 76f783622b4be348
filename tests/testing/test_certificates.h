// Certificates for TLS tests, made with the openssl command at test time: a CA, a server
// certificate it signs (for 127.0.0.1 and localhost), a client certificate it signs, and a
// second CA with a client certificate of its own, which the first CA does not trust.
#ifndef GRADLAB_TESTS_TESTING_TEST_CERTIFICATES_H_
#define GRADLAB_TESTS_TESTING_TEST_CERTIFICATES_H_

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"

namespace gradlab {

struct TestCertificates {
  std::string ca;  // PEM files, by path
  std::string server_cert, server_key;
  std::string client_cert, client_key;
  std::string other_ca;
  std::string other_client_cert, other_client_key;
};

// Writes them into `dir` (created).
absl::StatusOr<TestCertificates> MakeTestCertificates(const std::filesystem::path& dir);

}  // namespace gradlab

#endif  // GRADLAB_TESTS_TESTING_TEST_CERTIFICATES_H_
