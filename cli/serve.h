// `ablate serve`: a sweep live in a browser, and the same data as JSON.
//
//   serve [SWEEP] (--db PATH | --coordinator ADDR) [--listen 127.0.0.1:8080]
//         [--token-file PATH] [--https-cert PEM --https-key PEM] [--poll S]
//
// Pages: / (every sweep), /sweeps/SWEEP (what `ablate report` shows, drawn
// by the report's own renderers, plus progress and ETA per running job and
// the workers; updated in place as results arrive), /jobs/ID (a job's
// curves, config, attempts and events). JSON: /api/sweeps,
// /api/sweeps/SWEEP, /api/sweeps/SWEEP/results, /api/sweeps/SWEEP/curves,
// /api/sweeps/SWEEP/effects, /api/jobs/ID, /api/workers (README).
//
// It reads only through Source: a database file opened read-only, or a
// coordinator's read queries. It never writes.
//
// Access: with a token (--token-file, $ABLATE_TOKEN: the coordinator's),
// every request needs it, as "Authorization: Bearer TOKEN" or as the cookie
// the sign-in form at /login sets; a wrong or missing one gets 401. Without
// a token it listens on loopback only, and refuses to start on any other
// address. --https-cert and --https-key serve HTTPS.
#ifndef ABLATE_CLI_SERVE_H_
#define ABLATE_CLI_SERVE_H_

namespace CLI {
class App;
}

namespace ablate {

// Registers the serve subcommand on `app`.
void AddServeCommand(CLI::App* app);

}  // namespace ablate

#endif  // ABLATE_CLI_SERVE_H_
