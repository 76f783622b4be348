// End to end over TLS: the real gradlabd and gradlab binaries, certificates made by openssl
// at test time, gRPC (through the CLI) and HTTPS (cpp-httplib's client) on both of its
// ports; and the default that refuses to serve other machines without TLS.
#include <httplib.h>
#include <signal.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"
#include "tests/testing/gradlabd_process.h"
#include "tests/testing/test_certificates.h"
#include "tests/testing/test_dir.h"

namespace gradlab {
namespace {

// Runs a binary and returns its exit code and everything it wrote (stdout and stderr).
CommandResult RunWithStderr(std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1"});
  return RunCommand(argv, {}, absl::Seconds(60));
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A handshake the server refuses can leave the client writing to a closed socket.
    signal(SIGPIPE, SIG_IGN);
    absl::StatusOr<TestCertificates> certificates =
        MakeTestCertificates(FreshSuiteDir("tls_e2e_certificates"));
    ASSERT_TRUE(certificates.ok()) << certificates.status();
    certificates_ = new TestCertificates(*std::move(certificates));
  }
  static void TearDownTestSuite() { delete certificates_; }

  // Starts gradlabd with TLS (and these extra flags) on free ports.
  void StartServer(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> flags = {"--state_dir=", "--tls_cert=" + certificates_->server_cert,
                                      "--tls_key=" + certificates_->server_key};
    flags.insert(flags.end(), extra.begin(), extra.end());
    absl::StatusOr<GradlabdProcess> server = StartGradlabd(GRADLABD_PATH, flags);
    ASSERT_TRUE(server.ok()) << server.status();
    server_.emplace(*std::move(server));
    grpc_address_ = server_->grpc_address;
    http_port_ = server_->http_port;
  }

  // `gradlab info` with these TLS flags; its exit code.
  int CliInfo(const std::vector<std::string>& tls_flags) {
    std::vector<std::string> argv = {GRADLAB_PATH, "--server=" + grpc_address_, "--timeout=5"};
    argv.insert(argv.end(), tls_flags.begin(), tls_flags.end());
    argv.push_back("info");
    CommandResult result = RunWithStderr(argv);
    if (result.exit_code == 0) {
      EXPECT_TRUE(absl::StrContains(result.out, "simple_cnn")) << result.out;
    }
    return result.exit_code;
  }

  // GET /healthz over HTTPS, verifying the server with the test CA; the HTTP status, or 0
  // when there was no response (the handshake failed).
  int HttpsHealth(const std::string& client_cert = "", const std::string& client_key = "") {
    httplib::SSLClient client("127.0.0.1", http_port_, client_cert, client_key);
    client.set_ca_cert_path(certificates_->ca.c_str());
    client.enable_server_certificate_verification(true);
    client.set_connection_timeout(5, 0);
    httplib::Result result = client.Get("/healthz");
    return result ? result->status : 0;
  }

  static TestCertificates* certificates_;
  std::optional<GradlabdProcess> server_;
  std::string grpc_address_;
  int http_port_ = 0;
};

TestCertificates* TlsTest::certificates_ = nullptr;

TEST_F(TlsTest, BothPortsServeTlsThatClientsVerifyWithTheCa) {
  StartServer();
  EXPECT_EQ(CliInfo({"--tls_ca=" + certificates_->ca}), 0);
  // Plain text, or a CA that did not sign the server's certificate: no connection.
  EXPECT_EQ(CliInfo({}), 4);
  EXPECT_EQ(CliInfo({"--tls_ca=" + certificates_->other_ca}), 4);

  EXPECT_EQ(HttpsHealth(), 200);
  httplib::Client plain("127.0.0.1", http_port_);
  plain.set_connection_timeout(5, 0);
  plain.set_read_timeout(5, 0);
  httplib::Result result = plain.Get("/healthz");
  EXPECT_FALSE(result && result->status == 200) << "plain HTTP was answered";

  server_->process.Signal(SIGTERM);
  EXPECT_EQ(server_->process.Wait(absl::Seconds(10)), 0);
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificateThatTheClientCaSigned) {
  StartServer({"--tls_client_ca=" + certificates_->ca});
  const std::string ca = "--tls_ca=" + certificates_->ca;
  EXPECT_EQ(CliInfo({ca, "--tls_cert=" + certificates_->client_cert,
                     "--tls_key=" + certificates_->client_key}),
            0);
  EXPECT_EQ(CliInfo({ca}), 4);
  EXPECT_EQ(CliInfo({ca, "--tls_cert=" + certificates_->other_client_cert,
                     "--tls_key=" + certificates_->other_client_key}),
            4);

  EXPECT_EQ(HttpsHealth(certificates_->client_cert, certificates_->client_key), 200);
  EXPECT_EQ(HttpsHealth(), 0);
  EXPECT_EQ(HttpsHealth(certificates_->other_client_cert, certificates_->other_client_key), 0);
}

TEST_F(TlsTest, WrongTlsFilesAreRefusedByName) {
  const TestCertificates& c = *certificates_;
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  for (const Case& bad : std::vector<Case>{
           {{"--tls_cert=" + c.server_cert}, "--tls_cert and --tls_key come together"},
           {{"--tls_client_ca=" + c.ca}, "--tls_client_ca needs --tls_cert and --tls_key"},
           {{"--tls_cert=/nonexistent.pem", "--tls_key=" + c.server_key},
            "--tls_cert: cannot read /nonexistent.pem"},
           {{"--tls_cert=" + c.server_key, "--tls_key=" + c.server_key},
            "--tls_cert: " + c.server_key + " is not a PEM certificate"},
           {{"--tls_cert=" + c.server_cert, "--tls_key=" + c.client_key},
            "--tls_key: " + c.client_key + " is not the private key of --tls_cert"},
           {{"--tls_cert=" + c.server_cert, "--tls_key=" + c.server_key,
             "--tls_client_ca=" + c.server_key},
            "--tls_client_ca: " + c.server_key + " is not a PEM certificate"},
       }) {
    SCOPED_TRACE(bad.message);
    std::vector<std::string> argv = {GRADLABD_PATH, "--listen=127.0.0.1:0",
                                     "--http_listen=127.0.0.1:0", "--state_dir="};
    argv.insert(argv.end(), bad.flags.begin(), bad.flags.end());
    CommandResult refused = RunWithStderr(argv);
    EXPECT_EQ(refused.exit_code, 2);
    EXPECT_TRUE(absl::StrContains(refused.out, bad.message)) << refused.out;
  }
  CommandResult cli = RunWithStderr({GRADLAB_PATH, "--tls_ca=" + c.client_key, "info"});
  EXPECT_EQ(cli.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(cli.out, "--tls_ca: " + c.client_key + " is not a PEM certificate"))
      << cli.out;
}

TEST_F(TlsTest, AnAddressOtherMachinesReachNeedsAuthenticationOrAnExplicitFlag) {
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{{"--listen=0.0.0.0:0", "--http_listen=127.0.0.1:0"},
                                             {"--listen=127.0.0.1:0", "--http_listen=0.0.0.0:0"}}) {
    std::vector<std::string> argv = {GRADLABD_PATH, "--state_dir="};
    argv.insert(argv.end(), flags.begin(), flags.end());
    CommandResult refused = RunWithStderr(argv);
    EXPECT_EQ(refused.exit_code, 2) << refused.out;
    EXPECT_TRUE(absl::StrContains(refused.out, "can be reached from other machines"))
        << refused.out;
    EXPECT_TRUE(absl::StrContains(refused.out, "--allow_insecure_remote")) << refused.out;

    argv.push_back("--allow_insecure_remote");
    absl::StatusOr<ChildProcess> allowed = ChildProcess::Start(argv);
    ASSERT_TRUE(allowed.ok());
    EXPECT_TRUE(allowed->ReadLineContaining("listening on port", absl::Seconds(60)).ok());
    allowed->Signal(SIGTERM);
    EXPECT_EQ(allowed->Wait(absl::Seconds(10)), 0);
  }
  // TLS alone is refused; with client certificates no flag is needed.
  CommandResult tls_alone = RunWithStderr(
      {GRADLABD_PATH, "--state_dir=", "--listen=0.0.0.0:0", "--http_listen=127.0.0.1:0",
       "--tls_cert=" + certificates_->server_cert, "--tls_key=" + certificates_->server_key});
  EXPECT_EQ(tls_alone.exit_code, 2) << tls_alone.out;
  EXPECT_TRUE(absl::StrContains(tls_alone.out, "with TLS alone")) << tls_alone.out;
  StartServer({"--listen=0.0.0.0:0", "--tls_client_ca=" + certificates_->ca});
  server_->process.Signal(SIGTERM);
  EXPECT_EQ(server_->process.Wait(absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace gradlab
