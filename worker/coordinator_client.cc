#include "worker/coordinator_client.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/config_hash.h"
#include "worker/text8.h"

namespace ablate {

namespace {

constexpr auto kUnaryDeadline = std::chrono::seconds(10);
constexpr auto kStreamDeadline = std::chrono::minutes(30);
constexpr size_t kChunkBytes = 1 << 20;

// Unary calls wait for the coordinator to be reachable, up to their deadline,
// instead of failing at once: a call in flight is what makes gRPC notice a
// restarted coordinator at once (between calls only its 5 s backup poller
// looks), so fail-fast calls retried with backoff would find it seconds late,
// possibly after the leases it renewed at start lapsed again. Streams fail
// fast and are retried; the heartbeats running beside them keep the channel
// watched.
// CapDeadlines's cap, nanoseconds of CLOCK_REALTIME; 0 for none.
std::atomic<int64_t> g_deadline_cap_ns{0};
static_assert(std::atomic<int64_t>::is_always_lock_free, "CapDeadlines runs in signal handlers");

std::chrono::system_clock::time_point Deadline(std::chrono::system_clock::duration timeout) {
  auto deadline = std::chrono::system_clock::now() + timeout;
  if (const int64_t cap = g_deadline_cap_ns.load(); cap != 0) {
    deadline = std::min(deadline, std::chrono::system_clock::time_point(
                                      std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                          std::chrono::nanoseconds(cap))));
  }
  return deadline;
}

void SetDeadline(grpc::ClientContext* context, std::chrono::seconds timeout) {
  context->set_wait_for_ready(true);
  context->set_deadline(Deadline(timeout));
}

int64_t RealtimeNs() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
}

// Every call in flight, for CancelCallsPastCap: a call started before the
// cap keeps the deadline it started with.
std::mutex g_calls_mu;
std::set<grpc::ClientContext*>& Calls() {
  static auto* calls = new std::set<grpc::ClientContext*>;
  return *calls;
}

// Registers a call's context for as long as the call runs.
class InFlight {
 public:
  explicit InFlight(grpc::ClientContext* context) : context_(context) {
    std::lock_guard<std::mutex> lock(g_calls_mu);
    Calls().insert(context_);
  }
  ~InFlight() {
    std::lock_guard<std::mutex> lock(g_calls_mu);
    Calls().erase(context_);
  }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

  // The call's status; one CancelCallsPastCap ended reads as the deadline
  // it is (transient: the caller treats it as a coordinator still away).
  Status Finish(const grpc::Status& status) const {
    if (status.error_code() == grpc::StatusCode::CANCELLED) {
      const int64_t cap = g_deadline_cap_ns.load();
      if (cap != 0 && RealtimeNs() >= cap) {
        return Status::DeadlineExceeded("the worker's stop grace ran out");
      }
    }
    return FromGrpc(status);
  }

 private:
  grpc::ClientContext* const context_;
};

}  // namespace

void CoordinatorClient::CapDeadlines(double seconds_from_now) {
  g_deadline_cap_ns.store(RealtimeNs() + static_cast<int64_t>(seconds_from_now * 1e9));
}

int CoordinatorClient::CancelCallsPastCap() {
  const int64_t cap = g_deadline_cap_ns.load();
  if (cap == 0 || RealtimeNs() < cap) return 0;
  std::lock_guard<std::mutex> lock(g_calls_mu);
  // TryCancel on a context whose call has not started yet cancels the call
  // when it starts.
  for (grpc::ClientContext* context : Calls()) context->TryCancel();
  return static_cast<int>(Calls().size());
}

CoordinatorClient::CoordinatorClient(std::shared_ptr<grpc::Channel> channel)
    : stub_(v1::Coordinator::NewStub(std::move(channel))) {}

Status CoordinatorClient::Register(const v1::RegisterWorkerRequest& request,
                                   v1::RegisterWorkerResponse* response) {
  grpc::ClientContext context;
  InFlight in_flight(&context);
  SetDeadline(&context, kUnaryDeadline);
  return in_flight.Finish(stub_->RegisterWorker(&context, request, response));
}

Status CoordinatorClient::Lease(int64_t worker_id, v1::LeaseJobResponse* response) {
  grpc::ClientContext context;
  InFlight in_flight(&context);
  SetDeadline(&context, kUnaryDeadline);
  v1::LeaseJobRequest request;
  request.set_worker_id(worker_id);
  return in_flight.Finish(stub_->LeaseJob(&context, request, response));
}

Status CoordinatorClient::Heartbeat(const v1::HeartbeatRequest& request,
                                    v1::HeartbeatResponse* response) {
  grpc::ClientContext context;
  InFlight in_flight(&context);
  SetDeadline(&context, kUnaryDeadline);
  return in_flight.Finish(stub_->Heartbeat(&context, request, response));
}

Status CoordinatorClient::ReportPoints(const v1::ReportPointsRequest& request) {
  grpc::ClientContext context;
  InFlight in_flight(&context);
  SetDeadline(&context, kUnaryDeadline);
  v1::ReportPointsResponse response;
  return in_flight.Finish(stub_->ReportPoints(&context, request, &response));
}

Status CoordinatorClient::Complete(const v1::CompleteJobRequest& request) {
  grpc::ClientContext context;
  InFlight in_flight(&context);
  SetDeadline(&context, kUnaryDeadline);
  v1::CompleteJobResponse response;
  return in_flight.Finish(stub_->CompleteJob(&context, request, &response));
}

Status CoordinatorClient::Fail(const v1::FailJobRequest& request, v1::FailJobResponse* response) {
  grpc::ClientContext context;
  InFlight in_flight(&context);
  SetDeadline(&context, kUnaryDeadline);
  return in_flight.Finish(stub_->FailJob(&context, request, response));
}

Status CoordinatorClient::Release(const v1::ReleaseJobRequest& request) {
  grpc::ClientContext context;
  InFlight in_flight(&context);
  SetDeadline(&context, kUnaryDeadline);
  v1::ReleaseJobResponse response;
  return in_flight.Finish(stub_->ReleaseJob(&context, request, &response));
}

Status CoordinatorClient::UploadCheckpoint(int64_t job_id, int64_t lease_token, int64_t step,
                                           const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("checkpoint " + path + " cannot be read");
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  grpc::ClientContext context;
  InFlight in_flight(&context);
  context.set_deadline(Deadline(kStreamDeadline));
  v1::UploadCheckpointResponse response;
  auto writer = stub_->UploadCheckpoint(&context, &response);
  v1::UploadCheckpointRequest first;
  first.set_job_id(job_id);
  first.set_lease_token(lease_token);
  first.mutable_info()->set_step(step);
  first.mutable_info()->set_total_bytes(static_cast<int64_t>(data.size()));
  first.mutable_info()->set_sha256_hex(Sha256Hex(data));
  bool ok = writer->Write(first);
  for (size_t offset = 0; ok && offset < data.size(); offset += kChunkBytes) {
    v1::UploadCheckpointRequest chunk;
    chunk.set_chunk(data.substr(offset, kChunkBytes));
    ok = writer->Write(chunk);
  }
  writer->WritesDone();
  return in_flight.Finish(writer->Finish());
}

StatusOr<int64_t> CoordinatorClient::DownloadCheckpoint(int64_t job_id, int64_t lease_token,
                                                        const std::string& path) {
  grpc::ClientContext context;
  InFlight in_flight(&context);
  context.set_deadline(Deadline(kStreamDeadline));
  v1::DownloadCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_lease_token(lease_token);
  auto reader = stub_->DownloadCheckpoint(&context, request);
  v1::DownloadCheckpointResponse message;
  v1::CheckpointInfo info;
  std::string data;
  bool first = true;
  while (reader->Read(&message)) {
    if (first) info = message.info();
    first = false;
    data += message.chunk();
  }
  ABLATE_RETURN_IF_ERROR(in_flight.Finish(reader->Finish()));
  if (first) return Status::DataLoss("checkpoint download of job " + std::to_string(job_id) +
                                     " ended before its first message");
  if (static_cast<int64_t>(data.size()) != info.total_bytes() ||
      Sha256Hex(data) != info.sha256_hex()) {
    return Status::DataLoss("checkpoint download of job " + std::to_string(job_id) +
                            " does not match its size or SHA-256");
  }
  ABLATE_ASSIGN_OR_RETURN(text8::AtomicFile file, text8::AtomicFile::Create(path));
  ABLATE_RETURN_IF_ERROR(file.Append(data));
  ABLATE_RETURN_IF_ERROR(file.Commit());
  return info.step();
}

Status CoordinatorClient::CallWithRetry(const std::function<Status()>& call,
                                        const std::function<bool()>& keep_trying) {
  thread_local std::mt19937 rng{std::random_device{}()};
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    Status status = call();
    if (!IsTransient(status) || !keep_trying()) return status;
    std::uniform_int_distribution<int> jitter(0, static_cast<int>(backoff.count() / 2));
    std::this_thread::sleep_for(backoff + std::chrono::milliseconds(jitter(rng)));
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
  }
}

}  // namespace ablate
