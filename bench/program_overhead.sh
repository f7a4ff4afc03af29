#!/usr/bin/env bash
# The command path's cost per job (issue 16's target: under 100 ms): one
# worker runs N jobs of a program sweep whose program reports one metrics line
# and exits at once, so what is timed is the lease, the config file, the
# fork/exec of the program, reading its line, reporting it and completing the
# job. Beside it, in the same run, the same N jobs with a program that
# reports nothing (`true`), and N built-in trainer jobs of one step on the
# smallest model, the trainer path's own overhead.
#
#   bench/program_overhead.sh [BUILD] [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
jobs=${2:-200}
bin=$build/bin
work=$(mktemp -d)
trap 'kill $coordinator 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin/ablate-coordinator" --db "$work/bench.db" --listen 127.0.0.1:0 >"$work/coordinator.out" 2>"$work/coordinator.err" &
coordinator=$!
for _ in $(seq 100); do
  address=$(grep -o 'on 127.0.0.1:[0-9]*' "$work/coordinator.err" | head -1 | cut -d' ' -f2 || true)
  [[ -n "$address" ]] && break
  sleep 0.1
done
[[ -n "$address" ]] || { cat "$work/coordinator.err" >&2; exit 1; }

# 0 .. jobs-1 as a YAML list: one job per value.
values=$(seq -s, 0 $((jobs - 1)))
printf 'one line of text to train on, repeated. %.0s' $(seq 2000) >"$work/corpus.txt"

cat >"$work/report.yaml" <<EOF
name: report-one-line
command: [/bin/sh, -c, 'echo "{\"step\": 1, \"x\": 1}" >&3', "\${args}"]
parameters:
  i: {values: [$values]}
EOF
cat >"$work/silent.yaml" <<EOF
name: exit-at-once
command: [/bin/true, "\${args}"]
parameters:
  i: {values: [$values]}
EOF
cat >"$work/builtin.yaml" <<EOF
name: builtin-one-step
data: {path: $work/corpus.txt}
model: {hidden: 8, vocab: 256}
train: {batch: 1, seq: 8, steps: 1, log_every: 1, eval_every: 0, eval_bytes: 64}
schedule: {keep_checkpoints: none}
seeds: [$values]
EOF

# Launches one sweep, runs one worker until nothing is left, prints ms a job.
run() {
  local spec=$1 name=$2
  "$bin/ablate" launch "$spec" --coordinator "$address" >/dev/null
  local start end
  start=$(date +%s%N)
  "$bin/ablate-worker" --coordinator "$address" --name "w-$name" --threads 1 \
    --work-dir "$work/w-$name" --exit-when-idle --poll 0.05 2>"$work/worker-$name.err"
  end=$(date +%s%N)
  local finished
  finished=$(sqlite3 "$work/bench.db" \
    "select count(*) from jobs j join sweeps s on s.id = j.sweep_id where s.name = '$name' and j.state = 'done'")
  if [[ "$finished" != "$jobs" ]]; then
    echo "$name: only $finished of $jobs jobs done" >&2
    tail -5 "$work/worker-$name.err" >&2
    exit 1
  fi
  awk -v n="$jobs" -v ns=$((end - start)) -v name="$name" \
    'BEGIN { printf "%-18s %d jobs in %.2f s: %.1f ms a job\n", name, n, ns / 1e9, ns / 1e6 / n }'
}

echo "command path, one worker on loopback, $(nproc) cores"
run "$work/report.yaml" report-one-line
run "$work/silent.yaml" exit-at-once
run "$work/builtin.yaml" builtin-one-step
