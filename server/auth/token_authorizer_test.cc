#include "server/auth/token_authorizer.h"

#include "gtest/gtest.h"

namespace gradlab {
namespace {

constexpr char kFile[] = R"(# gradlab tokens
reader-0123456789abcdef read

writer-0123456789abcdef   write
worker-0123456789abcdef worker
)";

TEST(TokenAuthorizerTest, RolesDecideWhatATokenMayDo) {
  absl::StatusOr<TokenAuthorizer> tokens = TokenAuthorizer::FromText(kFile, "tokens.txt");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 3u);
  EXPECT_TRUE(tokens->Authorize("Bearer reader-0123456789abcdef", Role::kRead).ok());
  EXPECT_EQ(tokens->Authorize("Bearer reader-0123456789abcdef", Role::kWrite).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(tokens->Authorize("Bearer writer-0123456789abcdef", Role::kRead).ok());
  EXPECT_TRUE(tokens->Authorize("Bearer writer-0123456789abcdef", Role::kWrite).ok());
}

TEST(TokenAuthorizerTest, OnlyWorkerTokensCallTheWorkerServiceAndThatIsAllTheyCall) {
  absl::StatusOr<TokenAuthorizer> tokens = TokenAuthorizer::FromText(kFile, "tokens.txt");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  absl::StatusOr<int> worker =
      tokens->AuthorizedLine("Bearer worker-0123456789abcdef", Role::kWorker);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_EQ(*worker, 5) << "a token is known by its line in the file";
  for (Role api : {Role::kRead, Role::kWrite}) {
    absl::Status status = tokens->Authorize("Bearer worker-0123456789abcdef", api);
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_NE(status.message().find("a worker token may only call the worker service"),
              absl::string_view::npos)
        << status;
  }
  for (const char* other : {"Bearer writer-0123456789abcdef", "Bearer reader-0123456789abcdef"}) {
    absl::Status status = tokens->Authorize(other, Role::kWorker);
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << other;
    EXPECT_NE(status.message().find("needs a worker token"), absl::string_view::npos) << status;
  }
  EXPECT_EQ(tokens->Authorize("Bearer worker-0123456789abcdeX", Role::kWorker).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(TokenAuthorizerTest, MissingMalformedAndUnknownTokensAreUnauthenticatedWithoutEchoingThem) {
  absl::StatusOr<TokenAuthorizer> tokens = TokenAuthorizer::FromText(kFile, "tokens.txt");
  ASSERT_TRUE(tokens.ok());
  for (const char* header : {"", "reader-0123456789abcdef", "Basic abc",
                             "Bearer reader-0123456789abcdeX", "Bearer ", "bearer reader"}) {
    absl::Status status = tokens->Authorize(header, Role::kRead);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_EQ(status.message().find("0123456789"), absl::string_view::npos) << status;
  }
}

TEST(TokenAuthorizerTest, BadFilesAreRefusedNamingTheLine) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {"abcdefghijklmnopq admin\n",
            "tokens.txt line 1: role \"admin\" is not read, write or worker"},
           {"# x\nabcdefghijklmnopq\n", "tokens.txt line 2: expected \"TOKEN ROLE\""},
           {"short read\n", "tokens.txt line 1: the token is shorter than 16 characters"},
           {"abcdefghijklmnopq read\nabcdefghijklmnopq write\n",
            "tokens.txt line 2: the token is listed twice"},
           {"# only comments\n\n", "tokens.txt lists no tokens"},
       }) {
    absl::StatusOr<TokenAuthorizer> tokens = TokenAuthorizer::FromText(c.text, "tokens.txt");
    ASSERT_FALSE(tokens.ok()) << c.text;
    EXPECT_NE(tokens.status().message().find(c.message), absl::string_view::npos)
        << tokens.status();
    EXPECT_EQ(tokens.status().message().find("abcdefghijklmnopq"), absl::string_view::npos)
        << "a token was echoed: " << tokens.status();
  }
  EXPECT_FALSE(TokenAuthorizer::FromFile("/nonexistent/tokens").ok());
}

}  // namespace
}  // namespace gradlab
