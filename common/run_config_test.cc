#include "common/run_config.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ablate
