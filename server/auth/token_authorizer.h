// Bearer tokens with roles, from gradlabd's --auth_tokens_file: one "TOKEN ROLE" per line,
// ROLE `read` (get, list, every stream, the dashboard, /metrics), `write` (also start,
// cancel, delete, export) or `worker` (gradlab.v1.WorkerService only: what `gradlabd
// --worker` processes present, and nothing else); blank lines and lines starting with # are
// skipped. Tokens are compared in constant time (as SHA-256 digests, against every entry)
// and never appear in an error or a log line: a token is named by its line in the file.
// Knows nothing of gRPC or HTTP: both ask it about a header value.
#ifndef GRADLAB_SERVER_AUTH_TOKEN_AUTHORIZER_H_
#define GRADLAB_SERVER_AUTH_TOKEN_AUTHORIZER_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gradlab {

// What a call needs. kRead and kWrite are the API's (a write token may also read); kWorker
// is the worker service's, which only worker tokens may call and which they alone may.
enum class Role { kRead, kWrite, kWorker };

class TokenAuthorizer {
 public:
  // Tokens shorter than this are refused: they could be guessed.
  static constexpr size_t kMinTokenLength = 16;

  // Reads --auth_tokens_file; errors name the file and line.
  static absl::StatusOr<TokenAuthorizer> FromFile(const std::string& path);
  // `text` as that file's contents; `source` names it in errors.
  static absl::StatusOr<TokenAuthorizer> FromText(absl::string_view text,
                                                  const std::string& source);

  // `authorization` is the header's value ("Bearer TOKEN"; empty when absent). OK when the
  // token's role allows `needed`; UNAUTHENTICATED when the token is missing or unknown;
  // PERMISSION_DENIED when a read token asks for write, a worker token for anything but
  // kWorker, or another token for kWorker.
  absl::Status Authorize(absl::string_view authorization, Role needed) const {
    return AuthorizedLine(authorization, needed).status();
  }
  // As Authorize, and on success the line of the file the token is on: who the caller is,
  // for binding what it makes (a worker's name) to the token that made it.
  absl::StatusOr<int> AuthorizedLine(absl::string_view authorization, Role needed) const;

  size_t size() const { return entries_.size(); }

 private:
  using Digest = std::array<uint8_t, 32>;
  struct Entry {
    Digest digest;
    Role role;
    int line = 0;
  };
  static Digest Sha256(absl::string_view text);

  std::vector<Entry> entries_;
};

}  // namespace gradlab

#endif  // GRADLAB_SERVER_AUTH_TOKEN_AUTHORIZER_H_
