#include "common/run_config.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>
#include <vector>

namespace ablate {
namespace {

using nlohmann::json;

TEST(RunConfig, DefaultsNeedADataSource) {
  RunConfig config;
  EXPECT_EQ(config.Validate().code(), Status::kInvalidArgument);
  config.data.corpus = "text8";
  EXPECT_TRUE(config.Validate().ok()) << config.Validate().ToString();
}

TEST(RunConfig, JsonRoundTripKeepsEveryField) {
  RunConfig config;
  config.data.path = "corpus.txt";
  config.model.cell = Cell::kLstm;
  config.model.layer_norm = false;
  config.model.init = Init::kOrthogonal;
  config.model.hidden = 64;
  config.model.vocab = 27;
  config.train.lr = 3e-4;
  config.train.seed = 7;
  auto back = RunConfig::FromJson(config.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), config.ToJson());
  EXPECT_EQ(back->model.cell, Cell::kLstm);
  EXPECT_EQ(back->train.seed, 7u);
}

TEST(RunConfig, UnknownKeyIsNamed) {
  auto r = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"model", {{"cells", "gru"}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.cells"), std::string::npos) << r.status().message();
}

TEST(RunConfig, UnknownCellNamesTheValue) {
  auto r = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"model", {{"cell", "rnn"}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.cell"), std::string::npos);
  EXPECT_NE(r.status().message().find("rnn"), std::string::npos);
}

TEST(RunConfig, WrongTypeIsRejected) {
  auto r = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"train", {{"batch", "ten"}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("train.batch"), std::string::npos);
}

TEST(RunConfig, ZeroOrAbsurdSizesAreRejected) {
  for (const char* key : {"hidden"}) {
    for (int64_t v : {int64_t{0}, int64_t{-3}, kMaxHidden + 1}) {
      auto r = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"model", {{key, v}}}});
      ASSERT_FALSE(r.ok()) << key << "=" << v;
      EXPECT_NE(r.status().message().find(std::string("model.") + key), std::string::npos);
      EXPECT_NE(r.status().message().find(std::to_string(v)), std::string::npos);
    }
  }
  for (const char* key : {"batch", "seq", "steps"}) {
    for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{1} << 40}) {
      auto r = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"train", {{key, v}}}});
      ASSERT_FALSE(r.ok()) << key << "=" << v;
      EXPECT_NE(r.status().message().find(std::string("train.") + key), std::string::npos);
    }
  }
}

TEST(RunConfig, WholeFloatsAreAcceptedAsIntegers) {
  auto r = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"train", {{"steps", 1e5}}}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->train.steps, 100000);
  auto bad = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"train", {{"steps", 1.5}}}});
  EXPECT_FALSE(bad.ok());
}

TEST(RunConfig, VocabMustBeBytesOrText8Alphabet) {
  auto r = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"model", {{"vocab", 100}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.vocab"), std::string::npos);
}

TEST(RunConfig, NegativeSeedIsRejected) {
  auto r = RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"train", {{"seed", -1}}}});
  EXPECT_FALSE(r.ok());
}

// Computed with the code before train.precision existed: the canonical text
// of a default config. A job's hash and a checkpoint's resume identity are
// taken over this text, so configs that leave precision at its default must
// keep it exactly (spec_test pins the hashes).
constexpr const char* kDefaultTextBeforePrecision =
    R"({"data":{"corpus":"text8","url":"http://mattmahoney.net/dc/text8.zip"},)"
    R"("model":{"cell":"gru","hidden":2000,"init":"xavier","layer_norm":true,"vocab":256},)"
    R"("train":{"batch":100,"checkpoint_every":0,"clip_norm":1.0,"eval_bytes":0,)"
    R"("eval_every":100,"log_every":10,"lr":0.001,"seed":0,"seq":200,"steps":1000}})";

TEST(RunConfig, DefaultPrecisionKeepsTheTextConfigsHadBeforeIt) {
  RunConfig config;
  config.data.corpus = "text8";
  EXPECT_EQ(config.train.precision, Precision::kTf32);
  EXPECT_EQ(config.ToJson().dump(), kDefaultTextBeforePrecision);

  auto explicit_tf32 = RunConfig::FromJson(
      json{{"data", {{"corpus", "text8"}}}, {"train", {{"precision", "tf32"}}}});
  ASSERT_TRUE(explicit_tf32.ok()) << explicit_tf32.status().ToString();
  EXPECT_EQ(explicit_tf32->train.precision, Precision::kTf32);
  EXPECT_EQ(explicit_tf32->ToJson().dump(), kDefaultTextBeforePrecision);
}

TEST(RunConfig, Fp32AndBf16AreWrittenInTheTrainSection) {
  std::set<std::string> texts;
  for (Precision precision : {Precision::kFp32, Precision::kTf32, Precision::kBf16}) {
    RunConfig config;
    config.data.corpus = "text8";
    config.train.precision = precision;
    const json written = config.ToJson();
    if (precision == Precision::kTf32) {
      EXPECT_FALSE(written["train"].contains("precision"));
    } else {
      EXPECT_EQ(written["train"]["precision"], PrecisionName(precision));
    }
    auto back = RunConfig::FromJson(written);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->train.precision, precision);
    EXPECT_EQ(back->ToJson(), written);
    texts.insert(written.dump());
  }
  EXPECT_EQ(texts.size(), 3u);
  EXPECT_EQ(texts.count(kDefaultTextBeforePrecision), 1u);
}

TEST(RunConfig, PrecisionNamesParseBack) {
  for (Precision precision : {Precision::kFp32, Precision::kTf32, Precision::kBf16}) {
    auto parsed = ParsePrecision(PrecisionName(precision));
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(*parsed, precision);
  }
}

TEST(RunConfig, UnknownOrNonStringPrecisionNamesTheSettingAndTheChoices) {
  const std::vector<std::pair<json, std::string>> cases = {
      {"fp16", "train.precision: unknown precision \"fp16\" (known: fp32, tf32, bf16)"},
      {"TF32", "train.precision: unknown precision \"TF32\" (known: fp32, tf32, bf16)"},
      {16, "train.precision: expected one of fp32, tf32, bf16, got 16"},
      {true, "train.precision: expected one of fp32, tf32, bf16, got true"},
      {json::array({"tf32"}), "train.precision: expected one of fp32, tf32, bf16, got [\"tf32\"]"},
  };
  for (const auto& [value, message] : cases) {
    auto r =
        RunConfig::FromJson(json{{"data", {{"path", "x"}}}, {"train", {{"precision", value}}}});
    ASSERT_FALSE(r.ok()) << value;
    EXPECT_EQ(r.status().code(), Status::kInvalidArgument);
    EXPECT_EQ(r.status().message(), message);
  }
}

TEST(RunConfig, PrecisionAppliesOnCudaDevicesOnly) {
  for (const char* device : {"cuda", "cuda:0", "cuda:1 (NVIDIA H100 80GB HBM3)"}) {
    EXPECT_TRUE(IsCudaDevice(device)) << device;
    EXPECT_EQ(EffectivePrecision(Precision::kBf16, device), Precision::kBf16) << device;
  }
  for (const char* device : {"cpu", "", "cud", "gpu:0"}) {
    EXPECT_FALSE(IsCudaDevice(device)) << device;
    EXPECT_EQ(EffectivePrecision(Precision::kBf16, device), Precision::kFp32) << device;
    EXPECT_EQ(EffectivePrecision(Precision::kTf32, device), Precision::kFp32) << device;
  }
}

}  // namespace
}  // namespace ablate
