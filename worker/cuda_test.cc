// The trainer on a GPU computes what it computes on the CPU. Needs CUDA: on a
// machine without a GPU the tests skip, unless ABLATE_REQUIRE_CUDA=1 (set by
// scripts/gpu-check.sh), which turns a missing GPU into a failure.
//
// ABLATE_TEST_CORPUS may name a text8-format file of real text for the
// precision comparison (gpu-check.sh stages one); without it the test writes
// one from a paragraph of English.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/temp_dir.h"
#include "data/text8.h"
#include "worker/cell_problem_test_util.h"
#include "worker/cuda_support.h"
#include "worker/model.h"
#include "worker/trainer.h"

namespace ablate {
namespace {

bool NeedCuda() {
  if (torch::cuda::is_available()) return true;
  const char* required = std::getenv("ABLATE_REQUIRE_CUDA");
  if (required && std::string(required) == "1") {
    ADD_FAILURE() << "ABLATE_REQUIRE_CUDA=1 but LibTorch sees no GPU";
  }
  return false;
}

class CudaCell : public testing::TestWithParam<CellCase> {};

TEST_P(CudaCell, FusedKernelsMatchTheCpuOnTheSameWeightsAndData) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  ASSERT_TRUE(CudaKernelsBuilt());
  Problem cpu(GetParam());
  Problem gpu(GetParam(), torch::kCUDA);
  const Outcome fused = cpu.Train(Kernel::kFused);
  {
    SCOPED_TRACE("the CUDA kernels in fp32 against the CPU's fused kernels");
    ExpectClose(gpu.Train(Kernel::kCuda, Precision::kFp32), fused, 1e-4);
  }
  {
    SCOPED_TRACE("the CUDA kernels against their own code run on the CPU");
    ExpectClose(gpu.Train(Kernel::kCuda, Precision::kFp32), cpu.Train(Kernel::kCudaOnCpu), 1e-4);
  }
  {
    SCOPED_TRACE("the reference path on the GPU");
    ExpectClose(gpu.Train(Kernel::kReference, Precision::kFp32), fused, 1e-4);
  }
}

TEST_P(CudaCell, Tf32AndBf16ProductsStayCloseToFp32) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  Problem gpu(GetParam(), torch::kCUDA);
  const Outcome fp32 = gpu.Train(Kernel::kCuda, Precision::kFp32);
  {
    SCOPED_TRACE("tf32");
    ExpectClose(gpu.Train(Kernel::kCuda, Precision::kTf32), fp32, 2e-2);
  }
  const Outcome bf16 = gpu.Train(Kernel::kCuda, Precision::kBf16);
  EXPECT_NEAR(bf16.loss, fp32.loss, 1e-2 * std::abs(fp32.loss));
  EXPECT_LT(RelativeError(bf16.logits, fp32.logits), 2e-2);
  EXPECT_LT(RelativeError(bf16.grads, fp32.grads), 5e-2);
}

TEST_P(CudaCell, RepeatsBitForBit) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  Problem gpu(GetParam(), torch::kCUDA);
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kBf16}) {
    SCOPED_TRACE(PrecisionName(p));
    ExpectSameBits(gpu.Train(Kernel::kCuda, p), gpu.Train(Kernel::kCuda, p));
  }
}

// Sizes where the kernels' loops wrap: rows longer than a block's threads,
// more rows than one chunk of the column reductions, symbols that never
// occur in a vocabulary of 256.
TEST_P(CudaCell, FusedKernelsMatchTheCpuAtLargerSizes) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  Problem cpu(GetParam(), torch::kCPU, /*hidden=*/300, /*vocab=*/256, /*steps=*/37, /*batch=*/9);
  Problem gpu(GetParam(), torch::kCUDA, 300, 256, 37, 9);
  ExpectClose(gpu.Train(Kernel::kCuda, Precision::kFp32), cpu.Train(Kernel::kFused), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(AllCells, CudaCell, testing::ValuesIn(kAllCells), CaseName);

class CudaTrainer : public testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.empty()) << "no temporary directory"; }

  std::string Corpus(int repeats = 200) {
    const std::string path = (dir_ / "corpus").string();
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < repeats; ++i) {
      out << text8::Clean(
          "Layer norm both speeds up training and results in better performance. The gated "
          "recurrent unit with layer norm and xavier initialization did best of all. ");
    }
    return path;
  }

  static RunConfig Small(const std::string& corpus) {
    RunConfig config;
    config.data.path = corpus;
    config.model.hidden = 48;
    config.model.vocab = 27;
    config.train.batch = 4;
    config.train.seq = 32;
    config.train.steps = 16;
    config.train.log_every = 3;
    config.train.eval_every = 5;
    config.train.precision = Precision::kFp32;
    return config;
  }

  static std::unique_ptr<Trainer> Make(const RunConfig& config, const std::string& device,
                                       bool graphs = true) {
    TrainerOptions options;
    options.device = device;
    options.cuda_graphs = graphs;
    auto trainer = Trainer::Create(config, options);
    EXPECT_TRUE(trainer.ok()) << trainer.status().ToString();
    return trainer.ok() ? std::move(trainer).value() : nullptr;
  }

  TempDir temp_{"ablate-cuda-test"};
  std::filesystem::path dir_ = temp_.path();
};

struct Recorder : TrainerListener {
  void OnPoint(const CurvePoint& p) override { points.push_back(p); }
  void OnProgress(const Progress& p) override { step = p.step; }
  bool ShouldStop() override { return stop_at >= 0 && step >= stop_at; }
  std::vector<CurvePoint> points;
  int64_t stop_at = -1, step = 0;
};

TEST_F(CudaTrainer, TrainsLikeTheCpuTrainerStepForStep) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  const RunConfig config = Small(Corpus());
  auto cpu = Make(config, "cpu");
  auto gpu = Make(config, "cuda");
  ASSERT_TRUE(cpu && gpu);
  EXPECT_EQ(gpu->kernel(), Kernel::kCuda);
  for (int i = 0; i < 8; ++i) {
    EXPECT_NEAR(cpu->TrainStep().item<double>(), gpu->TrainStep().item<double>(), 2e-4)
        << "step " << i;
  }
  EXPECT_NEAR(cpu->Evaluate(Split::kValid), gpu->Evaluate(Split::kValid), 2e-4);
}

TEST_F(CudaTrainer, CapturedStepsComputeWhatEagerLaunchesDo) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  const RunConfig config = Small(Corpus());
  auto graphs = Make(config, "cuda", true);
  auto eager = Make(config, "cuda", false);
  ASSERT_TRUE(graphs && eager);
  for (int i = 0; i < 8; ++i) {
    EXPECT_NEAR(graphs->TrainStep().item<double>(), eager->TrainStep().item<double>(), 1e-6)
        << "step " << i;
  }
  EXPECT_NEAR(graphs->Evaluate(Split::kValid), eager->Evaluate(Split::kValid), 1e-6);
  EXPECT_GT(graphs->PeakDeviceBytes(), 0);
}

TEST_F(CudaTrainer, AJobStoppedAndResumedRepeatsBitForBit) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  for (Cell cell : {Cell::kLstm, Cell::kGru, Cell::kMgu}) {
    for (Precision precision : {Precision::kTf32, Precision::kBf16}) {
      SCOPED_TRACE(std::string(CellName(cell)) + " " + PrecisionName(precision));
      RunConfig config = Small(Corpus());
      config.model.cell = cell;
      config.train.precision = precision;
      auto straight = Make(config, "cuda");
      Recorder all;
      ASSERT_TRUE(straight->Run(&all).ok());

      auto first = Make(config, "cuda");
      Recorder part1;
      part1.stop_at = 8;
      ASSERT_TRUE(first->Run(&part1).ok());
      const std::string checkpoint = (dir_ / "checkpoint").string();
      ASSERT_TRUE(first->SaveCheckpoint(checkpoint).ok());
      auto second = Make(config, "cuda");
      ASSERT_TRUE(second->RestoreCheckpoint(checkpoint).ok());
      Recorder part2;
      ASSERT_TRUE(second->Run(&part2).ok());

      ExpectResumedRunRepeats(part1.points, part2.points, all.points, "the CUDA trainer");
    }
  }
}

// gpu-check's precision check: after 300 steps, validation bpc in tf32 and
// in bf16 within 0.02 of fp32's.
TEST_F(CudaTrainer, Tf32AndBf16ValidationWithinTwoHundredthsOfFp32After300Steps) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  const char* staged = std::getenv("ABLATE_TEST_CORPUS");
  RunConfig config = Small(staged != nullptr ? staged : Corpus(3000));
  config.model.layer_norm = true;
  config.model.hidden = 256;
  config.train.batch = 32;
  config.train.seq = 100;
  config.train.lr = 2e-3;
  config.train.steps = 300;
  config.train.log_every = 100;
  config.train.eval_every = 0;
  config.train.eval_bytes = 200000;
  double bpc[3];
  for (Precision p : {Precision::kFp32, Precision::kTf32, Precision::kBf16}) {
    config.train.precision = p;
    auto trainer = Make(config, "cuda");
    ASSERT_TRUE(trainer);
    Recorder recorder;
    auto summary = trainer->Run(&recorder);
    ASSERT_TRUE(summary.ok()) << summary.status().ToString();
    bpc[static_cast<int>(p)] = summary->final_valid_bpc;
    std::printf("validation bpc after 300 steps, %s: %.4f\n", PrecisionName(p),
                summary->final_valid_bpc);
  }
  const double fp32 = bpc[static_cast<int>(Precision::kFp32)];
  EXPECT_LT(fp32, 4.0) << "the fp32 run did not learn";
  EXPECT_NEAR(bpc[static_cast<int>(Precision::kTf32)], fp32, 0.02);
  EXPECT_NEAR(bpc[static_cast<int>(Precision::kBf16)], fp32, 0.02);
}

}  // namespace
}  // namespace ablate
