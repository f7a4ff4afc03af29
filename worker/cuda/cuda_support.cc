// cuda_support.h in a build with the CUDA kernels.
#include "worker/cuda_support.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <vector>

#include "worker/cuda/launch.h"
#include "worker/recurrence_device.h"

namespace ablate {

namespace {

// A launch reports the first error the device has not yet reported, which
// may come from earlier work.
void Check(cudaError_t error, const char* kernel) {
  TORCH_CHECK(error == cudaSuccess, "CUDA error at the launch of ", kernel, ": ",
              cudaGetErrorString(error));
}

// Sets whether LibTorch's float products may use TF32, and puts it back.
class Tf32Scope {
 public:
  explicit Tf32Scope(bool allowed) : saved_(at::globalContext().allowTF32CuBLAS()) {
    at::globalContext().setAllowTF32CuBLAS(allowed);
  }
  ~Tf32Scope() { at::globalContext().setAllowTF32CuBLAS(saved_); }

 private:
  bool saved_;
};

class CudaRecurrenceDevice : public RecurrenceDevice {
 public:
  CudaRecurrenceDevice()
      : device_(torch::kCUDA, c10::cuda::current_device()),
        stream_(at::cuda::getCurrentCUDAStream()) {}

  // Through LibTorch, so that the products use its cuBLAS, handles and
  // workspaces (which graph capture needs set up its way): one cuBLAS call
  // each, on the views of the operands.
  void Gemm(const device::RowMajorGemm& gemm) override {
    GemmViews v = ViewsOf(gemm, device_);
    if (gemm.inputs == device::GemmInputs::kBf16) {
      if (gemm.beta == 0.f) {
        at::mm_out(v.out, v.a, v.b, torch::kFloat);
      } else {
        at::addmm_out(v.out, v.out, v.a, v.b, torch::kFloat, gemm.beta);
      }
      return;
    }
    Tf32Scope tf32(gemm.inputs == device::GemmInputs::kTf32);
    if (gemm.beta == 0.f) {
      at::mm_out(v.out, v.a, v.b);
    } else {
      at::addmm_out(v.out, v.out, v.a, v.b, gemm.beta);
    }
  }
  void Run(const device::GatedGatesForward& a) override {
    Check(cuda::Launch(a, stream_), "GatedGatesForward");
  }
  void Run(const device::GatedCandidateForward& a) override {
    Check(cuda::Launch(a, stream_), "GatedCandidateForward");
  }
  void Run(const device::GatedCandidateBackward& a) override {
    Check(cuda::Launch(a, stream_), "GatedCandidateBackward");
  }
  void Run(const device::GatedGatesBackward& a) override {
    Check(cuda::Launch(a, stream_), "GatedGatesBackward");
  }
  void Run(const device::LstmForward& a) override {
    Check(cuda::Launch(a, stream_), "LstmForward");
  }
  void Run(const device::LstmBackward& a) override {
    Check(cuda::Launch(a, stream_), "LstmBackward");
  }
  void Run(const device::ColumnPartialSums& a) override {
    Check(cuda::Launch(a, stream_), "ColumnPartialSums");
  }
  void Run(const device::ColumnFinalSums& a) override {
    Check(cuda::Launch(a, stream_), "ColumnFinalSums");
  }
  void Run(const device::TableGradient& a) override {
    Check(cuda::Launch(a, stream_), "TableGradient");
  }

 private:
  torch::Device device_;
  cudaStream_t stream_;
};

class CudaRunnerImpl : public CudaRunner {
 public:
  explicit CudaRunnerImpl(const torch::Device& device)
      : index_(device.index() < 0 ? c10::cuda::current_device() : device.index()),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, index_)) {}

  void Run(const std::function<void()>& work) override {
    OnStream([&] { work(); });
  }

  int Capture(const std::function<void()>& work) override {
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    OnStream([&] { CaptureInto(*graph, work); });
    graphs_.push_back(std::move(graph));
    return static_cast<int>(graphs_.size()) - 1;
  }

  void Replay(int graph) override {
    TORCH_CHECK(graph >= 0 && graph < static_cast<int>(graphs_.size()), "no graph ", graph);
    OnStream([&] { graphs_[graph]->replay(); });
  }

  void Synchronize() override { stream_.synchronize(); }

  void ReleaseCachedMemory() override { c10::cuda::CUDACachingAllocator::emptyCache(); }

  int64_t PeakAllocatedBytes() override {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index_);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
        .peak;
  }

  void ResetPeak() override { c10::cuda::CUDACachingAllocator::resetPeakStats(index_); }

 private:
  // Runs `work` with this runner's stream current. The outermost call makes
  // the stream wait for the caller's and the caller's for the stream, with
  // events: both stay asynchronous to the host.
  template <typename Work>
  void OnStream(const Work& work) {
    if (depth_ > 0) {
      Nested nested(&depth_);
      work();
      return;
    }
    const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(index_);
    at::cuda::CUDAEvent before;
    before.record(caller);
    before.block(stream_);
    {
      c10::cuda::CUDAStreamGuard guard(stream_);
      Nested nested(&depth_);
      work();
    }
    at::cuda::CUDAEvent after;
    after.record(stream_);
    after.block(caller);
  }

  struct Nested {
    explicit Nested(int* depth) : depth(depth) { ++*depth; }
    ~Nested() { --*depth; }
    int* depth;
  };

  static void CaptureInto(at::cuda::CUDAGraph& graph, const std::function<void()>& work) {
    graph.capture_begin();
    try {
      work();
    } catch (...) {
      // End the capture so that the stream is usable again; the graph is
      // discarded with the exception.
      try {
        graph.capture_end();
      } catch (...) {
      }
      throw;
    }
    graph.capture_end();
  }

  c10::DeviceIndex index_;
  int depth_ = 0;
  c10::cuda::CUDAStream stream_;
  std::vector<std::unique_ptr<at::cuda::CUDAGraph>> graphs_;
};

}  // namespace

bool CudaKernelsBuilt() { return true; }

std::unique_ptr<RecurrenceDevice> MakeCudaRecurrenceDevice() {
  return std::make_unique<CudaRecurrenceDevice>();
}

std::string DescribeDevice(const torch::Device& device) {
  if (!device.is_cuda() || !torch::cuda::is_available()) return device.str();
  const c10::DeviceIndex index = device.index() < 0 ? c10::cuda::current_device() : device.index();
  return device.str() + " (" + at::cuda::getDeviceProperties(index)->name + ")";
}

std::unique_ptr<CudaRunner> CudaRunner::Create(const torch::Device& device) {
  TORCH_CHECK(device.is_cuda(), "a CUDA runner needs a CUDA device, not ", device.str());
  return std::make_unique<CudaRunnerImpl>(device);
}

}  // namespace ablate
