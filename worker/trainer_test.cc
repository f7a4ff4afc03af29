#include "worker/trainer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/temp_dir.h"
#include "data/text8.h"
#include "worker/cell_problem_test_util.h"

namespace ablate {
namespace {

namespace fs = std::filesystem;

// Real English, cleaned into text8 format the way `data prepare` does.
const char* kParagraph =
    "I conducted some experiments to see what types of recurrent neural networks work well on "
    "the text8 dataset. Specifically, I compared the memory cells LSTM, GRU, and MGU, whether to "
    "use layer normalization, and three methods for initializing weights. Text8 is a language "
    "modeling benchmark, where the neural network reads part of a Wikipedia article and needs to "
    "predict the following character of the text. Performance is measured in bits per character, "
    "which describes how well our model can compress the text. The fewer bits, the better. ";

class TrainerTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.empty()) << "no temporary directory"; }

  std::string WriteCorpus(const std::string& text, const std::string& name = "corpus.txt") {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  std::string EnglishCorpus(int repeats = 40) {
    std::string text;
    for (int i = 0; i < repeats; ++i) text += text8::Clean(kParagraph);
    return WriteCorpus(text);
  }

  static RunConfig SmallConfig(const std::string& path) {
    RunConfig config;
    config.data.path = path;
    config.model.cell = Cell::kGru;
    config.model.layer_norm = true;
    config.model.hidden = 32;
    config.model.vocab = 27;
    config.train.batch = 4;
    config.train.seq = 16;
    config.train.lr = 3e-3;
    config.train.steps = 20;
    config.train.log_every = 1;
    config.train.eval_every = 5;
    config.train.seed = 1;
    return config;
  }

  static TrainerOptions CudaOnCpu() {
    TrainerOptions options;
    options.kernel = TrainerOptions::KernelChoice::kCudaOnCpu;
    return options;
  }

  static std::unique_ptr<Trainer> MustCreate(const RunConfig& config, TrainerOptions options = {}) {
    options.device = "cpu";
    auto trainer = Trainer::Create(config, options);
    EXPECT_TRUE(trainer.ok()) << trainer.status().ToString();
    return trainer.ok() ? std::move(trainer).value() : nullptr;
  }

  TempDir temp_{"ablate-trainer-test"};
  fs::path dir_ = temp_.path();
};

class RecordingListener : public TrainerListener {
 public:
  void OnPoint(const CurvePoint& p) override { points.push_back(p); }
  bool ShouldStop() override { return stop_at >= 0 && step_seen >= stop_at; }
  void OnProgress(const Progress& p) override { step_seen = p.step; }

  std::vector<double> Bpcs(Split split) const {
    std::vector<double> out;
    for (const auto& p : points) {
      if (p.split == split) out.push_back(p.bpc);
    }
    return out;
  }
  std::vector<CurvePoint> points;
  int64_t stop_at = -1, step_seen = 0;
};

TEST_F(TrainerTest, ShortRepeatedStringIsLearnedWellUnderOneBitPerCharacter) {
  std::string text;
  for (int i = 0; i < 400; ++i) text += text8::Clean("the quick brown fox jumps over the lazy dog ");
  RunConfig config = SmallConfig(WriteCorpus(text));
  config.model.hidden = 48;
  config.train.seq = 32;
  config.train.lr = 1e-2;
  config.train.steps = 300;
  config.train.log_every = 10;
  config.train.eval_every = 0;
  auto trainer = MustCreate(config);
  ASSERT_NE(trainer, nullptr);
  RecordingListener listener;
  auto summary = trainer->Run(&listener);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->outcome, TrainSummary::Outcome::kFinished);
  std::vector<double> train = listener.Bpcs(Split::kTrain);
  ASSERT_EQ(train.size(), 30u);
  EXPECT_GT(train.front(), 3.0);  // starts near log2(27) = 4.75
  EXPECT_LT(train.back(), 0.3);
  EXPECT_LT(summary->test_bpc, 0.3);
}

TEST_F(TrainerTest, CurveHasTheScheduledPoints) {
  RunConfig config = SmallConfig(EnglishCorpus());
  config.train.steps = 12;
  config.train.log_every = 4;
  config.train.eval_every = 5;
  auto trainer = MustCreate(config);
  RecordingListener listener;
  ASSERT_TRUE(trainer->Run(&listener).ok());
  std::map<Split, std::vector<int64_t>> steps;
  for (const auto& p : listener.points) {
    steps[p.split].push_back(p.step);
    EXPECT_EQ(p.bytes_seen, p.step * 4 * 16);
    EXPECT_TRUE(std::isfinite(p.bpc));
  }
  EXPECT_EQ(steps[Split::kTrain], (std::vector<int64_t>{4, 8, 12}));
  EXPECT_EQ(steps[Split::kValid], (std::vector<int64_t>{5, 10, 12}));
  EXPECT_EQ(steps[Split::kTest], (std::vector<int64_t>{12}));
}

TEST_F(TrainerTest, EvaluationCoversEveryByteOfTheSplit) {
  // With one stream and one window the evaluation is a single pass over the
  // split, each byte predicted from the one before: compute that directly.
  RunConfig config = SmallConfig(EnglishCorpus());
  config.train.batch = 1;
  config.train.seq = 2000;  // longer than the validation split: one window
  auto trainer = MustCreate(config);
  auto device_step = MustCreate(config, CudaOnCpu());
  text8::Corpus corpus = text8::LoadCorpus(config.data.path).value();
  std::vector<uint8_t> symbols;
  ASSERT_TRUE(text8::EncodeSymbols(corpus.bytes(), 27, &symbols).ok());
  const int64_t begin = corpus.split().train_end;
  const int64_t size = corpus.validation().size();
  torch::Tensor all = torch::tensor(std::vector<int64_t>(symbols.begin(), symbols.end()));
  torch::Tensor inputs = all.narrow(0, begin - 1, size).view({size, 1});
  torch::Tensor targets = all.narrow(0, begin, size);
  torch::NoGradGuard no_grad;
  ModelOutput out = trainer->model()->Forward(inputs, trainer->model()->InitialState(1),
                                              Kernel::kReference);
  const double expected = torch::cross_entropy_loss(out.logits, targets).item<double>() / std::log(2.0);
  EXPECT_NEAR(trainer->Evaluate(Split::kValid), expected, 1e-5);
  EXPECT_NEAR(device_step->Evaluate(Split::kValid), expected, 1e-5);
}

TEST_F(TrainerTest, EvalBytesCapsTheEvaluatedPrefix) {
  RunConfig config = SmallConfig(EnglishCorpus());
  config.train.batch = 1;
  config.train.seq = 2000;  // longer than the validation split: one window
  config.train.eval_bytes = 50;
  auto capped = MustCreate(config);
  text8::Corpus corpus = text8::LoadCorpus(config.data.path).value();
  std::vector<uint8_t> symbols;
  ASSERT_TRUE(text8::EncodeSymbols(corpus.bytes(), 27, &symbols).ok());
  const int64_t begin = corpus.split().train_end;
  torch::Tensor all = torch::tensor(std::vector<int64_t>(symbols.begin(), symbols.end()));
  torch::NoGradGuard no_grad;
  ModelOutput out = capped->model()->Forward(all.narrow(0, begin - 1, 50).view({50, 1}),
                                             capped->model()->InitialState(1), Kernel::kReference);
  const double expected =
      torch::cross_entropy_loss(out.logits, all.narrow(0, begin, 50)).item<double>() / std::log(2.0);
  EXPECT_NEAR(capped->Evaluate(Split::kValid), expected, 1e-5);
}

TEST_F(TrainerTest, EvaluationSplitsTheSplitIntoStreamsCountingEachByteOnce) {
  // 7 streams over the test split, read in windows of 16: each stream is an
  // independent pass from a zero state over its slice; the last is shorter.
  RunConfig config = SmallConfig(EnglishCorpus());
  config.train.batch = 7;
  auto trainer = MustCreate(config);
  auto device_step = MustCreate(config, CudaOnCpu());
  text8::Corpus corpus = text8::LoadCorpus(config.data.path).value();
  std::vector<uint8_t> symbols;
  ASSERT_TRUE(text8::EncodeSymbols(corpus.bytes(), 27, &symbols).ok());
  torch::Tensor all = torch::tensor(std::vector<int64_t>(symbols.begin(), symbols.end()));
  const int64_t begin = corpus.split().validation_end;
  const int64_t size = corpus.test().size();
  const int64_t length = (size + 6) / 7;
  ASSERT_NE(size % 7, 0) << "pick a corpus whose last stream is shorter";
  torch::NoGradGuard no_grad;
  double total = 0;
  for (int64_t s = 0; s < 7; ++s) {
    const int64_t n = std::min(length, size - s * length);
    ModelOutput out = trainer->model()->Forward(
        all.narrow(0, begin + s * length - 1, n).view({n, 1}), trainer->model()->InitialState(1),
        Kernel::kReference);
    total += torch::cross_entropy_loss(out.logits, all.narrow(0, begin + s * length, n),
                                       {}, at::Reduction::Sum)
                 .item<double>();
  }
  EXPECT_NEAR(trainer->Evaluate(Split::kTest), total / size / std::log(2.0), 1e-5);
  EXPECT_NEAR(device_step->Evaluate(Split::kTest), total / size / std::log(2.0), 1e-5);
}

// The CPU's step, and the device step (as a GPU runs it, here on the CPU).
TEST_F(TrainerTest, ResumingFromACheckpointRepeatsTheRunBitForBit) {
  for (const TrainerOptions& options : {TrainerOptions(), CudaOnCpu()}) {
    for (Cell cell : {Cell::kLstm, Cell::kGru}) {
      SCOPED_TRACE(options.kernel == TrainerOptions::KernelChoice::kCudaOnCpu ? "device step"
                                                                              : "CPU step");
      RunConfig config = SmallConfig(EnglishCorpus());
      config.model.cell = cell;
      config.train.steps = 16;
      config.train.log_every = 3;  // the checkpoint falls inside a logging window
      auto straight = MustCreate(config, options);
      RecordingListener all;
      ASSERT_TRUE(straight->Run(&all).ok());

      auto first = MustCreate(config, options);
      RecordingListener part1;
      part1.stop_at = 8;
      auto s1 = first->Run(&part1);
      ASSERT_TRUE(s1.ok());
      EXPECT_EQ(s1->outcome, TrainSummary::Outcome::kStopped);
      const std::string ckpt = (dir_ / "ckpt").string();
      ASSERT_TRUE(first->SaveCheckpoint(ckpt).ok());

      auto second = MustCreate(config, options);
      ASSERT_TRUE(second->RestoreCheckpoint(ckpt).ok());
      EXPECT_EQ(second->step(), 8);
      RecordingListener part2;
      ASSERT_TRUE(second->Run(&part2).ok());

      ExpectResumedRunRepeats(part1.points, part2.points, all.points, CellName(cell));
    }
  }
}

// The header's checksum is the standard CRC-32 (the one checkpoints of
// earlier releases carry), computed here bit by bit from its definition.
TEST_F(TrainerTest, CheckpointChecksumIsTheStandardCrc32) {
  auto trainer = MustCreate(SmallConfig(EnglishCorpus()));
  const std::string path = (dir_ / "ckpt").string();
  ASSERT_TRUE(trainer->SaveCheckpoint(path).ok());
  std::ifstream in(path, std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(data.size(), 24u);
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 24; i < data.size(); ++i) {
    crc ^= static_cast<unsigned char>(data[i]);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  crc ^= 0xFFFFFFFFu;
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= uint32_t(static_cast<unsigned char>(data[20 + i])) << (8 * i);
  EXPECT_EQ(stored, crc);
}

TEST_F(TrainerTest, CorruptOrTruncatedCheckpointIsRefusedAndChangesNothing) {
  RunConfig config = SmallConfig(EnglishCorpus());
  auto trainer = MustCreate(config);
  RecordingListener listener;
  listener.stop_at = 5;
  ASSERT_TRUE(trainer->Run(&listener).ok());
  const std::string good = (dir_ / "good").string();
  ASSERT_TRUE(trainer->SaveCheckpoint(good).ok());
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  auto fresh = MustCreate(config);
  const torch::Tensor before = fresh->model()->flat_params().clone();
  struct Case {
    std::string name, contents, expect;
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x20;
  std::vector<Case> cases = {
      {"flipped", flipped, "checksum mismatch"},
      {"truncated", bytes.substr(0, bytes.size() - 100), "truncated"},
      {"header_only", bytes.substr(0, 10), "not an ablate checkpoint"},
      {"foreign", "PK\x03\x04 this is a zip file, not ours", "not an ablate checkpoint"},
  };
  for (const Case& c : cases) {
    const std::string path = (dir_ / c.name).string();
    std::ofstream(path, std::ios::binary) << c.contents;
    Status s = fresh->RestoreCheckpoint(path);
    EXPECT_EQ(s.code(), Status::kDataLoss) << c.name << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(path), std::string::npos) << s.message();
    EXPECT_EQ(fresh->step(), 0);
    EXPECT_TRUE(torch::equal(fresh->model()->flat_params(), before)) << c.name;
  }
  EXPECT_EQ(fresh->RestoreCheckpoint((dir_ / "missing").string()).code(), Status::kNotFound);

  RunConfig other = config;
  other.model.hidden = 16;
  auto different = MustCreate(other);
  Status s = different->RestoreCheckpoint(good);
  EXPECT_EQ(s.code(), Status::kFailedPrecondition) << s.ToString();
}

TEST_F(TrainerTest, UnwritableCheckpointPathIsAnErrorWithoutPartialFiles) {
  auto trainer = MustCreate(SmallConfig(EnglishCorpus()));
  Status s = trainer->SaveCheckpoint((dir_ / "no" / "such" / "dir" / "ckpt").string());
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no/such/dir"), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(dir_ / "no"));
}

TEST_F(TrainerTest, BadInputsAreClearErrorsNamingTheSetting) {
  const std::string english = EnglishCorpus();
  struct Case {
    std::string name;
    RunConfig config;
    TrainerOptions options;
    std::vector<std::string> expect;
  };
  std::vector<Case> cases;
  {
    RunConfig c = SmallConfig(WriteCorpus(std::string(150, 'a'), "tiny.txt"));
    c.train.batch = 8;
    c.train.seq = 20;
    cases.push_back({"short corpus", c, {}, {"train.batch 8", "train.seq 20", "168", "135"}});
  }
  {
    RunConfig c = SmallConfig(WriteCorpus("Hello World, this has capitals", "caps.txt"));
    cases.push_back({"alphabet", c, {}, {"model.vocab is 27", "0x48 'H'", "offset 0"}});
  }
  {
    RunConfig c = SmallConfig((dir_ / "absent.txt").string());
    cases.push_back({"missing file", c, {}, {"absent.txt"}});
  }
  {
    RunConfig c = SmallConfig(english);
    TrainerOptions o;
    o.device = "cuda:0";
    cases.push_back({"no gpu", c, o, {"--device", "cuda:0"}});
  }
  {
    RunConfig c = SmallConfig(english);
    TrainerOptions o;
    o.device = "tpu";
    cases.push_back({"bad device", c, o, {"--device", "tpu"}});
  }
  {
    RunConfig c = SmallConfig(english);
    c.model.hidden = 0;
    cases.push_back({"zero hidden", c, {}, {"model.hidden", "0"}});
  }
  {
    RunConfig c = SmallConfig(english);
    c.train.checkpoint_every = 5;
    cases.push_back({"checkpoint path", c, {}, {"train.checkpoint_every"}});
  }
  for (Case& c : cases) {
    if (c.options.device == "auto") c.options.device = "cpu";
    auto trainer = Trainer::Create(c.config, c.options);
    ASSERT_FALSE(trainer.ok()) << c.name;
    for (const std::string& e : c.expect) {
      EXPECT_NE(trainer.status().message().find(e), std::string::npos)
          << c.name << ": \"" << trainer.status().message() << "\" lacks \"" << e << "\"";
    }
  }
}

TEST_F(TrainerTest, ReferenceKernelTrainsTheSameModel) {
  // Same seed and data: the first losses agree to float tolerance.
  RunConfig config = SmallConfig(EnglishCorpus());
  TrainerOptions reference;
  reference.kernel = TrainerOptions::KernelChoice::kReference;
  auto a = MustCreate(config);
  auto b = MustCreate(config, reference);
  EXPECT_EQ(a->kernel(), Kernel::kFused);
  EXPECT_EQ(b->kernel(), Kernel::kReference);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a->TrainStep().item<double>(), b->TrainStep().item<double>(), 1e-4) << i;
  }
}

// The device step (its loss, Adam with the corrections on the device, the
// state kept in place across an epoch's end) trains the same model as the
// CPU's step, for every cell.
TEST_F(TrainerTest, DeviceStepTrainsTheSameModelAsTheCpuStep) {
  for (Cell cell : {Cell::kLstm, Cell::kGru, Cell::kMgu}) {
    SCOPED_TRACE(CellName(cell));
    RunConfig config = SmallConfig(EnglishCorpus(4));
    config.model.cell = cell;
    auto cpu = MustCreate(config);
    auto device = MustCreate(config, CudaOnCpu());
    EXPECT_EQ(device->kernel(), Kernel::kCudaOnCpu);
    // Past the end of an epoch, where the carried state is reset.
    const text8::Corpus corpus = text8::LoadCorpus(config.data.path).value();
    const int64_t windows =
        (static_cast<int64_t>(corpus.train().size()) / config.train.batch - 1) / config.train.seq;
    ASSERT_LT(windows, 40);
    for (int64_t i = 0; i < windows + 3; ++i) {
      EXPECT_NEAR(cpu->TrainStep().item<double>(), device->TrainStep().item<double>(), 2e-4)
          << "step " << i;
    }
    EXPECT_NEAR(cpu->Evaluate(Split::kValid), device->Evaluate(Split::kValid), 2e-4);
  }
}

TEST_F(TrainerTest, AKernelForAnotherDeviceIsRefused) {
  RunConfig config = SmallConfig(EnglishCorpus());
  TrainerOptions options;
  options.device = "cpu";
  options.kernel = TrainerOptions::KernelChoice::kCuda;
  auto trainer = Trainer::Create(config, options);
  ASSERT_FALSE(trainer.ok());
  EXPECT_NE(trainer.status().message().find("the cuda kernel runs on a CUDA GPU only"),
            std::string::npos)
      << trainer.status().message();
}

}  // namespace
}  // namespace ablate
