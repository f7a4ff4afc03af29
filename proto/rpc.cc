#include "proto/rpc.h"

#include <grpcpp/support/client_interceptor.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "common/config_hash.h"
#include "common/file.h"

namespace ablate {

namespace {

// Far below gRPC's default of two minutes: a worker must be back within its
// lease once a restarted coordinator renewed it.
constexpr int kMaxReconnectBackoffMs = 2000;
constexpr int kInitialReconnectBackoffMs = 250;

std::string Trim(const std::string& text) {
  const char* space = " \t\r\n\f\v";
  const size_t begin = text.find_first_not_of(space);
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(space) - begin + 1);
}

StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot be read");
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return Status::IOError(path + ": read error");
  return content.str();
}

// Adds the token to every call's metadata.
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace(kAuthorizationHeader, *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* const header_;  // owned by the factory, which outlives the channel's calls
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(&header_);
  }

 private:
  const std::string header_;
};

// A CLI11 check that reads the flag's file into `*into` with `read`.
CLI::Validator Loads(std::string* into, StatusOr<std::string> (*read)(const std::string&),
                     bool* tls = nullptr) {
  return CLI::Validator(
      [into, read, tls](std::string& path) -> std::string {
        StatusOr<std::string> content = read(path);
        if (!content.ok()) return content.status().message();
        *into = std::move(content).value();
        if (tls != nullptr) *tls = true;
        return "";
      },
      "FILE");
}

}  // namespace

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return Status::OK();
  return Status(static_cast<Status::Code>(status.error_code()), status.error_message());
}

Status CallOutcome(const grpc::Status& status, grpc::Channel& channel, const std::string& address) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE ||
      channel.GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY) {
    return FromGrpc(status).WithContext("coordinator " + address);
  }
  // gRPC's text ends with the cause: "...: Failed to connect to remote host:
  // Connection refused".
  const std::string& text = status.error_message();
  const size_t colon = text.rfind(": ");
  const std::string cause = colon == std::string::npos ? text : text.substr(colon + 2);
  return Status::Unavailable("cannot reach the coordinator at " + address +
                             (cause.empty() ? "" : ": " + cause));
}

bool IsTransient(const Status& status) {
  return status.code() == Status::kUnavailable || status.code() == Status::kDeadlineExceeded ||
         status.code() == Status::kResourceExhausted;
}

StatusOr<std::string> ParseToken(const std::string& text, const std::string& source) {
  std::string token = Trim(text);
  if (token.empty()) return Status::InvalidArgument(source + ": the token is empty");
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return Status::InvalidArgument(source + ": the token must be printable ASCII without spaces");
    }
  }
  return token;
}

StatusOr<std::string> ReadTokenFile(const std::string& path) {
  ABLATE_ASSIGN_OR_RETURN(std::string content, ReadWholeFile(path));
  return ParseToken(content, path);
}

StatusOr<std::string> ReadPemFile(const std::string& path) {
  ABLATE_ASSIGN_OR_RETURN(std::string content, ReadWholeFile(path));
  if (content.find("-----BEGIN ") == std::string::npos) {
    return Status::InvalidArgument(path + ": not a PEM file (no -----BEGIN line)");
  }
  return content;
}

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca_pem;
    ssl.pem_cert_chain = options.tls_cert_pem;
    ssl.pem_private_key = options.tls_key_pem;
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.token.empty()) {
    interceptors.push_back(std::make_unique<TokenInterceptorFactory>(options.token));
  }
  return grpc::experimental::CreateCustomChannelWithInterceptors(options.address, credentials, args,
                                                                 std::move(interceptors));
}

void AddClientFlags(CLI::App* app, ClientOptions* options) {
  app->add_option("--coordinator", options->address, "Coordinator address HOST:PORT")
      ->envname("ABLATE_COORDINATOR");
  if (const char* token = std::getenv("ABLATE_TOKEN")) options->token = Trim(token);
  // Bound to no variable: the checks store what the files hold in `options`.
  app->add_option("--token-file", "File holding the coordinator's shared token")
      ->envname("ABLATE_TOKEN_FILE")
      ->check(Loads(&options->token, &ReadTokenFile));
  app->add_flag("--tls", options->tls, "Connect with TLS, trusting the system's CAs");
  app->add_option("--tls-ca", "CA certificate (PEM) to trust for the coordinator; implies --tls")
      ->envname("ABLATE_TLS_CA")
      ->check(Loads(&options->tls_ca_pem, &ReadPemFile, &options->tls));
  CLI::Option* cert =
      app->add_option("--tls-cert", "Client certificate (PEM) for mutual TLS; implies --tls")
          ->envname("ABLATE_TLS_CERT")
          ->check(Loads(&options->tls_cert_pem, &ReadPemFile, &options->tls));
  CLI::Option* key = app->add_option("--tls-key", "Private key (PEM) of --tls-cert")
                         ->envname("ABLATE_TLS_KEY")
                         ->check(Loads(&options->tls_key_pem, &ReadPemFile, &options->tls));
  cert->needs(key);
  key->needs(cert);
  app->add_option("--tls-server-name", options->tls_server_name,
                  "Name to expect in the coordinator's certificate (default: the address's host)");
}

StatusOr<v1::CheckpointInfo> ReceiveCheckpoint(
    grpc::ClientReaderInterface<v1::DownloadCheckpointResponse>* reader,
    const std::function<Status(const grpc::Status&)>& finish, const std::string& what,
    const std::string& path) {
  v1::DownloadCheckpointResponse message;
  v1::CheckpointInfo info;
  std::string data;
  bool first = true;
  while (reader->Read(&message)) {
    if (first) info = message.info();
    first = false;
    data += message.chunk();
  }
  ABLATE_RETURN_IF_ERROR(finish(reader->Finish()));
  if (first) return Status::DataLoss(what + " download ended before its first message");
  if (static_cast<int64_t>(data.size()) != info.total_bytes() ||
      Sha256Hex(data) != info.sha256_hex()) {
    return Status::DataLoss(what + " download does not match its size or SHA-256");
  }
  ABLATE_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  ABLATE_RETURN_IF_ERROR(file.Append(data));
  ABLATE_RETURN_IF_ERROR(file.Commit());
  return info;
}

}  // namespace ablate
