// RPC glue shared by the coordinator, the worker and the CLI: Status <->
// grpc::Status (the codes are the same numbers), and how a client connects.
#ifndef ABLATE_PROTO_RPC_H_
#define ABLATE_PROTO_RPC_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "common/status.h"

namespace CLI {
class App;
}

namespace ablate {

grpc::Status ToGrpc(const Status& status);
Status FromGrpc(const grpc::Status& status);

// True for the errors a retry can outlive (UNAVAILABLE, DEADLINE_EXCEEDED,
// RESOURCE_EXHAUSTED).
bool IsTransient(const Status& status);

// How a client reaches the coordinator.
struct ClientOptions {
  std::string address;  // HOST:PORT
};

// A channel to options.address.
std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options);

// Registers the flags every client of the coordinator takes on `app`:
// --coordinator HOST:PORT (or $ABLATE_COORDINATOR).
void AddClientFlags(CLI::App* app, ClientOptions* options);

}  // namespace ablate

#endif  // ABLATE_PROTO_RPC_H_
