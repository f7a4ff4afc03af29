#include "common/step_timing.h"

namespace ablate {

using nlohmann::json;

namespace {

Status Invalid(const std::string& field, const json& value) {
  return Status::InvalidArgument("step timing " + field + ": unexpected " + value.dump());
}

}  // namespace

json StepTimingRequest::ToJson() const {
  json out = {{"device", device}, {"threads", threads}, {"budget_seconds", budget_seconds}};
  out["shapes"] = json::array();
  for (const Shape& shape : shapes) {
    out["shapes"].push_back({{"config", shape.config.ToJson()}, {"seq", shape.seq}});
  }
  return out;
}

StatusOr<StepTimingRequest> StepTimingRequest::FromJson(const json& in) {
  if (!in.is_object()) return Invalid("request", in);
  StepTimingRequest request;
  const json device = in.value("device", json(request.device));
  if (!device.is_string()) return Invalid("device", device);
  request.device = device.get<std::string>();
  const json threads = in.value("threads", json(request.threads));
  if (!threads.is_number_integer() || threads.get<int64_t>() < 0 || threads.get<int64_t>() > 1024) {
    return Invalid("threads", threads);
  }
  request.threads = threads.get<int>();
  const json budget = in.value("budget_seconds", json(request.budget_seconds));
  if (!budget.is_number() || !(budget.get<double>() >= 0)) return Invalid("budget_seconds", budget);
  request.budget_seconds = budget.get<double>();
  const json shapes = in.value("shapes", json::array());
  if (!shapes.is_array()) return Invalid("shapes", shapes);
  for (const json& item : shapes) {
    if (!item.is_object() || !item.contains("config")) return Invalid("shape", item);
    Shape& shape = request.shapes.emplace_back();
    StatusOr<RunConfig> config = RunConfig::FromJson(item["config"]);
    if (!config.ok()) return config.status().WithContext("step timing config");
    shape.config = *config;
    const json seq = item.value("seq", json());
    if (!seq.is_number_integer() || seq.get<int64_t>() < 1 || seq.get<int64_t>() > kMaxSeq) {
      return Invalid("seq", seq);
    }
    shape.seq = seq.get<int64_t>();
  }
  return request;
}

json StepTimingReply::ToJson() const {
  return {{"seconds", seconds}, {"device", device}, {"threads", threads}, {"blas", blas}};
}

StatusOr<StepTimingReply> StepTimingReply::FromJson(const json& in) {
  if (!in.is_object()) return Invalid("reply", in);
  StepTimingReply reply;
  const json seconds = in.value("seconds", json());
  if (!seconds.is_array()) return Invalid("seconds", seconds);
  for (const json& s : seconds) {
    if (!s.is_number() || !(s.get<double>() >= 0)) return Invalid("seconds", s);
    reply.seconds.push_back(s.get<double>());
  }
  const json device = in.value("device", json());
  const json threads = in.value("threads", json());
  const json blas = in.value("blas", json());
  if (!device.is_string()) return Invalid("device", device);
  if (!threads.is_number_integer()) return Invalid("threads", threads);
  if (!blas.is_string()) return Invalid("blas", blas);
  reply.device = device.get<std::string>();
  reply.threads = threads.get<int>();
  reply.blas = blas.get<std::string>();
  return reply;
}

json StepTimingErrorJson(const Status& status) {
  return {{"error", {{"code", static_cast<int>(status.code())}, {"message", status.message()}}}};
}

Status StepTimingErrorFromJson(const json& in) {
  if (!in.is_object() || !in.contains("error")) return Status::OK();
  const json& error = in["error"];
  if (!error.is_object()) return Invalid("error", error);
  const json code = error.value("code", json());
  const json message = error.value("message", json());
  if (!code.is_number_integer() || code.get<int>() <= 0 || code.get<int>() > 16 ||
      !message.is_string()) {
    return Invalid("error", error);
  }
  return Status(static_cast<Status::Code>(code.get<int>()), message.get<std::string>());
}

}  // namespace ablate
