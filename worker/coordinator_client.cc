#include "worker/coordinator_client.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/file.h"
#include "common/config_hash.h"
#include "data/text8.h"

namespace ablate {

namespace {

constexpr auto kUnaryDeadline = std::chrono::seconds(10);
constexpr auto kStreamDeadline = std::chrono::minutes(30);
constexpr size_t kChunkBytes = 1 << 20;

// CapDeadlines's cap, nanoseconds of CLOCK_REALTIME; 0 for none.
std::atomic<int64_t> g_deadline_cap_ns{0};
static_assert(std::atomic<int64_t>::is_always_lock_free, "CapDeadlines runs in signal handlers");

int64_t RealtimeNs() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
}

std::chrono::system_clock::time_point Deadline(std::chrono::system_clock::duration timeout) {
  auto deadline = std::chrono::system_clock::now() + timeout;
  if (const int64_t cap = g_deadline_cap_ns.load(); cap != 0) {
    deadline = std::min(deadline, std::chrono::system_clock::time_point(
                                      std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                          std::chrono::nanoseconds(cap))));
  }
  return deadline;
}

// Every call in flight, for CancelCallsPastCap: a call started before the
// cap keeps the deadline it started with.
std::mutex g_calls_mu;
std::set<grpc::ClientContext*>& Calls() {
  static auto* calls = new std::set<grpc::ClientContext*>;
  return *calls;
}

// One call's context, with its deadline (capped by CapDeadlines), listed
// among the calls in flight for as long as the call runs.
//
// Unary calls wait for the coordinator to be reachable, up to their deadline,
// instead of failing at once: a call in flight is what makes gRPC notice a
// restarted coordinator at once (between calls only its 5 s backup poller
// looks), so fail-fast calls retried with backoff would find it seconds late,
// possibly after the leases it renewed at start lapsed again. Streams fail
// fast and are retried; the heartbeats running beside them keep the channel
// watched.
class Call {
 public:
  enum Kind { kUnary, kStream };

  explicit Call(Kind kind) {
    if (kind == kUnary) context_.set_wait_for_ready(true);
    context_.set_deadline(Deadline(kind == kUnary ? kUnaryDeadline : kStreamDeadline));
    std::lock_guard<std::mutex> lock(g_calls_mu);
    Calls().insert(&context_);
  }
  ~Call() {
    std::lock_guard<std::mutex> lock(g_calls_mu);
    Calls().erase(&context_);
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  grpc::ClientContext* context() { return &context_; }

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
  grpc::ClientContext context_;
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
  Call call(Call::kUnary);
  return call.Finish(stub_->RegisterWorker(call.context(), request, response));
}

Status CoordinatorClient::Lease(int64_t worker_id, v1::LeaseJobResponse* response) {
  Call call(Call::kUnary);
  v1::LeaseJobRequest request;
  request.set_worker_id(worker_id);
  return call.Finish(stub_->LeaseJob(call.context(), request, response));
}

Status CoordinatorClient::Heartbeat(const v1::HeartbeatRequest& request,
                                    v1::HeartbeatResponse* response) {
  Call call(Call::kUnary);
  return call.Finish(stub_->Heartbeat(call.context(), request, response));
}

Status CoordinatorClient::ReportPoints(const v1::ReportPointsRequest& request) {
  Call call(Call::kUnary);
  v1::ReportPointsResponse response;
  return call.Finish(stub_->ReportPoints(call.context(), request, &response));
}

Status CoordinatorClient::Complete(const v1::CompleteJobRequest& request) {
  Call call(Call::kUnary);
  v1::CompleteJobResponse response;
  return call.Finish(stub_->CompleteJob(call.context(), request, &response));
}

Status CoordinatorClient::Fail(const v1::FailJobRequest& request, v1::FailJobResponse* response) {
  Call call(Call::kUnary);
  return call.Finish(stub_->FailJob(call.context(), request, response));
}

Status CoordinatorClient::Release(const v1::ReleaseJobRequest& request) {
  Call call(Call::kUnary);
  v1::ReleaseJobResponse response;
  return call.Finish(stub_->ReleaseJob(call.context(), request, &response));
}

Status CoordinatorClient::UploadCheckpoint(int64_t job_id, int64_t lease_token, int64_t step,
                                           const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("checkpoint " + path + " cannot be read");
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Call call(Call::kStream);
  v1::UploadCheckpointResponse response;
  auto writer = stub_->UploadCheckpoint(call.context(), &response);
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
  return call.Finish(writer->Finish());
}

StatusOr<int64_t> CoordinatorClient::DownloadCheckpoint(int64_t job_id, int64_t lease_token,
                                                        const std::string& path) {
  Call call(Call::kStream);
  v1::DownloadCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_lease_token(lease_token);
  auto reader = stub_->DownloadCheckpoint(call.context(), request);
  v1::DownloadCheckpointResponse message;
  v1::CheckpointInfo info;
  std::string data;
  bool first = true;
  while (reader->Read(&message)) {
    if (first) info = message.info();
    first = false;
    data += message.chunk();
  }
  ABLATE_RETURN_IF_ERROR(call.Finish(reader->Finish()));
  if (first) return Status::DataLoss("checkpoint download of job " + std::to_string(job_id) +
                                     " ended before its first message");
  if (static_cast<int64_t>(data.size()) != info.total_bytes() ||
      Sha256Hex(data) != info.sha256_hex()) {
    return Status::DataLoss("checkpoint download of job " + std::to_string(job_id) +
                            " does not match its size or SHA-256");
  }
  ABLATE_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
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
