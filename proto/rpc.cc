#include "proto/rpc.h"

#include <CLI/CLI.hpp>

namespace ablate {

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return Status::OK();
  return Status(static_cast<Status::Code>(status.error_code()), status.error_message());
}

bool IsTransient(const Status& status) {
  return status.code() == Status::kUnavailable || status.code() == Status::kDeadlineExceeded ||
         status.code() == Status::kResourceExhausted;
}

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  return grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials());
}

void AddClientFlags(CLI::App* app, ClientOptions* options) {
  app->add_option("--coordinator", options->address, "Coordinator address HOST:PORT")
      ->envname("ABLATE_COORDINATOR");
}

}  // namespace ablate
