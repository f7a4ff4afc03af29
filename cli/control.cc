// `ablate cancel` and `ablate retry`: change the state of a sweep's jobs or
// of one job, through the coordinator (a database file is only ever read).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/source.h"

namespace ablate {

namespace {

struct ControlOptions {
  std::string sweep;
  int64_t job_id = 0;
  ClientOptions client;
};

// What a cancel or a retry request targets, and its name in messages.
template <typename Request>
StatusOr<std::string> SetTarget(const ControlOptions& options, Source* source, Request* request) {
  if (options.sweep.empty() == (options.job_id == 0)) {
    return Status::InvalidArgument("name a SWEEP (name or id) or give --job ID, one of them");
  }
  if (options.job_id != 0) {
    request->set_job_id(options.job_id);
    return "job " + std::to_string(options.job_id);
  }
  ABLATE_ASSIGN_OR_RETURN(int64_t id, source->ResolveSweep(options.sweep));
  request->mutable_sweep()->set_id(id);
  return "sweep " + std::to_string(id) + " ('" + options.sweep + "')";
}

int RunCancel(const ControlOptions& options) {
  StatusOr<std::unique_ptr<SweepsClient>> client = SweepsClient::Connect(options.client);
  if (!client.ok()) return ReportError("cancel", client.status());
  std::shared_ptr<SweepsClient> coordinator = std::move(client).value();
  v1::CancelRequest request;
  auto target = SetTarget(options, Source::Over(coordinator).get(), &request);
  if (!target.ok()) return ReportError("cancel", target.status());
  v1::CancelResponse response;
  Status cancelled = coordinator->Cancel(request, &response);
  if (!cancelled.ok()) return ReportError("cancel", cancelled);
  std::printf("%s: %lld job%s cancelled\n", target->c_str(),
              static_cast<long long>(response.jobs_cancelled()),
              response.jobs_cancelled() == 1 ? "" : "s");
  return 0;
}

int RunRetry(const ControlOptions& options) {
  StatusOr<std::unique_ptr<SweepsClient>> client = SweepsClient::Connect(options.client);
  if (!client.ok()) return ReportError("retry", client.status());
  std::shared_ptr<SweepsClient> coordinator = std::move(client).value();
  v1::RetryRequest request;
  auto target = SetTarget(options, Source::Over(coordinator).get(), &request);
  if (!target.ok()) return ReportError("retry", target.status());
  v1::RetryResponse response;
  Status retried = coordinator->Retry(request, &response);
  if (!retried.ok()) return ReportError("retry", retried);
  std::printf("%s: %lld job%s pending again\n", target->c_str(),
              static_cast<long long>(response.jobs_retried()),
              response.jobs_retried() == 1 ? "" : "s");
  return 0;
}

void AddTargetFlags(CLI::App* cmd, ControlOptions* options) {
  cmd->add_option("sweep", options->sweep, "Sweep name (the newest of that name) or id");
  cmd->add_option("--job", options->job_id, "One job, by id")->check(CLI::PositiveNumber);
  AddClientFlags(cmd, &options->client);
}

}  // namespace

void AddCancelCommand(CLI::App* app) {
  auto options = std::make_shared<ControlOptions>();
  CLI::App* cmd = app->add_subcommand(
      "cancel", "Cancel a sweep's pending and running jobs, or one job (workers stop it)");
  AddTargetFlags(cmd, options.get());
  cmd->callback([options] { FinishCommand(RunCancel(*options)); });
}

void AddRetryCommand(CLI::App* app) {
  auto options = std::make_shared<ControlOptions>();
  CLI::App* cmd = app->add_subcommand(
      "retry", "Make a sweep's failed and cancelled jobs, or one job, pending again");
  AddTargetFlags(cmd, options.get());
  cmd->callback([options] { FinishCommand(RunRetry(*options)); });
}

}  // namespace ablate
