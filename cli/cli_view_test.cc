// What `ablate status` draws from a GetStatus answer: progress bars, ETAs,
// the JSON counts, and the table helpers behind every command's output.
#include <gtest/gtest.h>

#include "cli/status_view.h"
#include "cli/table.h"

namespace ablate {
namespace {

using Clock = StatusView::Clock;

constexpr int64_t kNowMs = 1'800'000'000'000;

v1::GetStatusResponse OneSweep(int64_t pending, int64_t running, int64_t done) {
  v1::GetStatusResponse status;
  v1::SweepSummary* s = status.add_sweeps()->mutable_sweep();
  s->set_id(7);
  s->set_name("seed");
  s->set_state("active");
  v1::JobCounts* c = s->mutable_counts();
  c->set_pending(pending);
  c->set_running(running);
  c->set_done(done);
  c->set_total(pending + running + done);
  return status;
}

v1::RunningJob* AddRunning(v1::GetStatusResponse* status, int64_t id, int64_t step) {
  v1::RunningJob* job = status->mutable_sweeps(0)->add_running();
  job->set_job_id(id);
  job->set_factors_json(R"({"model.cell":"gru","model.layer_norm":true})");
  job->set_worker_name("box/0");
  job->set_step(step);
  job->set_steps_total(1000);
  job->set_started_ms(kNowMs - 100'000);
  return job;
}

TEST(StatusView, AJobsEtaComesFromItsWorkersThroughput) {
  v1::GetStatusResponse status = OneSweep(0, 1, 0);
  v1::RunningJob* job = AddRunning(&status, 1, 400);
  job->set_bytes_per_s(20'000);
  job->set_bytes_per_step(200);  // 100 steps a second
  job->set_train_bpc(2.25);
  StatusView view;
  view.Update(status, Clock::now(), kNowMs);
  EXPECT_NEAR(view.JobEta(status.sweeps(0).running(0)), 6.0, 1e-9);
  const std::string text = view.Render();
  EXPECT_NE(text.find("seed (sweep 7)"), std::string::npos) << text;
  EXPECT_NE(text.find("box/0"), std::string::npos) << text;
  EXPECT_NE(text.find("400/1000"), std::string::npos) << text;
  EXPECT_NE(text.find("20.0 kB/s"), std::string::npos) << text;
  EXPECT_NE(text.find("2.250"), std::string::npos) << text;
  EXPECT_NE(text.find(" 6s"), std::string::npos) << text;
}

TEST(StatusView, AJobWithoutAStepBudgetShowsItsStepAndNoEta) {
  v1::GetStatusResponse status = OneSweep(0, 1, 0);
  v1::RunningJob* job = AddRunning(&status, 1, 400);
  job->set_steps_total(0);  // a program job before its program tells its budget
  job->set_bytes_per_s(20'000);
  job->set_bytes_per_step(200);
  StatusView view;
  view.Update(status, Clock::now(), kNowMs);
  EXPECT_LT(view.JobEta(status.sweeps(0).running(0)), 0);
  const std::string text = view.Render();
  EXPECT_NE(text.find(" 400 "), std::string::npos) << text;
  EXPECT_EQ(text.find("400/0"), std::string::npos) << text;
}

TEST(StatusView, BeforeAHeartbeatTheRateComesFromTheStepsSeenToChange) {
  const auto start = Clock::now();
  StatusView view;
  v1::GetStatusResponse first = OneSweep(0, 1, 0);
  AddRunning(&first, 1, 100);
  view.Update(first, start, kNowMs);
  v1::GetStatusResponse later = OneSweep(0, 1, 0);
  AddRunning(&later, 1, 300);
  view.Update(later, start + std::chrono::seconds(10), kNowMs + 10'000);
  // 20 steps a second, 700 to go, the step first seen just now.
  EXPECT_NEAR(view.JobEta(later.sweeps(0).running(0)), 35.0, 1e-6);
}

TEST(StatusView, ASweepsEtaSpreadsTheJobsStillToDoOverTheRunningOnes) {
  v1::GetStatusResponse status = OneSweep(4, 2, 0);
  for (int64_t id : {1, 2}) {
    v1::RunningJob* job = AddRunning(&status, id, 500);
    job->set_bytes_per_s(1000);
    job->set_bytes_per_step(10);  // 100 steps a second: 10 s a job, 5 s left
  }
  StatusView view;
  view.Update(status, Clock::now(), kNowMs);
  // (5 + 5 + 4 * 10) s of work on 2 workers.
  EXPECT_NEAR(view.SweepEta(status.sweeps(0)), 25.0, 1e-9);
  EXPECT_FALSE(view.Finished());
}

TEST(StatusView, FinishedOnceNoSweepHasPendingOrRunningJobs) {
  StatusView view;
  EXPECT_FALSE(view.Finished());
  view.Update(OneSweep(0, 0, 18), Clock::now(), kNowMs);
  EXPECT_TRUE(view.Finished());
  EXPECT_EQ(view.RenderBrief(),
            "seed (sweep 7)  [##############################]  18/18 done  0 running  0 pending  "
            "0 failed\n");
}

TEST(StatusView, CountsJsonHasExactlyTheDocumentedShape) {
  v1::GetStatusResponse status = OneSweep(3, 2, 10);
  v1::JobCounts* c = status.mutable_sweeps(0)->mutable_sweep()->mutable_counts();
  c->set_failed(1);
  c->set_cancelled(2);
  c->set_total(18);
  EXPECT_EQ(SweepCountsJson(status.sweeps(0).sweep()).dump(),
            R"({"sweep":"seed","total":18,"jobs":{"pending":3,"running":2,"done":10,)"
            R"("failed":1,"cancelled":2}})");
}

TEST(ProgressBar, ShowsEachStateInProportion) {
  v1::JobCounts c;
  c.set_done(5);
  c.set_failed(1);
  c.set_cancelled(1);
  c.set_running(1);
  c.set_pending(2);
  c.set_total(10);
  EXPECT_EQ(ProgressBar(c, 10), "#####x->..");
  EXPECT_EQ(ProgressBar(v1::JobCounts(), 4), "....");
}

TEST(Table, AlignsTextRightAlignsNumbersAndQuotesCsv) {
  Table table({"name", "n", "note"});
  table.AddRow({"gru", "12", "a, b"});
  table.AddRow({"lstm", "3", "say \"hi\""});
  EXPECT_EQ(table.ToText(),
            "name   n  note\n"
            "gru   12  a, b\n"
            "lstm   3  say \"hi\"\n");
  EXPECT_EQ(table.ToCsv(),
            "name,n,note\n"
            "gru,12,\"a, b\"\n"
            "lstm,3,\"say \"\"hi\"\"\"\n");
}

TEST(Format, RejectsAValueNamingTheAllowedOnes) {
  EXPECT_EQ(*ParseFormat("csv", {Format::kTable, Format::kCsv}), Format::kCsv);
  StatusOr<Format> bad = ParseFormat("xml", {Format::kTable, Format::kJson});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "--format: \"xml\" is not one of table, json");
}

TEST(Format, HumanNumbers) {
  EXPECT_EQ(FormatThousands(14078256), "14,078,256");
  EXPECT_EQ(FormatThousands(999), "999");
  EXPECT_EQ(FormatSi(1.5e12), "1.50T");
  EXPECT_EQ(FormatSi(27.0e15), "27.0P");
  EXPECT_EQ(FormatDuration(42), "42s");
  EXPECT_EQ(FormatDuration(185), "3m05s");
  EXPECT_EQ(FormatDuration(7620), "2h07m");
  EXPECT_EQ(FormatDuration(-1), "-");
  EXPECT_EQ(FactorHeader({"model.cell", "train.seed", "model.init"}),
            (std::vector<std::string>{"cell", "seed", "init"}));
}

TEST(ShellQuote, QuotesOnlyWhatAShellWouldReadOtherwise) {
  EXPECT_EQ(ShellQuote({"/usr/bin/env", "python3", "train.py", "--lr=0.01", "a,b:c@d%e+f"}),
            "/usr/bin/env python3 train.py --lr=0.01 a,b:c@d%e+f");
  EXPECT_EQ(ShellQuote({"--name=momentum sgd", "${args_json_file}", "", "it's", "$HOME"}),
            "'--name=momentum sgd' '${args_json_file}' '' 'it'\\''s' '$HOME'");
}

}  // namespace
}  // namespace ablate
