// One worker process per GPU. `ablate-worker --gpus all` (or `--gpus 0,2`)
// becomes a small supervisor: it starts one child ablate-worker per GPU with
// the same flags, each pinned to its GPU and named NAME/gpuI; forwards
// SIGTERM and SIGINT to them, so each checkpoints and releases its job;
// restarts a child that crashes, with backoff, a bounded number of times in
// a row; and exits once every child has exited (with --exit-when-idle, when
// the sweeps are done). Each child's output lines reach the supervisor's
// stderr prefixed with "[gpuI] ".
//
// `--jobs-per-gpu N` starts N such children per GPU instead, named
// NAME/gpuI.0 ... NAME/gpuI.(N-1): a small model leaves most of a GPU idle,
// and N independent workers, each leasing its own jobs, fill it.
//
// A child is pinned with CUDA_VISIBLE_DEVICES=<its GPU> and --device cuda:0,
// not with --device cuda:I: a process that sees every GPU can still create a
// CUDA context on GPU 0 (hundreds of MiB there per worker), and one that sees
// a single GPU cannot touch another worker's. The GPU is named as the
// supervisor's own CUDA_VISIBLE_DEVICES names it (index, UUID or MIG id), so
// the allocations of Slurm, Kubernetes' device plugin or `docker --gpus` are
// kept.
//
// Processes, not threads: a crashed or wedged CUDA context takes down its own
// worker only.
#ifndef ABLATE_WORKER_GPU_SUPERVISOR_H_
#define ABLATE_WORKER_GPU_SUPERVISOR_H_

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace ablate {

// One child of the supervisor.
struct WorkerSlot {
  std::string label;                       // "gpu2": named NAME/gpu2, lines prefixed [gpu2]
                                           // ("gpu2.1" for one of several on GPU 2)
  std::string device;                      // its --device
  std::map<std::string, std::string> env;  // set in its environment
};

// What CUDA index `index` names to a child: the index itself when
// `visible_devices` ($CUDA_VISIBLE_DEVICES) is nullptr, else its index-th
// entry, trimmed; nullopt when there is no such entry.
std::optional<std::string> VisibleGpu(const char* visible_devices, int index);

// The slots for `--gpus spec` ("all", or distinct indices such as "0,2") on a
// machine where CUDA sees `device_count` GPUs. `visible_devices` is
// $CUDA_VISIBLE_DEVICES (nullptr when unset): CUDA index i is its i-th entry.
// InvalidArgument for a malformed spec, an index that is not visible, or no
// GPU at all.
StatusOr<std::vector<WorkerSlot>> ResolveGpuSlots(const std::string& spec, int device_count,
                                                  const char* visible_devices);

// The most worker processes that may share one GPU.
inline constexpr int kMaxJobsPerGpu = 64;

// The value of `--jobs-per-gpu text`, which `with_gpus` says came with
// --gpus. InvalidArgument, naming the flag and the value, for anything but a
// whole number from 1 to kMaxJobsPerGpu, or for any value without --gpus.
StatusOr<int> ParseJobsPerGpu(const std::string& text, bool with_gpus);

// `gpu_slots` (one per GPU) with each slot repeated `jobs_per_gpu` times, in
// order: the copies of gpuI are labelled gpuI.0, gpuI.1 ... and keep its
// device and environment. With one job per GPU the slots are returned as
// they are, labels included. `jobs_per_gpu` is from 1 to kMaxJobsPerGpu.
std::vector<WorkerSlot> SharedGpuSlots(const std::vector<WorkerSlot>& gpu_slots, int jobs_per_gpu);

// `args` less every occurrence of the options named in `options` with their
// values, in either form: "--opt value" or "--opt=value".
std::vector<std::string> WithoutOptions(const std::vector<std::string>& args,
                                        const std::vector<std::string>& options);

struct SupervisorOptions {
  std::string program;            // what each child executes
  std::vector<std::string> args;  // the flags every child gets, before its own
  std::string name;               // each child gets --name NAME/LABEL --device DEVICE
  std::vector<WorkerSlot> slots;  // one child each
  // A child that exits non-zero, or dies of a signal the supervisor did not
  // forward, is started again after a backoff that doubles from
  // `first_backoff` up to `max_backoff`; after `max_restarts` crashes in a
  // row it stays down. A run that lasted `stable_after` ends the row.
  int max_restarts = 5;
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds stable_after{std::chrono::minutes(10)};
};

// Runs the children until every one has exited and will not be restarted.
// Returns 0 when each child's last exit was clean (code 0), else 1. Blocks
// SIGTERM, SIGINT and SIGCHLD in the calling thread and leaves them blocked:
// call it from main() before other threads start, and use the process for
// nothing else afterwards.
int RunSupervisor(const SupervisorOptions& options);

// `ablate-worker --gpus spec --jobs-per-gpu jobs_per_gpu`: resolves the spec
// against the GPUs this LibTorch sees and supervises `jobs_per_gpu` children
// per GPU running this same binary with `argv` less --gpus, --jobs-per-gpu
// and --name. The children are named `name`/LABEL (SharedGpuSlots; `name`
// empty: HOST-PID of the supervisor). Returns the exit code.
int RunGpuWorkers(const std::string& spec, int jobs_per_gpu, const std::string& name, int argc,
                  char** argv);

}  // namespace ablate

#endif  // ABLATE_WORKER_GPU_SUPERVISOR_H_
