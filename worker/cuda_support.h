// What the trainer needs of CUDA beyond LibTorch's portable API, declared in
// every build. A build against a CUDA LibTorch with nvcc (ABLATE_CUDA)
// defines it in worker/cuda/; any other build in cuda_unavailable.cc, where
// CudaKernelsBuilt() is false, DescribeDevice names the device alone and the
// rest fail with a message that says so.
#ifndef ABLATE_WORKER_CUDA_SUPPORT_H_
#define ABLATE_WORKER_CUDA_SUPPORT_H_

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

namespace ablate {

class RecurrenceDevice;

// Whether this build has the fused CUDA kernels.
bool CudaKernelsBuilt();

// The fused recurrence on the current CUDA device and stream, with the
// current cuBLAS handle. Throws c10::Error in a build without the kernels.
std::unique_ptr<RecurrenceDevice> MakeCudaRecurrenceDevice();

// "cpu", or a GPU with its name where the build can ask for it:
// "cuda:0 (NVIDIA H100 80GB HBM3)".
std::string DescribeDevice(const torch::Device& device);

// A trainer's place on one GPU: a stream of its own, on which all its work
// runs (a CUDA graph cannot capture the default stream), and the graphs it
// captured. Not thread-safe.
class CudaRunner {
 public:
  // Throws c10::Error in a build without CUDA or for a device that is not
  // CUDA.
  static std::unique_ptr<CudaRunner> Create(const torch::Device& device);
  virtual ~CudaRunner() = default;

  // Runs `work` on this runner's stream, ordered after what the caller's
  // stream had queued and before what it queues next (so tensors pass freely
  // between the two). Calls may nest.
  virtual void Run(const std::function<void()>& work) = 0;
  // Captures `work` on this runner's stream as a CUDA graph: nothing runs
  // now; Replay(id) runs it, reading and writing the very tensors `work`
  // used. Tensors `work` allocates live in the graph's memory pool for as
  // long as the runner. `work` must not synchronise with the host.
  virtual int Capture(const std::function<void()>& work) = 0;
  virtual void Replay(int graph) = 0;
  // Blocks until everything queued has run.
  virtual void Synchronize() = 0;
  // Hands the allocator's cached, unused blocks back to the driver.
  virtual void ReleaseCachedMemory() = 0;

  // The most memory LibTorch's allocator held in tensors on this device
  // since the last ResetPeak, in bytes.
  virtual int64_t PeakAllocatedBytes() = 0;
  virtual void ResetPeak() = 0;
};

}  // namespace ablate

#endif  // ABLATE_WORKER_CUDA_SUPPORT_H_
