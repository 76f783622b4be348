// TLS certificates and keys as gradlab reads them from PEM files (gradlabd's --tls_cert,
// --tls_key, --tls_client_ca; the CLI's --tls_ca, --tls_cert, --tls_key): read and checked
// with OpenSSL up front, so that a wrong file is reported by name at start rather than as
// a failed handshake later.
#ifndef GRADLAB_COMMON_TLS_FILES_H_
#define GRADLAB_COMMON_TLS_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace gradlab {

// File names, as given (empty: not given).
struct TlsPaths {
  std::string cert;  // a certificate chain, leaf first
  std::string key;   // the leaf's private key
  std::string ca;    // certificates to verify the peer with
};

// Their contents, in PEM.
struct TlsPem {
  std::string cert_chain;
  std::string private_key;
  std::string ca_certs;
};

// Reads and checks the files that are given: each must be PEM of its kind, the key must
// match the certificate, and cert and key come together. Errors name the flags:
// --tls_cert, --tls_key and `ca_flag` (the server's --tls_client_ca, the CLI's --tls_ca).
absl::StatusOr<TlsPem> ReadTlsFiles(const TlsPaths& paths, const std::string& ca_flag);

}  // namespace gradlab

#endif  // GRADLAB_COMMON_TLS_FILES_H_
