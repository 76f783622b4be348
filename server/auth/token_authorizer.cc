#include "server/auth/token_authorizer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace gradlab {

TokenAuthorizer::Digest TokenAuthorizer::Sha256(absl::string_view text) {
  Digest digest{};
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

absl::StatusOr<TokenAuthorizer> TokenAuthorizer::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("--auth_tokens_file: cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return FromText(text.str(), path);
}

absl::StatusOr<TokenAuthorizer> TokenAuthorizer::FromText(absl::string_view text,
                                                          const std::string& source) {
  TokenAuthorizer authorizer;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("--auth_tokens_file: ", source, " line ", line_number, ": ", what));
    };
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (fields.size() != 2) {
      return error("expected \"TOKEN ROLE\" (ROLE read, write or worker)");
    }
    std::optional<Role> role;
    if (fields[1] == "read") role = Role::kRead;
    if (fields[1] == "write") role = Role::kWrite;
    if (fields[1] == "worker") role = Role::kWorker;
    if (!role.has_value()) {
      return error(absl::StrCat("role \"", fields[1], "\" is not read, write or worker"));
    }
    if (fields[0].size() < kMinTokenLength) {
      return error(absl::StrCat("the token is shorter than ", kMinTokenLength,
                                " characters (e.g. openssl rand -hex 32 makes one)"));
    }
    const Digest digest = Sha256(fields[0]);
    for (const Entry& entry : authorizer.entries_) {
      if (entry.digest == digest) return error("the token is listed twice");
    }
    authorizer.entries_.push_back({digest, *role, line_number});
  }
  if (authorizer.entries_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens_file: ", source, " lists no tokens"));
  }
  return authorizer;
}

absl::StatusOr<int> TokenAuthorizer::AuthorizedLine(absl::string_view authorization,
                                                    Role needed) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "this server needs a token: send \"authorization: Bearer TOKEN\" (gradlab --token or "
        "$GRADLAB_TOKEN)");
  }
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ")) {
    return absl::UnauthenticatedError("the authorization header is not \"Bearer TOKEN\"");
  }
  const Digest digest = Sha256(token);
  // Every entry is compared, whichever matches, so that timing tells nothing.
  const Entry* match = nullptr;
  for (const Entry& entry : entries_) {
    if (CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0) match = &entry;
  }
  if (match == nullptr) return absl::UnauthenticatedError("the token is not known to this server");
  if (needed == Role::kWorker && match->role != Role::kWorker) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the worker service needs a worker token (a line \"TOKEN worker\" in the coordinator's "
        "--auth_tokens_file, given to gradlabd --worker by --coordinator_token_file); this "
        "token's role is ",
        match->role == Role::kRead ? "read" : "write"));
  }
  if (needed != Role::kWorker && match->role == Role::kWorker) {
    return absl::PermissionDeniedError(
        "a worker token may only call the worker service (gradlab.v1.WorkerService); use a read "
        "or write token");
  }
  if (needed == Role::kWrite && match->role != Role::kWrite) {
    return absl::PermissionDeniedError("the token may only read (its role is read, not write)");
  }
  return match->line;
}

}  // namespace gradlab
