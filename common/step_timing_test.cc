#include "common/step_timing.h"

#include <gtest/gtest.h>

namespace ablate {
namespace {

using nlohmann::json;

TEST(StepTiming, RequestAndReplySurviveJson) {
  StepTimingRequest request;
  request.device = "cpu";
  request.threads = 3;
  request.budget_seconds = 0.25;
  RunConfig config;
  config.data.path = "corpus.txt";
  config.model.cell = Cell::kMgu;
  config.model.hidden = 32;
  request.shapes.push_back({config, 7});
  auto back = StepTimingRequest::FromJson(json::parse(request.ToJson().dump()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), request.ToJson());
  EXPECT_EQ(back->shapes.at(0).config.model.cell, Cell::kMgu);
  EXPECT_EQ(back->shapes.at(0).seq, 7);

  StepTimingReply reply;
  reply.seconds = {0.5, 0.125};
  reply.device = "cpu";
  reply.threads = 3;
  reply.blas = "Haswell";
  auto reply_back = StepTimingReply::FromJson(json::parse(reply.ToJson().dump()));
  ASSERT_TRUE(reply_back.ok()) << reply_back.status().ToString();
  EXPECT_EQ(reply_back->ToJson(), reply.ToJson());
  EXPECT_TRUE(StepTimingErrorFromJson(reply.ToJson()).ok());
}

TEST(StepTiming, ErrorReplyCarriesTheWorkersStatus) {
  const Status status = Status::InvalidArgument("--device: \"cuda\" asks for a GPU");
  const Status back = StepTimingErrorFromJson(json::parse(StepTimingErrorJson(status).dump()));
  EXPECT_EQ(back.code(), Status::kInvalidArgument);
  EXPECT_EQ(back.message(), status.message());
}

TEST(StepTiming, MalformedMessagesAreInvalidArgumentsNamingTheField) {
  for (const char* text :
       {R"([1])", R"({"shapes": 3})", R"({"threads": -1})", R"({"shapes": [{"seq": 4}]})",
        R"({"shapes": [{"config": {"data": {"path": "x"}}, "seq": 0}]})"}) {
    auto request = StepTimingRequest::FromJson(json::parse(text));
    EXPECT_EQ(request.status().code(), Status::kInvalidArgument) << text;
  }
  auto reply = StepTimingReply::FromJson(json::parse(R"({"seconds": ["x"]})"));
  EXPECT_EQ(reply.status().code(), Status::kInvalidArgument);
  EXPECT_NE(reply.status().message().find("seconds"), std::string::npos);
  EXPECT_EQ(StepTimingErrorFromJson(json::parse(R"({"error": "boom"})")).code(),
            Status::kInvalidArgument);
}

}  // namespace
}  // namespace ablate
