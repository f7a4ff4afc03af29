// Who may talk to a coordinator: the shared token, TLS and mutual TLS with
// certificates made by the openssl CLI at test time, the loopback-only bind
// rule, and the health check that needs none of them.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "coordinator/server.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "proto/ablate.grpc.pb.h"
#include "proto/rpc.h"
#include "tests/support/process.h"
#include "tests/support/sweep_harness.h"

namespace ablate {
namespace {

using testing::Binary;
using testing::Process;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;
using testing::WriteFile;

// A CA and certificates it signed, as files in `dir`.
class Pki {
 public:
  explicit Pki(const TempDir& dir) : dir_(dir) {}

  // A self-signed CA: NAME.pem, NAME.key.
  bool MakeCa(const std::string& name) {
    return Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", Path(name + ".key"), "-out", Path(name + ".pem"), "-days",
                    "2", "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  }

  // NAME.pem and NAME.key signed by CA, for a server (with `names` as its
  // subjectAltName, e.g. "DNS:localhost,IP:127.0.0.1") or a client.
  bool MakeCertificate(const std::string& name, const std::string& ca, const std::string& names) {
    const bool server = !names.empty();
    WriteFile(Path(name + ".ext"),
              server ? "subjectAltName=" + names + "\nextendedKeyUsage=serverAuth\n"
                     : "extendedKeyUsage=clientAuth\n");
    return Openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", Path(name + ".key"), "-out", Path(name + ".csr"), "-subj",
                    "/CN=" + name}) &&
           Openssl({"x509", "-req", "-in", Path(name + ".csr"), "-CA", Path(ca + ".pem"), "-CAkey",
                    Path(ca + ".key"), "-CAcreateserial", "-out", Path(name + ".pem"), "-days", "2",
                    "-extfile", Path(name + ".ext")});
  }

  std::string Path(const std::string& file) const { return dir_.File(file); }
  std::string Pem(const std::string& file) const { return ReadFile(Path(file)); }

 private:
  bool Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    auto run = RunCommand(args, dir_.path());
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return run.exit_code == 0;
  }
  const TempDir& dir_;
};

// One set of certificates for the whole suite: a CA with a server and a
// client certificate, and an unrelated CA with its own client certificate.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    pki_ = new Pki(*dir_);
    ASSERT_TRUE(pki_->MakeCa("ca"));
    ASSERT_TRUE(pki_->MakeCa("other-ca"));
    ASSERT_TRUE(pki_->MakeCertificate("server", "ca", "DNS:localhost,IP:127.0.0.1"));
    ASSERT_TRUE(pki_->MakeCertificate("named-server", "ca", "DNS:coordinator.internal"));
    ASSERT_TRUE(pki_->MakeCertificate("client", "ca", ""));
    ASSERT_TRUE(pki_->MakeCertificate("stranger", "other-ca", ""));
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete dir_;
  }

  // An in-process coordinator serving TLS with `cert`, requiring client
  // certificates signed by `client_ca` when it is not empty.
  void Serve(const std::string& cert = "server", const std::string& client_ca = "") {
    CoordinatorOptions options;
    options.db_path = db_dir_.File("tls.db");
    options.listen = "127.0.0.1:0";
    options.tls_cert_pem = pki_->Pem(cert + ".pem");
    options.tls_key_pem = pki_->Pem(cert + ".key");
    if (!client_ca.empty()) options.tls_client_ca_pem = pki_->Pem(client_ca + ".pem");
    auto server = CoordinatorServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  ClientOptions Client(const std::string& ca, const std::string& cert = "") {
    ClientOptions client;
    client.address = server_->address();
    client.tls = true;
    client.tls_ca_pem = pki_->Pem(ca + ".pem");
    if (!cert.empty()) {
      client.tls_cert_pem = pki_->Pem(cert + ".pem");
      client.tls_key_pem = pki_->Pem(cert + ".key");
    }
    return client;
  }

  static grpc::StatusCode ListSweeps(const ClientOptions& client) {
    auto stub = v1::Sweeps::NewStub(MakeChannel(client));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListSweepsResponse reply;
    return stub->ListSweeps(&context, v1::ListSweepsRequest(), &reply).error_code();
  }

  static TempDir* dir_;
  static Pki* pki_;
  TempDir db_dir_;
  std::unique_ptr<CoordinatorServer> server_;
};

TempDir* TlsTest::dir_ = nullptr;
Pki* TlsTest::pki_ = nullptr;

TEST_F(TlsTest, ClientTrustingTheServersCaGetsThrough) {
  Serve();
  EXPECT_EQ(ListSweeps(Client("ca")), grpc::StatusCode::OK);
}

TEST_F(TlsTest, PlaintextClientIsRefused) {
  Serve();
  ClientOptions plaintext;
  plaintext.address = server_->address();
  EXPECT_EQ(ListSweeps(plaintext), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, ClientTrustingAnotherCaIsRefused) {
  Serve();
  EXPECT_EQ(ListSweeps(Client("other-ca")), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsLetsOnlyClientsWithACertificateFromTheClientCaIn) {
  Serve("server", "ca");
  EXPECT_EQ(ListSweeps(Client("ca")), grpc::StatusCode::UNAVAILABLE) << "no client certificate";
  EXPECT_EQ(ListSweeps(Client("ca", "stranger")), grpc::StatusCode::UNAVAILABLE)
      << "a certificate from another CA";
  EXPECT_EQ(ListSweeps(Client("ca", "client")), grpc::StatusCode::OK);
}

TEST_F(TlsTest, ServerNameOverrideMatchesACertificateWithoutTheAddress) {
  Serve("named-server");
  ClientOptions client = Client("ca");
  EXPECT_EQ(ListSweeps(client), grpc::StatusCode::UNAVAILABLE) << "127.0.0.1 is not in the cert";
  client.tls_server_name = "coordinator.internal";
  EXPECT_EQ(ListSweeps(client), grpc::StatusCode::OK);
}

TEST_F(TlsTest, UnusableTlsSettingsAreRefusedAtStartNamingTheFlag) {
  CoordinatorOptions options;
  options.db_path = db_dir_.File("never.db");
  options.listen = "127.0.0.1:0";
  options.tls_cert_pem = pki_->Pem("server.pem");
  options.tls_key_pem = pki_->Pem("client.key");
  auto mismatched = CoordinatorServer::Start(options);
  EXPECT_EQ(mismatched.status().code(), Status::kInvalidArgument);
  EXPECT_NE(mismatched.status().message().find("--tls-key"), std::string::npos);
  options.tls_key_pem.clear();
  auto alone = CoordinatorServer::Start(options);
  EXPECT_NE(alone.status().message().find("--tls-cert and --tls-key"), std::string::npos);
  options.tls_cert_pem.clear();
  options.tls_client_ca_pem = pki_->Pem("ca.pem");
  auto ca_only = CoordinatorServer::Start(options);
  EXPECT_NE(ca_only.status().message().find("--tls-client-ca"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(options.db_path)) << "refused before opening anything";
}

// The binary with TLS, mutual TLS and a token, as deployed: a worker with
// the matching flags trains a job; the health check passes with the CA and
// a client certificate, and fails without the CA.
TEST_F(TlsTest, WorkerAndHealthCheckReachATlsCoordinatorThroughTheirFlags) {
  TempDir run;
  WriteFile(run.File("token"), "s3cret-token\n");
  WriteFile(run.File("corpus.txt"), testing::EnglishText8(20));
  const std::string port = std::to_string(testing::FreePort());
  Process coordinator(
      "coordinator",
      {Binary("ablate-coordinator"), "--db", run.File("tls.db"), "--listen", "127.0.0.1:" + port,
       "--token-file", run.File("token"), "--tls-cert", pki_->Path("server.pem"), "--tls-key",
       pki_->Path("server.key"), "--tls-client-ca", pki_->Path("ca.pem")},
      run.path());
  ASSERT_FALSE(coordinator.WaitForLine("listening on").empty()) << coordinator.Stderr();
  EXPECT_NE(coordinator.Stderr().find("mutual TLS, token required"), std::string::npos);
  const std::vector<std::string> tls = {"--tls-ca",   pki_->Path("ca.pem"),
                                        "--tls-cert", pki_->Path("client.pem"),
                                        "--tls-key",  pki_->Path("client.key")};

  std::vector<std::string> health = {Binary("ablate-coordinator"), "health", "--coordinator",
                                     "127.0.0.1:" + port};
  auto plaintext = RunCommand(health, run.path());
  EXPECT_EQ(plaintext.exit_code, 1) << plaintext.out << plaintext.err;
  health.insert(health.end(), tls.begin(), tls.end());
  auto checked = RunCommand(health, run.path());
  EXPECT_EQ(checked.exit_code, 0) << checked.err;
  EXPECT_EQ(checked.out, "SERVING\n");

  ClientOptions launcher;
  launcher.address = "127.0.0.1:" + port;
  launcher.token = "s3cret-token";
  launcher.tls = true;
  launcher.tls_ca_pem = pki_->Pem("ca.pem");
  launcher.tls_cert_pem = pki_->Pem("client.pem");
  launcher.tls_key_pem = pki_->Pem("client.key");
  auto launched = testing::Launch(MakeChannel(launcher),
                                  "name: tls\ndata: {path: " + run.File("corpus.txt") +
                                      "}\nmodel: {hidden: 16, vocab: 27}\n"
                                      "train: {batch: 2, seq: 16, steps: 10, log_every: 5}\n"
                                      "grid:\n  cell: [gru]\n",
                                  "tls.yaml");
  ASSERT_TRUE(launched.ok()) << launched.status().ToString();

  std::vector<std::string> worker = {
      Binary("ablate-worker"), "--coordinator", "127.0.0.1:" + port, "--threads", "1",
      "--exit-when-idle",      "--token-file",  run.File("token")};
  worker.insert(worker.end(), tls.begin(), tls.end());
  auto trained = RunCommand(worker, run.path());
  EXPECT_EQ(trained.exit_code, 0) << trained.err;
  EXPECT_EQ(
      testing::QueryInt64(run.File("tls.db"), "SELECT count(*) FROM jobs WHERE state = 'done'")
          .value(),
      1);
}

grpc::StatusCode ListSweeps(const std::string& address, const std::string& token) {
  ClientOptions client;
  client.address = address;
  client.token = token;
  auto stub = v1::Sweeps::NewStub(MakeChannel(client));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListSweepsResponse reply;
  return stub->ListSweeps(&context, v1::ListSweepsRequest(), &reply).error_code();
}

// The coordinator binary with --token-file.
class TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_.File("token"), "  correct-horse-battery-staple\n");
    coordinator_ = std::make_unique<Process>(
        "coordinator",
        std::vector<std::string>{Binary("ablate-coordinator"), "--db", dir_.File("token.db"),
                                 "--listen", "127.0.0.1:0", "--token-file", dir_.File("token")},
        dir_.path());
    std::smatch m;
    const std::string line = coordinator_->WaitForLine("listening on");
    ASSERT_TRUE(std::regex_search(line, m, std::regex("listening on (\\S+)")))
        << coordinator_->Stderr();
    address_ = m[1];
  }

  TempDir dir_;
  std::unique_ptr<Process> coordinator_;
  std::string address_;
};

TEST_F(TokenTest, CallsWithoutTheRightTokenAreUnauthenticatedAndTokensAreNeverLogged) {
  EXPECT_EQ(ListSweeps(address_, ""), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListSweeps(address_, "correct-horse-battery-stapler"),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListSweeps(address_, "correct-horse-battery-staple"), grpc::StatusCode::OK);

  // The worker-facing service and its streams are guarded the same way.
  ClientOptions anonymous;
  anonymous.address = address_;
  auto coordinator = v1::Coordinator::NewStub(MakeChannel(anonymous));
  {
    grpc::ClientContext context;
    v1::RegisterWorkerRequest request;
    request.set_name("intruder");
    v1::RegisterWorkerResponse reply;
    EXPECT_EQ(coordinator->RegisterWorker(&context, request, &reply).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    v1::UploadCheckpointResponse reply;
    auto stream = coordinator->UploadCheckpoint(&context, &reply);
    v1::UploadCheckpointRequest first;
    first.set_job_id(1);
    stream->Write(first);
    stream->WritesDone();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    v1::DownloadCheckpointRequest request;
    request.set_job_id(1);
    auto stream = coordinator->DownloadCheckpoint(&context, request);
    v1::DownloadCheckpointResponse message;
    EXPECT_FALSE(stream->Read(&message));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(testing::QueryInt64(dir_.File("token.db"), "SELECT count(*) FROM workers").value(), 0);

  // Container and Kubernetes probes send no metadata: health is exempt.
  auto health = grpc::health::v1::Health::NewStub(MakeChannel(anonymous));
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckResponse reply;
  ASSERT_TRUE(health->Check(&context, grpc::health::v1::HealthCheckRequest(), &reply).ok());
  EXPECT_EQ(reply.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  const std::string log = coordinator_->Stderr();
  EXPECT_NE(log.find("refused a call from"), std::string::npos) << log;
  EXPECT_EQ(log.find("correct-horse"), std::string::npos) << log;
}

// The CLI's edge: a missing token and a wrong one are told apart.
TEST_F(TokenTest, TheCliSaysWhetherItsTokenWasMissingOrRefused) {
  const std::vector<std::string> list = {Binary("ablate"), "list", "--coordinator", address_};
  auto missing = RunCommand(list, dir_.path());
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("this coordinator requires a token"), std::string::npos)
      << missing.err;
  auto wrong = RunCommand(list, dir_.path(), std::chrono::seconds(60),
                          {{"ABLATE_TOKEN", "correct-horse-battery-stapler"}});
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.err.find("the coordinator refused the token"), std::string::npos) << wrong.err;
  EXPECT_EQ(wrong.err.find("correct-horse"), std::string::npos) << wrong.err;
  auto right = RunCommand(list, dir_.path(), std::chrono::seconds(60),
                          {{"ABLATE_TOKEN", "correct-horse-battery-staple"}});
  EXPECT_EQ(right.exit_code, 0) << right.err;
}

TEST(CliEdge, AnUnreachableCoordinatorIsNamedWithItsAddressAndTheCause) {
  TempDir dir;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  auto result = RunCommand({Binary("ablate"), "list", "--coordinator", address}, dir.path());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.err.find("cannot reach the coordinator at " + address + ": "),
            std::string::npos)
      << result.err;
  EXPECT_EQ(result.err.find("failed to connect to all addresses"), std::string::npos)
      << result.err;
}

TEST_F(TokenTest, WorkerSendsTheTokenFromItsFlagOrEnvironmentAndStopsWithoutIt) {
  WriteFile(dir_.File("corpus.txt"), testing::EnglishText8(20));
  ClientOptions launcher;
  launcher.address = address_;
  launcher.token = "correct-horse-battery-staple";
  auto spec = [&](const std::string& name) {
    return "name: " + name + "\ndata: {path: " + dir_.File("corpus.txt") +
           "}\nmodel: {hidden: 16, vocab: 27}\n"
           "train: {batch: 2, seq: 16, steps: 10, log_every: 5}\ngrid:\n  cell: [gru]\n";
  };
  ASSERT_TRUE(testing::Launch(MakeChannel(launcher), spec("by-file"), "a.yaml").ok());

  const std::vector<std::string> worker = {
      Binary("ablate-worker"), "--coordinator", address_, "--threads", "1", "--exit-when-idle"};
  auto refused = RunCommand(worker, dir_.path());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("UNAUTHENTICATED"), std::string::npos) << refused.err;

  std::vector<std::string> with_file = worker;
  with_file.insert(with_file.end(), {"--token-file", dir_.File("token")});
  auto by_file = RunCommand(with_file, dir_.path());
  EXPECT_EQ(by_file.exit_code, 0) << by_file.err;

  ASSERT_TRUE(testing::Launch(MakeChannel(launcher), spec("by-env"), "b.yaml").ok());
  auto by_env = RunCommand(worker, dir_.path(), std::chrono::seconds(120),
                           {{"ABLATE_TOKEN", "correct-horse-battery-staple"}});
  EXPECT_EQ(by_env.exit_code, 0) << by_env.err;
  EXPECT_EQ(
      testing::QueryInt64(dir_.File("token.db"), "SELECT count(*) FROM jobs WHERE state = 'done'")
          .value(),
      2);
}

TEST(TokenFile, UnusableTokenFilesAreUsageErrorsNamingTheFile) {
  TempDir dir;
  WriteFile(dir.File("empty"), " \n");
  WriteFile(dir.File("spaced"), "two words\n");
  for (const std::string file : {"empty", "spaced", "missing"}) {
    auto token = ReadTokenFile(dir.File(file));
    EXPECT_FALSE(token.ok()) << file;
    EXPECT_NE(token.status().message().find(dir.File(file)), std::string::npos);
    EXPECT_EQ(token.status().message().find("words"), std::string::npos) << "never the token";
    auto started = RunCommand({Binary("ablate-coordinator"), "--db", dir.File("db"), "--listen",
                               "127.0.0.1:0", "--token-file", dir.File(file)},
                              dir.path());
    EXPECT_EQ(started.exit_code, 2) << file << ": " << started.err;
    EXPECT_NE(started.err.find("--token-file"), std::string::npos) << started.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("db")));
}

TEST(BindRule, LoopbackAddressesAreRecognised) {
  for (const char* address :
       {"127.0.0.1:50051", "127.1.2.3:0", "localhost:1", "[::1]:50051", "unix:/tmp/ablate.sock"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
  for (const char* address : {"0.0.0.0:50051", "[::]:50051", ":50051", "10.0.0.7:50051",
                              "coordinator.internal:50051", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
  EXPECT_TRUE(IsLoopbackAddress(CoordinatorOptions().listen)) << "the default must be loopback";
}

TEST(BindRule, CoordinatorRefusesANonLoopbackAddressWithoutAToken) {
  TempDir dir;
  auto refused = RunCommand(
      {Binary("ablate-coordinator"), "--db", dir.File("open.db"), "--listen", "0.0.0.0:0"},
      dir.path());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("refusing to listen on 0.0.0.0:0 without a token"), std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("--token-file"), std::string::npos) << refused.err;
  EXPECT_FALSE(std::filesystem::exists(dir.File("open.db")));

  Process guarded(
      "guarded",
      {Binary("ablate-coordinator"), "--db", dir.File("guarded.db"), "--listen", "0.0.0.0:0"},
      dir.path(), {{"ABLATE_TOKEN", "a-token"}});
  EXPECT_NE(guarded.WaitForLine("listening on 0.0.0.0:"), "") << guarded.Stderr();
  EXPECT_NE(guarded.Stderr().find("token required"), std::string::npos);
}

TEST(BindRule, DefaultListenAddressIsLoopback) {
  TempDir dir;
  auto help = RunCommand({Binary("ablate-coordinator"), "--help"}, dir.path());
  EXPECT_NE(help.out.find("127.0.0.1:50051"), std::string::npos) << help.out;
}

TEST(HealthCommand, ExitsZeroOnlyWhenTheCoordinatorServes) {
  TempDir dir;
  const int port = testing::FreePort();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  auto nobody = RunCommand(
      {Binary("ablate-coordinator"), "health", "--coordinator", address, "--timeout", "1"},
      dir.path());
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_NE(nobody.err.find(address), std::string::npos) << nobody.err;

  // With a token required: the health check needs none.
  testing::CoordinatorProcess coordinator(dir.path(), dir.File("h.db"), port, {},
                                          {{"ABLATE_TOKEN", "a-token"}});
  ASSERT_TRUE(coordinator.serving()) << coordinator.Logs();
  auto serving = RunCommand({Binary("ablate-coordinator"), "health"}, dir.path(),
                            std::chrono::seconds(30), {{"ABLATE_COORDINATOR", address}});
  EXPECT_EQ(serving.exit_code, 0) << serving.err;
  EXPECT_EQ(serving.out, "SERVING\n");
}

}  // namespace
}  // namespace ablate
