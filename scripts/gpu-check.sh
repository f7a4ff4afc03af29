#!/usr/bin/env bash
# Every GPU check of ablate in one call, on a lent GPU machine with python3's
# CUDA PyTorch 2.11 and no network, from a checkout plus the folder that
# scripts/stage-gpu-deps.sh stages here (carried as .gpu-deps):
#   a. correctness: worker/cuda_test.cc with ABLATE_REQUIRE_CUDA=1 (the CUDA
#      kernels against the CPU's on the same weights and data, every
#      gradient; tf32 and bf16 validation bpc within 0.02 of fp32 after 300
#      steps; a job stopped and resumed repeating bit for bit)
#   b. speed at the seed's size (B100 T200 H2000 V256): ms/step and peak GPU
#      memory of the six cells in fp32, tf32 and bf16; beside them the
#      reference path, and PyTorch's nn.GRU and nn.LSTM (cuDNN) and an eager
#      layer-norm GRU (bench/cudnn_reference.py)
#   c. end to end: a coordinator and `ablate-worker --gpus all` train a 6-job
#      sweep on the staged corpus; the worker gets SIGTERM mid-job and is
#      started again; every job ends done once and results name the GPU
#   d. jobs per hour with 1, 2 and 4 processes sharing the GPU
#      (--jobs-per-gpu) at H128 and H512
# Prints as it goes and a summary last; writes OUT_DIR/gpu-check.json (every
# number), gpu-check.log and the raw outputs. About 7 minutes on an H100.
#   scripts/gpu-check.sh [OUT_DIR]     (default: $OUT, else gpu-check-out)
# GPU_CHECK_SMOKE=1 runs the same steps on the CPU at toy sizes: what a
# machine without a GPU can check of this script and the staged folder.
# Where the staged binaries do not start (another system's libraries), the
# script builds the trainer's targets there and skips the end-to-end check;
# GPU_CHECK_BUILD=1 does that anyway.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
deps=$(realpath "${ABLATE_DEPS_DIR:-.gpu-deps}")
out=$(realpath -m "${1:-${OUT:-gpu-check-out}}")
smoke=${GPU_CHECK_SMOKE:-0}
python=${PYTHON:-python3}
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
started=$(date +%s)
echo "gpu-check $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'), smoke=$smoke"
[[ -x "$deps/bin/ablate-worker" ]] || { echo "no $deps/bin/ablate-worker: run scripts/stage-gpu-deps.sh here first"; exit 1; }

torch_lib=$("$python" -c 'import os, torch; print(os.path.dirname(torch.__file__) + "/lib")') ||
  { echo "python3 has no torch"; exit 1; }
nvidia_libs=$(find "$(dirname "$(dirname "$torch_lib")")/nvidia" -name lib -type d 2>/dev/null | tr '\n' ':')
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$out/gpu.txt"

# The staged binaries run with the staged Debian libraries and python3's
# LibTorch; python3 itself keeps the machine's own libraries.
libs="$deps/lib:$torch_lib:$nvidia_libs${LD_LIBRARY_PATH:-}"
run() { LD_LIBRARY_PATH="$libs" "$@"; }
bin=$deps/bin test_bin=$deps/bin full=1
if [[ "${GPU_CHECK_BUILD:-0}" == 1 ]] || run ldd "$bin"/* | grep -q 'not found' ||
  ! run "$bin/trainer_bench" --help >/dev/null 2>&1; then
  # Binaries built on Debian 12 may not start on another system: build the
  # trainer, its GPU tests and benchmark here instead (nvcc, CMake and
  # python3's LibTorch; the headers and GoogleTest are staged). The end to
  # end check needs the whole worker, which needs Debian's gRPC: skipped.
  echo "the staged binaries do not run here; building the trainer-only targets:"
  run ldd "$bin"/* | grep 'not found' | sort -u | head
  run "$bin/trainer_bench" --help 2>&1 | head -3
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  if ! cmake -S . -B "$out/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DABLATE_TRAINER_ONLY=ON -DABLATE_CUDA=ON -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
      -DCMAKE_PREFIX_PATH="$("$python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
      -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
      -DABLATE_DEPS_DIR="$deps" -DZLIB_INCLUDE_DIR="$deps/include" \
      -DZLIB_LIBRARY="$(find "$deps/lib" -name 'libz.so*' | head -1)" >"$out/build.log" 2>&1 ||
    ! cmake --build "$out/build" -j"$(nproc)" --target cuda_test trainer_bench >>"$out/build.log" 2>&1; then
    tail -30 "$out/build.log"
    exit 1
  fi
  test_bin=$out/built full=0
  mkdir -p "$test_bin"
  cp "$out/build/tests/cuda_test" "$out/build/bench/trainer_bench" "$test_bin/"
fi

if [[ "$smoke" == 1 ]]; then
  device=cpu kernel=cuda-on-cpu hidden=64 batch=8 seq=20 steps=2 warmup=1
  e2e_hidden=16 e2e_steps=400 worker_device=(--device cpu) sizes=(16 32) py_steps=1 run_for=0.3
else
  device=cuda kernel=cuda hidden=2000 batch=100 seq=200 steps=8 warmup=2
  e2e_hidden=256 e2e_steps=2000 worker_device=(--gpus all) sizes=(128 512) py_steps=5 run_for=1
fi

echo "== a. correctness"
if [[ "$smoke" == 1 ]]; then
  run timeout 300 "$test_bin/cuda_test" --gtest_output="json:$out/cuda_test.json" | tail -3
else
  ABLATE_REQUIRE_CUDA=1 ABLATE_TEST_CORPUS="$deps/corpus.text8" run timeout 300 \
    "$test_bin/cuda_test" --gtest_output="json:$out/cuda_test.json" |
    grep -E '^\[  (FAILED|PASSED)|bpc|Failure|expected|Which is'
fi

echo "== b. ms/step at H$hidden B$batch T$seq V256"
bench() {  # bench NAME FLAGS...: one trainer_bench run, its JSON line into bench.jsonl
  local name=$1
  shift
  if line=$(run timeout 120 "$test_bin/trainer_bench" --device "$device" --hidden "$hidden" --batch "$batch" \
      --seq "$seq" --vocab 256 --format json "$@" 2>"$out/bench-$name.err" | tail -1) && [[ -n "$line" ]]; then
    echo "$line" >>"$out/bench.jsonl"
    "$python" -c 'import json,sys; r=json.loads(sys.argv[1]); print("%-24s %9.2f ms/step %8.0f MiB" % (sys.argv[2], 1000*r["step_seconds"], r["peak_gpu_mib"]))' "$line" "$name"
  else
    echo "$name: failed ($(tail -1 "$out/bench-$name.err"))"
  fi
}
rm -f "$out/bench.jsonl" "$out/pytorch.jsonl"
for precision in tf32 bf16 fp32; do
  for cell in gru lstm mgu; do
    for ln in --layer-norm ""; do
      bench "$cell${ln:+-ln}-$precision" --cell "$cell" $ln --kernel "$kernel" --precision "$precision" \
        --steps "$steps" --warmup "$warmup"
    done
  done
done
for cell in gru lstm mgu; do
  for ln in --layer-norm ""; do
    bench "reference-$cell${ln:+-ln}-tf32" --cell "$cell" $ln --kernel reference --precision tf32 \
      --steps 2 --warmup 1
  done
done
timeout 240 "$python" bench/cudnn_reference.py --device "$device" --hidden "$hidden" --batch "$batch" \
  --seq "$seq" --vocab 256 --steps "$py_steps" --warmup 1 2>"$out/pytorch.err" | tee "$out/pytorch.jsonl" |
  "$python" -c 'import json,sys
for l in sys.stdin: r=json.loads(l); print("pytorch %-8s %-5s %9.2f ms/step %8s MiB" % (r["model"], r["precision"], r["ms_per_step"], "%.0f" % r["peak_mib"] if r["peak_mib"] else "-"))'

end_to_end() {
e2e=$out/e2e
rm -rf "$e2e"
mkdir -p "$e2e"
port=$((20000 + RANDOM % 20000))
address=127.0.0.1:$port
cat >"$e2e/sweep.yaml" <<YAML
name: gpu-check
data: {path: $deps/corpus.text8}
model: {hidden: $e2e_hidden, vocab: 27}
train: {batch: 32, seq: 100, lr: 0.003, steps: $e2e_steps, log_every: 10, eval_every: 200,
        eval_bytes: 20000, checkpoint_every: 50}
grid: {cell: [lstm, gru, mgu], layer_norm: [true, false]}
schedule: {lease_seconds: 10}
YAML
# Started directly, not through run(), so that $! is the process itself.
LD_LIBRARY_PATH="$libs" "$bin/ablate-coordinator" --db "$e2e/sweep.db" --listen "$address" \
  >"$e2e/coordinator.log" 2>&1 &
coordinator=$!
for _ in $(seq 50); do run "$bin/ablate-coordinator" health --coordinator "$address" >/dev/null 2>&1 && break; sleep 0.2; done
run "$bin/ablate" launch "$e2e/sweep.yaml" --coordinator "$address"
worker() {
  LD_LIBRARY_PATH="$libs" "$bin/ablate-worker" --coordinator "$address" "${worker_device[@]}" \
    --name gpu-check --work-dir "$e2e/work" --exit-when-idle >>"$e2e/worker.log" 2>&1 &
  echo $!
}
status() { run "$bin/ablate" status gpu-check --coordinator "$address" --format json 2>/dev/null; }
running() { status | "$python" -c 'import json,sys; print(json.load(sys.stdin)["jobs"]["running"])' 2>/dev/null || echo 0; }
first=$(worker)
for _ in $(seq 600); do [[ $(running) -ge 1 ]] && break; sleep 0.1; done
sleep "$run_for"
kill -TERM "$first"
timeout 60 bash -c "while kill -0 $first 2>/dev/null; do sleep 0.2; done" || echo "the worker did not exit within 60 s of SIGTERM"
echo "stopped the worker mid-job: $(status)"
second=$(worker)
timeout 300 bash -c "while kill -0 $second 2>/dev/null; do sleep 1; done" || echo "the restarted worker did not finish within 300 s"
status | tee "$e2e/status.json"
echo
run "$bin/ablate" results gpu-check --coordinator "$address" --group-by none --format json >"$e2e/results.json"
run "$bin/ablate" results gpu-check --coordinator "$address" --group-by none | tail -12
kill "$coordinator" 2>/dev/null
wait "$coordinator" 2>/dev/null
# From the database: every job done and completed once; the job the
# SIGTERM released leased again from its checkpoint; every curve whole, a
# point every 10 steps and none twice (the table's key would refuse one).
"$python" - "$e2e/sweep.db" "$e2e_steps" <<'PY' | tee "$e2e/db.json"
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
steps = int(sys.argv[2])
jobs = db.execute("SELECT id, state FROM jobs ORDER BY id").fetchall()
def per_job(sql):
    return dict(db.execute(sql).fetchall())
points = per_job("SELECT job_id, COUNT(*) FROM curve_points WHERE metric = 'train_bpc' GROUP BY job_id")
completed = per_job("SELECT job_id, COUNT(*) FROM events WHERE kind = 'complete' GROUP BY job_id")
released = per_job("SELECT job_id, COUNT(*) FROM events WHERE kind = 'release' GROUP BY job_id")
resumed = [d for (d,) in db.execute("SELECT detail FROM events WHERE kind = 'lease' "
                                    "AND detail NOT LIKE '%from step 0'")]
report = {"jobs": [{"id": i, "state": s, "completed": completed.get(i, 0),
                    "released": released.get(i, 0), "train_points": points.get(i, 0)}
                   for i, s in jobs],
          "resumed_leases": resumed,
          "devices": [d for (d,) in db.execute("SELECT DISTINCT device FROM workers")]}
report["ok"] = (len(jobs) == 6 and all(s == "done" and completed.get(i) == 1 for i, s in jobs)
                and sum(released.values()) >= 1 and len(resumed) >= 1
                and all(points.get(i, 0) == steps // 10 for i, _ in jobs))
print(json.dumps(report))
PY
}
echo "== c. end to end: 6 jobs, a worker stopped mid-job and started again"
if [[ $full == 1 ]]; then
  end_to_end
else
  echo "skipped: the whole worker needs the staged binaries"
fi

echo "== d. jobs per hour with N processes on one GPU"
rm -f "$out/shared.jsonl"
for h in "${sizes[@]}"; do
  for n in 1 2 4; do
    pids=()
    for i in $(seq "$n"); do
      run timeout 120 "$test_bin/trainer_bench" --device "$device" --kernel "$kernel" --hidden "$h" --batch 100 \
        --seq 200 --vocab 256 --cell gru --layer-norm --steps $((steps * 3)) --warmup "$warmup" \
        --threads 1 --format json >"$out/shared-$h-$n-$i.json" 2>/dev/null &
      pids+=($!)
    done
    wait "${pids[@]}"
    "$python" - "$h" "$n" "$out" <<'PY' | tee -a "$out/shared.jsonl"
import json, sys
h, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rates = []
for i in range(1, n + 1):
    try:
        rates.append(1 / json.loads(open(f"{out}/shared-{h}-{n}-{i}.json").read().splitlines()[-1])["step_seconds"])
    except Exception:
        pass
steps_per_s = sum(rates)
print(json.dumps({"hidden": h, "processes": n, "finished": len(rates), "steps_per_s": steps_per_s,
                  "jobs_per_hour_45000_steps": steps_per_s * 3600 / 45000}))
PY
  done
done

echo "== summary ($(($(date +%s) - started)) s)"
"$python" - "$out" "$smoke" <<'PY'
import json, os, sys
out, smoke = sys.argv[1], sys.argv[2] == "1"
def lines(name):
    path = os.path.join(out, name)
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
report = {"smoke": smoke, "gpu": open(os.path.join(out, "gpu.txt")).read().strip()}
try:
    tests = json.load(open(os.path.join(out, "cuda_test.json")))
    report["correctness"] = {"tests": tests["tests"], "failures": tests["failures"],
                             "disabled": tests.get("disabled", 0),
                             "failed": [t["name"] for s in tests["testsuites"] for t in s["testsuite"]
                                        if t.get("failures")]}
except Exception as e:
    report["correctness"] = {"error": str(e)}
bench = lines("bench.jsonl")
report["speed"] = [r for r in bench if r["kernel"] != "reference"]
report["reference"] = [r for r in bench if r["kernel"] == "reference"]
report["pytorch"] = lines("pytorch.jsonl")
e2e = {}
try:
    e2e["status"] = json.load(open(os.path.join(out, "e2e", "status.json")))
    e2e["results"] = json.load(open(os.path.join(out, "e2e", "results.json")))
    e2e["database"] = json.load(open(os.path.join(out, "e2e", "db.json")))
    named = smoke or "cuda" in json.dumps(e2e["results"])
    e2e["ok"] = e2e["database"]["ok"] and named
except Exception as e:
    e2e["error"] = str(e)
    e2e["ok"] = False
report["end_to_end"] = e2e
report["jobs_per_gpu"] = lines("shared.jsonl")
json.dump(report, open(os.path.join(out, "gpu-check.json"), "w"), indent=1)

def ms(cell, ln, precision, rows):
    for r in rows:
        if r["cell"] == cell and r["layer_norm"] == ln and r["precision"] == precision:
            return 1000 * r["step_seconds"]
    return None
def fmt(v):
    return "%.2f" % v if v is not None else "-"
print("cell     ln   fp32 ms  tf32 ms  bf16 ms  reference(tf32)  peak MiB(tf32)")
for cell in ("gru", "lstm", "mgu"):
    for ln in (True, False):
        peak = next((r["peak_gpu_mib"] for r in report["speed"] if r["cell"] == cell
                     and r["layer_norm"] == ln and r["precision"] == "tf32"), None)
        print("%-8s %-4s %8s %8s %8s %16s %15s" % (cell, "on" if ln else "off",
              fmt(ms(cell, ln, "fp32", report["speed"])), fmt(ms(cell, ln, "tf32", report["speed"])),
              fmt(ms(cell, ln, "bf16", report["speed"])), fmt(ms(cell, ln, "tf32", report["reference"])),
              fmt(peak)))
for r in report["pytorch"]:
    print("pytorch %-7s %-5s %8.2f ms %8s MiB" % (r["model"], r["precision"], r["ms_per_step"],
                                                  fmt(r["peak_mib"])))
c = report["correctness"]
print("correctness:", "%d tests, %d failures %s" % (c.get("tests", 0), c.get("failures", 0),
                                                   c.get("failed", c.get("error", ""))))
print("end to end:", "ok" if e2e["ok"] else "FAILED",
      e2e.get("database", e2e.get("error", "")))
for r in report["jobs_per_gpu"]:
    print("H%-4d %d process(es): %.1f steps/s, %.1f jobs of 45,000 steps an hour" % (
        r["hidden"], r["processes"], r["steps_per_s"], r["jobs_per_hour_45000_steps"]))
print("wrote", os.path.join(out, "gpu-check.json"))
PY
