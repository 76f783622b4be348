#include "common/host_port.h"

#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(HostPortTest, ParsesHostAndPortWithOrWithoutBrackets) {
  absl::StatusOr<HostPort> v4 = ParseHostPort("127.0.0.1:8080", "--x");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 8080);
  absl::StatusOr<HostPort> v6 = ParseHostPort("[::1]:0", "--x");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 0);
}

TEST(HostPortTest, RefusesWhatIsNotHostColonPortNamingTheFlag) {
  for (const char* bad : {"8080", ":8080", "host:", "host:x", "host:65536", "host:-1"}) {
    absl::StatusOr<HostPort> parsed = ParseHostPort(bad, "--http_listen");
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().message(),
              std::string("--http_listen: \"") + bad +
                  "\" is not host:port (port 0-65535; 0 picks a free one)");
  }
}

TEST(HostPortTest, OnlyLoopbackAddressesAreLocal) {
  for (const char* local : {"127.0.0.1", "127.1.2.3", "::1", "localhost"}) {
    EXPECT_TRUE(IsLoopbackHost(local)) << local;
  }
  for (const char* remote : {"0.0.0.0", "::", "", "10.0.0.1", "gradlab.example.com"}) {
    EXPECT_FALSE(IsLoopbackHost(remote)) << remote;
  }
}

}  // namespace
}  // namespace gradlab
