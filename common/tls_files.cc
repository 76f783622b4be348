#include "common/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace gradlab {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate in `pem`, or null.
std::unique_ptr<X509, X509Deleter> FirstCertificate(const std::string& pem) {
  Bio bio = MemoryBio(pem);
  return std::unique_ptr<X509, X509Deleter>(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

absl::Status NotPem(const std::string& flag, const std::string& path, const char* what) {
  ERR_clear_error();
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": ", path, " is not a PEM ", what, " (\"-----BEGIN ...\" text)"));
}

}  // namespace

absl::StatusOr<TlsPem> ReadTlsFiles(const TlsPaths& paths, const std::string& ca_flag) {
  if (paths.cert.empty() != paths.key.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key come together: give both or neither");
  }
  TlsPem pem;
  if (!paths.cert.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(paths.cert, "--tls_cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile(paths.key, "--tls_key");
    if (!key.ok()) return key.status();
    auto leaf = FirstCertificate(*cert);
    if (leaf == nullptr) return NotPem("--tls_cert", paths.cert, "certificate");
    Bio key_bio = MemoryBio(*key);
    std::unique_ptr<EVP_PKEY, KeyDeleter> private_key(
        PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    if (private_key == nullptr) return NotPem("--tls_key", paths.key, "private key");
    if (X509_check_private_key(leaf.get(), private_key.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_key: ", paths.key, " is not the private key of --tls_cert ", paths.cert));
    }
    pem.cert_chain = *std::move(cert);
    pem.private_key = *std::move(key);
  }
  if (!paths.ca.empty()) {
    absl::StatusOr<std::string> ca = ReadFile(paths.ca, ca_flag);
    if (!ca.ok()) return ca.status();
    if (FirstCertificate(*ca) == nullptr) return NotPem(ca_flag, paths.ca, "certificate");
    pem.ca_certs = *std::move(ca);
  }
  return pem;
}

}  // namespace gradlab
