// The trainer on a GPU computes what it computes on the CPU. Needs CUDA: on a
// machine without a GPU the tests skip, unless ABLATE_REQUIRE_CUDA=1 (set by
// scripts/gpu-check.sh), which turns a missing GPU into a failure.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "worker/model.h"
#include "worker/text8.h"
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

struct CellCase {
  Cell cell;
  bool layer_norm;
};

class CudaCell : public testing::TestWithParam<CellCase> {};

TEST_P(CudaCell, LossAndGradientsMatchTheCpuOnTheSameWeightsAndData) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  at::Generator gen = at::detail::createCPUGenerator(3);
  const int64_t hidden = 64, vocab = 27, steps = 30, batch = 8;
  CharRnn cpu(GetParam().cell, GetParam().layer_norm, hidden, vocab);
  cpu->Initialize(Init::kXavier, gen);
  CharRnn gpu(GetParam().cell, GetParam().layer_norm, hidden, vocab,
              torch::TensorOptions().device(torch::kCUDA));
  {
    torch::NoGradGuard no_grad;
    gpu->flat_params().copy_(cpu->flat_params());
  }
  torch::Tensor tokens = torch::randint(0, vocab, {steps, batch}, gen, torch::kLong);
  torch::Tensor targets = torch::randint(0, vocab, {steps * batch}, gen, torch::kLong);

  ModelOutput a = cpu->Forward(tokens, cpu->InitialState(batch), Kernel::kFused);
  torch::Tensor loss_cpu = torch::cross_entropy_loss(a.logits, targets);
  loss_cpu.backward();
  ModelOutput b = gpu->Forward(tokens.cuda(), gpu->InitialState(batch), Kernel::kReference);
  torch::Tensor loss_gpu = torch::cross_entropy_loss(b.logits, targets.cuda());
  loss_gpu.backward();

  EXPECT_NEAR(loss_cpu.item<double>(), loss_gpu.item<double>(), 1e-4);
  torch::Tensor g_cpu = cpu->flat_grads();
  torch::Tensor g_gpu = gpu->flat_grads().cpu();
  const double scale = g_cpu.abs().max().item<double>();
  EXPECT_LT((g_cpu - g_gpu).abs().max().item<double>(), 1e-3 * scale);
}

INSTANTIATE_TEST_SUITE_P(AllCells, CudaCell,
                         testing::Values(CellCase{Cell::kLstm, false}, CellCase{Cell::kLstm, true},
                                         CellCase{Cell::kGru, false}, CellCase{Cell::kGru, true},
                                         CellCase{Cell::kMgu, false}, CellCase{Cell::kMgu, true}),
                         [](const testing::TestParamInfo<CellCase>& info) {
                           return std::string(CellName(info.param.cell)) +
                                  (info.param.layer_norm ? "_ln" : "_plain");
                         });

TEST(CudaTrainer, TrainsLikeTheCpuTrainerStepForStep) {
  if (!NeedCuda()) GTEST_SKIP() << "no GPU";
  const std::string path = (std::filesystem::temp_directory_path() / "ablate_cuda_corpus").string();
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 200; ++i) {
      out << text8::Clean("Layer norm both speeds up training and results in better performance. ");
    }
  }
  RunConfig config;
  config.data.path = path;
  config.model.hidden = 48;
  config.model.vocab = 27;
  config.train.batch = 4;
  config.train.seq = 32;
  config.train.steps = 5;
  TrainerOptions cpu_options, gpu_options;
  cpu_options.device = "cpu";
  gpu_options.device = "cuda";
  auto cpu = Trainer::Create(config, cpu_options);
  auto gpu = Trainer::Create(config, gpu_options);
  ASSERT_TRUE(cpu.ok() && gpu.ok());
  EXPECT_TRUE((*gpu)->device().is_cuda());
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR((*cpu)->TrainStep().item<double>(), (*gpu)->TrainStep().item<double>(), 2e-4)
        << "step " << i;
  }
  EXPECT_NEAR((*cpu)->Evaluate(Split::kValid), (*gpu)->Evaluate(Split::kValid), 2e-4);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace ablate
