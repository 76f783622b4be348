#include "server/http/host_check.h"

#include "gtest/gtest.h"

namespace gradlab {
namespace {

TEST(HostCheckTest, LoopbackNamesOnTheListeningPort) {
  const HostCheck check("127.0.0.1", 8080, /*https=*/false, {});
  EXPECT_TRUE(check.Allows("127.0.0.1:8080"));
  EXPECT_TRUE(check.Allows("localhost:8080"));
  EXPECT_TRUE(check.Allows("LocalHost:8080"));
  EXPECT_TRUE(check.Allows("[::1]:8080"));
  EXPECT_FALSE(check.Allows("127.0.0.1:9090"));
  EXPECT_FALSE(check.Allows("127.0.0.1"));              // port 80
  EXPECT_FALSE(check.Allows("attacker.example:8080"));  // DNS rebinding
  EXPECT_FALSE(check.Allows(""));
  EXPECT_FALSE(check.Allows("[::1:8080"));
  EXPECT_FALSE(check.Allows("localhost:x"));
}

TEST(HostCheckTest, TheListenHostAndAllowedHostsOnAnyPort) {
  const HostCheck named("gradlab.lan", 8080, false, {});
  EXPECT_TRUE(named.Allows("gradlab.lan:8080"));
  EXPECT_FALSE(named.Allows("gradlab.lan:8081"));
  const HostCheck wildcard("0.0.0.0", 8080, false, {"gradlabd", "10.1.2.3", "fe80::1"});
  EXPECT_FALSE(wildcard.Allows("0.0.0.0:8080"));  // a wildcard names nothing
  EXPECT_TRUE(wildcard.Allows("gradlabd:8080"));
  EXPECT_TRUE(wildcard.Allows("GRADLABD"));
  EXPECT_TRUE(wildcard.Allows("10.1.2.3:30080"));
  EXPECT_TRUE(wildcard.Allows("[fe80::1]:8080"));
  EXPECT_TRUE(wildcard.Allows("localhost:8080"));
  EXPECT_FALSE(wildcard.Allows("10.1.2.4:8080"));
}

TEST(HostCheckTest, AHostWithoutAPortMeansTheSchemesDefault) {
  EXPECT_TRUE(HostCheck("127.0.0.1", 80, false, {}).Allows("localhost"));
  EXPECT_TRUE(HostCheck("127.0.0.1", 443, true, {}).Allows("localhost"));
  EXPECT_FALSE(HostCheck("127.0.0.1", 443, false, {}).Allows("localhost"));
}

TEST(HostCheckTest, TheRefusalNamesWhatIsAllowed) {
  EXPECT_EQ(HostCheck("0.0.0.0", 8080, false, {"gradlabd"}).Refusal("evil:8080"),
            "Host \"evil:8080\" is not this server's: it answers localhost, 127.0.0.1, [::1] on "
            "port 8080, and gradlabd (gradlabd --http_allowed_hosts adds names, e.g. the one a "
            "proxy or a service uses)");
}

}  // namespace
}  // namespace gradlab
