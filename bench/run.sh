#!/usr/bin/env bash
# `make bench`: every benchmark, each with its baseline measured in the same
# run. Results go to stdout and to runs/bench/*.json; BENCHMARKS.md records
# the numbers and the method.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
out=runs/bench
mkdir -p "$out"

# --- Trainer: fused C++ trainer vs plain PyTorch eager, same LibTorch --------
bench/trainer_vs_pytorch.sh "$build" "$out"
# The recurrent kernel over weights on 4 KiB pages against huge pages.
"$build/bench/pages_bench" --rounds 30 | tee "$out/pages_bench.txt"
# The same kernel with its threads claiming panels ahead or in turn.
"$build/bench/pages_bench" --rounds 100 --compare claim | tee "$out/pages_bench_claim.txt"
# The same kernel with the next slice's prefetch issued by the first tile or
# spread over every tile, and with slices 256 deep or kDepthBlock deep.
"$build/bench/pages_bench" --rounds 100 --compare prefetch | tee "$out/pages_bench_prefetch.txt"
"$build/bench/pages_bench" --rounds 100 --compare depth | tee "$out/pages_bench_depth.txt"

# --- Coordinator: 1,000 simulated workers over gRPC, then Optuna on SQLite ---
"$build/bench/coordinator_load" --json "$out/coordinator_load.json"
# 1,000 program jobs reporting 10 named metrics a second each, beside the
# same load of the built-in trainer's train points.
for named in 0 10; do
  "$build/bench/coordinator_load" --phase rate --batch 10 --rate 10000 --seconds 20 \
    --named-metrics "$named" --no-optuna --json "$out/coordinator_load_named_$named.json"
done

# --- Programs as jobs: the command path's cost a job, beside the trainer's ----
bench/program_overhead.sh "$build" 200 | tee "$out/program_overhead.txt"

# --- Results: `ablate results` / `ablate curves` on a 10-million-point sweep --
# (beside the naive SQL; the database is built once and cached)
"$build/bench/results_bench" --runs 5 | tee "$out/results_bench.txt"

# --- Serve: the page of that 10,008-job sweep in headless Chromium ----------
bench/serve_bench.sh "$build" | tee "$out/serve_bench.txt"
