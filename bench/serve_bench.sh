#!/usr/bin/env bash
# serve_bench: how soon `ablate serve`'s page of a 10,008-job sweep is
# interactive in headless Chromium. Uses results_bench's database (the
# seed's grid with ~556 seeds, 1,000 curve points per job; built once and
# cached), serves it with `ablate serve --db`, and loads /sweeps/bench
# twice through Selenium (cli/testdata/serve_browser.py): cold, the first
# visit, which shows the progress while the server collects the report on
# a thread of its own, and warm, once the report's sections are cached.
# Prints the navigation timings (milliseconds from navigation start) of
# each load, and when the report was ready.
#
#   bench/serve_bench.sh [BUILD_DIR] [DB_PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
db=${2:-${TMPDIR:-/tmp}/ablate_results_bench.db}

# Builds the database when it is missing; times no query.
"$build/bench/results_bench" --db "$db" --only "no query" --runs 1 >/dev/null

log=$(mktemp)
"$build/bin/ablate" serve bench --db "$db" --listen 127.0.0.1:0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
url=$(grep -o "http://[0-9.:]*" "$log")
echo -n "cold: "
/usr/bin/python3 cli/testdata/serve_browser.py timing "$url/sweeps/bench"
# The first visit shows the progress at once and leaves the report to the
# collector's thread: how long until the page holds it (what a first visit
# waited for when the report was collected on the request).
/usr/bin/python3 - "$url/sweeps/bench" <<'EOF'
import sys, time, urllib.request
start = time.monotonic()
while b'id="report-pending"' in urllib.request.urlopen(sys.argv[1]).read():
    time.sleep(0.2)
print(f"report ready: {(time.monotonic() - start) * 1000:.0f} ms after the cold load")
EOF
echo -n "warm: "
/usr/bin/python3 cli/testdata/serve_browser.py timing "$url/sweeps/bench"
