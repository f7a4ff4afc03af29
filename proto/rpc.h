// RPC glue shared by the coordinator, the worker and the CLI: Status <->
// grpc::Status (the codes are the same numbers), and how a client connects:
// address, shared token and transport security.
#ifndef ABLATE_PROTO_RPC_H_
#define ABLATE_PROTO_RPC_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "proto/ablate.grpc.pb.h"

namespace CLI {
class App;
}

namespace ablate {

grpc::Status ToGrpc(const Status& status);
Status FromGrpc(const grpc::Status& status);

// The outcome of a call to the coordinator at `address` over `channel`, for
// a person to read: an UNAVAILABLE on a channel that never connected says
// "cannot reach the coordinator at ADDRESS" with the cause gRPC found
// ("Connection refused", "Domain name not found"), not gRPC's "failed to
// connect to all addresses; last error: UNKNOWN: ..."; anything else is
// FromGrpc with "coordinator ADDRESS" before it.
Status CallOutcome(const grpc::Status& status, grpc::Channel& channel, const std::string& address);

// True for the errors a retry can outlive (UNAVAILABLE, DEADLINE_EXCEEDED,
// RESOURCE_EXHAUSTED).
bool IsTransient(const Status& status);

// The metadata key that carries the shared token, as "Bearer <token>".
inline constexpr char kAuthorizationHeader[] = "authorization";

// A token as written in a file or $ABLATE_TOKEN: surrounding whitespace is
// dropped; the rest must be non-empty printable ASCII without spaces (it
// travels as metadata). Errors name `source` but never repeat the token.
StatusOr<std::string> ParseToken(const std::string& text, const std::string& source);
// ParseToken of the file's content.
StatusOr<std::string> ReadTokenFile(const std::string& path);

// Reads a PEM file (certificate, key or CA bundle); InvalidArgument when it
// holds no PEM block.
StatusOr<std::string> ReadPemFile(const std::string& path);

// How a client reaches the coordinator. Contents, not paths: AddClientFlags
// reads the files while parsing, so a bad file is a usage error up front.
struct ClientOptions {
  std::string address;  // HOST:PORT
  // Sent as "authorization: Bearer <token>" on every call; empty: none.
  std::string token;
  // Speak TLS, trusting tls_ca_pem (empty: the system's roots).
  bool tls = false;
  std::string tls_ca_pem;
  // A client certificate and its key, for a coordinator that requires one.
  std::string tls_cert_pem, tls_key_pem;
  // The name the server's certificate must carry when the address's host is
  // not it (e.g. connecting by IP); empty: the host.
  std::string tls_server_name;
};

// A channel to options.address with options' security. Never fails: a bad
// address or certificate makes the calls fail with UNAVAILABLE. Reconnects
// at most a couple of seconds after the coordinator is back.
std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options);

// Registers the flags every client of the coordinator takes on `app`:
//   --coordinator HOST:PORT   ($ABLATE_COORDINATOR)
//   --token-file PATH         ($ABLATE_TOKEN_FILE; else the token itself in $ABLATE_TOKEN,
//                             unchecked: the coordinator refuses a malformed one)
//   --tls                     TLS with the system's roots
//   --tls-ca PEM              TLS trusting this CA ($ABLATE_TLS_CA)
//   --tls-cert PEM, --tls-key PEM   a client certificate ($ABLATE_TLS_CERT, $ABLATE_TLS_KEY)
//   --tls-server-name NAME    the name to expect in the server's certificate
// Files are read during parsing; an unreadable or malformed one fails the
// parse with a message naming the flag. `options` must outlive the parse.
void AddClientFlags(CLI::App* app, ClientOptions* options);

// A checkpoint download (DownloadCheckpoint, GetCheckpoint): reads the
// stream, whose first message carries the file's info, to its end and
// finishes the call; checks the bytes against the announced size and
// SHA-256; writes them to `path` whole or not at all. `finish` turns the
// call's final status into ours. DataLoss, naming `what`, for a stream with
// no first message or bytes that do not match.
StatusOr<v1::CheckpointInfo> ReceiveCheckpoint(
    grpc::ClientReaderInterface<v1::DownloadCheckpointResponse>* reader,
    const std::function<Status(const grpc::Status&)>& finish, const std::string& what,
    const std::string& path);

}  // namespace ablate

#endif  // ABLATE_PROTO_RPC_H_
