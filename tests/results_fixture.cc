#include "tests/results_fixture.h"

#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <random>

#include "store/store.h"
#include "store/test_util.h"

namespace ablate::testing {

std::string GridSpec(const std::string& name, int seeds) {
  std::string spec = "name: " + name + R"(
description: the seed's grid <small> & "quoted"
data: {path: corpus.txt}
model: {hidden: 2000, vocab: 256}
train: {steps: 60, log_every: 20, eval_every: 30}
grid:
  cell: [lstm, gru, mgu]
  layer_norm: [true, false]
  init: [xavier, variance_scaling, orthogonal]
)";
  if (seeds > 0) {
    spec += "seeds: [";
    for (int i = 0; i < seeds; ++i) spec += (i ? ", " : "") + std::to_string(i);
    spec += "]\n";
  }
  return spec;
}

v1::CurvePoint FixturePoint(v1::Split split, int64_t step, double bpc) {
  return TestPoint(split, step, bpc, 128, 1.5);
}

SweepWriter::SweepWriter(const std::string& path) : m_(path) {
  Status opened = m_.Open();
  if (!opened.ok()) ADD_FAILURE() << opened.ToString();
}

SweepWriter::~SweepWriter() { Close(); }

void SweepWriter::Close() { m_.Close(); }

int64_t SweepWriter::Launch(const std::string& spec_yaml) {
  v1::LaunchRequest request;
  request.set_spec_text(spec_yaml);
  request.set_filename("spec.yaml");
  v1::LaunchResponse reply;
  Status status = Await([&](auto done) { m_.sweeps->Launch(request, &reply, done); });
  EXPECT_TRUE(status.ok()) << status.ToString();
  return reply.sweep_id();
}

LeasedJob SweepWriter::Lease(const std::string& worker, const std::string& device) {
  auto [known, added] = worker_ids_.emplace(worker, 0);
  if (added) {
    v1::RegisterWorkerRequest registration;
    registration.set_name(worker);
    registration.set_host("host");
    registration.set_device(device);
    registration.set_threads(1);
    v1::RegisterWorkerResponse registered;
    Status status =
        Await([&](auto done) { m_.workers->RegisterWorker(registration, &registered, done); });
    EXPECT_TRUE(status.ok()) << status.ToString();
    known->second = registered.worker_id();
  }

  v1::LeaseJobRequest request;
  request.set_worker_id(known->second);
  v1::LeaseJobResponse reply;
  Status status = Await([&](auto done) { m_.jobs->LeaseJob(request, &reply, done); });
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(reply.has_job()) << "no pending job to lease";
  LeasedJob job;
  job.lease = reply.job();
  job.factors = nlohmann::json::parse(job.lease.factors_json(), nullptr, false);
  m_.clock.AdvanceMs(1000);
  return job;
}

void SweepWriter::Report(const LeasedJob& job, const std::vector<v1::CurvePoint>& points) {
  v1::ReportPointsRequest request;
  request.set_job_id(job.id());
  request.set_lease_token(job.lease.lease_token());
  for (const v1::CurvePoint& p : points) *request.add_points() = p;
  Status status = Await([&](auto done) { m_.jobs->ReportPoints(request, done); });
  EXPECT_TRUE(status.ok()) << status.ToString();
}

void SweepWriter::Complete(const LeasedJob& job, const v1::FinalMetrics& metrics) {
  v1::CompleteJobRequest request;
  request.set_job_id(job.id());
  request.set_lease_token(job.lease.lease_token());
  *request.mutable_metrics() = metrics;
  m_.clock.AdvanceMs(60'000);
  Status status = Await([&](auto done) { m_.jobs->CompleteJob(request, nullptr, done); });
  EXPECT_TRUE(status.ok()) << status.ToString();
}

void SweepWriter::Fail(const LeasedJob& job, const std::string& error) {
  v1::FailJobRequest request;
  request.set_job_id(job.id());
  request.set_lease_token(job.lease.lease_token());
  request.set_error(error);
  request.set_retryable(false);
  v1::FailJobResponse reply;
  Status status = Await([&](auto done) { m_.jobs->FailJob(request, &reply, done); });
  EXPECT_TRUE(status.ok()) << status.ToString();
  EXPECT_FALSE(reply.will_retry());
}

void SweepWriter::CancelJob(int64_t job_id) {
  v1::CancelRequest request;
  request.set_job_id(job_id);
  v1::CancelResponse reply;
  Status status = Await([&](auto done) { m_.jobs->Cancel(request, &reply, done); });
  EXPECT_TRUE(status.ok()) << status.ToString();
}

double FixtureValidBpc(const nlohmann::json& factors) {
  const std::string cell = factors.value("model.cell", "");
  const double cell_bpc = cell == "gru" ? 1.40 : cell == "lstm" ? 1.50 : 1.60;
  const double layer_norm = factors.value("model.layer_norm", false) ? -0.10 : 0.0;
  const std::string init = factors.value("model.init", "");
  const double init_bpc = init == "xavier" ? 0.0 : init == "orthogonal" ? 0.02 : 0.05;
  const double seed = 0.003 * factors.value("train.seed", 0);
  // Differs between the configurations inside every group.
  const double wobble = 0.001 * static_cast<double>(std::hash<std::string>()(factors.dump()) % 7);
  return cell_bpc + layer_norm + init_bpc + seed + wobble;
}

double FinishStandardJob(SweepWriter& writer, const LeasedJob& job, int64_t wall_seconds) {
  const double valid = FixtureValidBpc(job.factors);
  writer.Report(job, {FixturePoint(v1::SPLIT_TRAIN, 20, valid + 0.3),
                      FixturePoint(v1::SPLIT_VALID, 30, valid + 0.5),
                      FixturePoint(v1::SPLIT_TRAIN, 40, valid + 0.2),
                      FixturePoint(v1::SPLIT_TRAIN, 60, valid + 0.1),
                      FixturePoint(v1::SPLIT_VALID, 60, valid),
                      FixturePoint(v1::SPLIT_TEST, 60, valid + 0.02)});
  v1::FinalMetrics metrics;
  metrics.set_train_bpc(valid + 0.1);
  metrics.set_valid_bpc(valid);
  metrics.set_test_bpc(valid + 0.02);
  metrics.set_steps(60);
  metrics.set_wall_time(static_cast<double>(wall_seconds));
  writer.Complete(job, metrics);
  return valid;
}

double FinishRealisticJob(SweepWriter& writer, const LeasedJob& job, int64_t steps,
                          int64_t log_every, int64_t eval_every, uint64_t noise_seed) {
  std::mt19937_64 rng(noise_seed);
  std::normal_distribution<double> noise(0.0, 0.01);
  const double final_bpc = FixtureValidBpc(job.factors);
  const double tau =
      static_cast<double>(steps) / (job.factors.value("model.layer_norm", false) ? 6 : 4);
  auto curve = [&](int64_t step) {
    return final_bpc + (8.0 - final_bpc) * std::exp(-static_cast<double>(step) / tau);
  };
  std::vector<v1::CurvePoint> points;
  double train = 0, valid = 0;
  for (int64_t step = log_every; step <= steps; step += log_every) {
    train = curve(step) - 0.03 + 3 * noise(rng);
    points.push_back(FixturePoint(v1::SPLIT_TRAIN, step, train));
  }
  for (int64_t step = eval_every; step <= steps; step += eval_every) {
    valid =
        curve(step) + noise(rng) * static_cast<double>(steps - step) / static_cast<double>(steps);
    points.push_back(FixturePoint(v1::SPLIT_VALID, step, valid));
  }
  const double test = valid + 0.015;
  points.push_back(FixturePoint(v1::SPLIT_TEST, steps, test));
  writer.Report(job, points);
  v1::FinalMetrics metrics;
  metrics.set_train_bpc(train);
  metrics.set_valid_bpc(valid);
  metrics.set_test_bpc(test);
  metrics.set_steps(steps);
  metrics.set_wall_time(static_cast<double>(steps) * 1.5);
  writer.Complete(job, metrics);
  return valid;
}

int64_t WriteReportSweep(SweepWriter& writer, const std::string& error) {
  writer.Launch(GridSpec("seed-grid", /*seeds=*/2));
  for (int i = 0; i < 33; ++i) {
    LeasedJob job = writer.Lease(i % 3 ? "cpu-box" : "gpu-box", i % 3 ? "cpu" : "cuda:0");
    FinishRealisticJob(writer, job, 2000, 50, 100, static_cast<uint64_t>(i));
  }
  LeasedJob failed = writer.Lease();
  writer.Report(failed, {FixturePoint(v1::SPLIT_VALID, 100, 5.0)});
  writer.Fail(failed, error);
  LeasedJob running = writer.Lease();
  writer.Report(running,
                {FixturePoint(v1::SPLIT_TRAIN, 100, 6.0), FixturePoint(v1::SPLIT_VALID, 100, 6.0)});
  return running.id();
}

}  // namespace ablate::testing
