// What `ablate serve` shows, made from Source's answers: the HTML pages (in
// the report's look, drawn by the report's own renderers) and the JSON of
// its endpoints. Pure functions: no I/O, no clock but the StatusView's.
//
// A page that updates live carries data-live-url on its <body>; its script
// polls that URL (LiveJson's answer) and replaces only the <section>s whose
// HTML changed, so nothing flickers and nothing reloads. The body records
// data-live-updates (answers applied) and data-live-state ("live" or
// "offline: ...") for a person and for tests.
#ifndef ABLATE_CLI_SERVE_CONTENT_H_
#define ABLATE_CLI_SERVE_CONTENT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/report.h"
#include "cli/status_view.h"
#include "proto/ablate.pb.h"

namespace ablate {

// The list of every sweep with its progress, each linked to its page.
ReportSection SweepsSection(const v1::ListSweepsResponse& sweeps);

// The live part of a sweep's page: its progress bar, counts and ETA, each
// running job with its step, rate, last training bpc and ETA (linked to its
// page), and the workers that run its jobs.
ReportSection ProgressSection(const v1::SweepStatus& sweep, const StatusView& view,
                              const v1::ListWorkersResponse& workers);

// A page around live `sections`: a header with `title` (and `subtitle`,
// escaped), the sections in order, and the polling script for `live_url`
// every `poll_ms`.
std::string LivePage(const std::string& title, const std::string& subtitle,
                     const std::vector<ReportSection>& sections, const std::string& live_url,
                     int poll_ms);

// What a live page's poll gets: {"version": V, "poll_ms": P, "sections":
// [{"id": ..., "hash": ..., "html": ...}]}. `version` changes whenever a
// section does.
std::string LiveJson(const std::vector<ReportSection>& sections, int poll_ms);
// The version LiveJson gives these sections (a poll that already has it is
// answered 204 with no body).
std::string SectionsVersion(const std::vector<ReportSection>& sections);

// A job's page sections: its state and facts; its curves (one figure per
// split with the points as stored; the test split is its final point); its
// config; its attempts and events. The store keeps no job logs; the page says
// so.
std::vector<ReportSection> JobSections(const v1::GetJobResponse& job);

// /api/sweeps/SWEEP: `ablate status SWEEP --format json`'s object, then
// "id", "eta_s" (null when unknown) and "running": per running job its
// job_id, factors, attempt, worker, step, steps_total, bytes_per_s,
// train_bpc, started_ms and eta_s.
nlohmann::ordered_json SweepStatusJson(const v1::SweepStatus& sweep, const StatusView& view);

// /api/jobs/ID: the job's id, sweep (id, name), order, state, factors,
// config, attempts, worker, device, last_error, created_ms, started_ms,
// finished_ms, step, final ({train_bpc, valid_bpc, test_bpc, steps,
// wall_time}, null until done), curves ({split: {step, bpc, bytes_seen,
// wall_time} as parallel lists}) and events ({time_ms, kind, detail,
// worker_id}, oldest first).
nlohmann::ordered_json JobJson(const v1::GetJobResponse& job);

// A page that says `message` (escaped) under `title`.
std::string MessagePage(const std::string& title, const std::string& message);
// The sign-in form: a token field posted to /login, which sends the reader
// on to `next`; `message` (escaped) above it when not empty.
std::string LoginPage(const std::string& next, const std::string& message);

}  // namespace ablate

#endif  // ABLATE_CLI_SERVE_CONTENT_H_
