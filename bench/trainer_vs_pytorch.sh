#!/usr/bin/env bash
# The trainer benchmark: ablate's C++ trainer (bench/trainer_bench) and a
# plain PyTorch eager implementation of the same model (bench/reference_rnn.py
# on Debian's python3-torch, the same LibTorch 1.13 underneath), run one after
# the other in the same invocation, same threads, same OpenBLAS kernels.
#
#   bench/trainer_vs_pytorch.sh [BUILD_DIR] [OUT_DIR]
set -euo pipefail
build=${1:-build}
out=${2:-runs/bench}
threads=${THREADS:-$(nproc)}
mkdir -p "$out"
bench="$build/bench/trainer_bench"
python=/usr/bin/python3

# trainer_bench re-executes itself with OPENBLAS_CORETYPE when OpenBLAS falls
# back to generic kernels; give the reference the same kernels for fairness.
# (It also restarts with its heap on transparent huge pages, worker/startup.h;
# the reference keeps glibc's defaults, as a PyTorch user's script would.)
core=$("$bench" --hidden 8 --batch 2 --seq 4 --steps 1 --warmup 0 --matmul-n 64 --format json |
       "$python" -c 'import json,sys; print(json.load(sys.stdin)["blas"])')
export OPENBLAS_CORETYPE="$core"

run() {  # name, shared args, trainer steps, reference steps, trainer-only args
  local name=$1 args=$2 steps=$3 ref_steps=$4 own=${5:-}
  # shellcheck disable=SC2086
  "$bench" $args $own --threads "$threads" --steps "$steps" --warmup 1 --format json \
    >"$out/$name.ablate.json"
  # shellcheck disable=SC2086
  "$python" bench/reference_rnn.py $args --threads "$threads" --steps "$ref_steps" --warmup 1 \
    >"$out/$name.pytorch.json"
  "$python" - "$name" "$out/$name.ablate.json" "$out/$name.pytorch.json" <<'PY'
import json, sys
name, a, p = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
print(f"{name}: {a['cell']}{'+ln' if a['layer_norm'] else ''} H={a['hidden']} B={a['batch']} "
      f"T={a['seq']} V={a['vocab']}, {a['threads']} threads, OpenBLAS {a['blas']}")
print(f"  ablate   {a['step_seconds']*1000:10.1f} ms/step {a['bytes_per_s']:10.0f} bytes/s "
      f"{a['gflops']:7.1f} GFLOP/s = {100*a['matmul_share']:5.1f}% of matmul "
      f"({a['matmul_gflops']:.1f} GFLOP/s)  peak {a['peak_memory_mib']:.0f} MiB")
if a.get('paired_share'):
    print(f"  ablate   {100*a['paired_share']:.1f}% of the mean matmul rate over as long as a step, beside each step "
          f"(median; {100*a['paired_share_min']:.1f}% to {100*a['paired_share_max']:.1f}%)")
flops = a['gflops'] * a['step_seconds']
print(f"  pytorch  {p['step_seconds']*1000:10.1f} ms/step {p['bytes_per_s']:10.0f} bytes/s "
      f"{flops/p['step_seconds']:7.1f} GFLOP/s = "
      f"{100*flops/p['step_seconds']/a['matmul_gflops']:5.1f}% of matmul  "
      f"peak {p['peak_memory_mib']:.0f} MiB")
print(f"  speedup  {p['step_seconds']/a['step_seconds']:.2f}x")
PY
}

run small "--cell gru --layer-norm --hidden 128 --batch 32 --seq 100 --vocab 256" 30 10
run seed "--cell gru --layer-norm --hidden 2000 --batch 100 --seq 200 --vocab 256" 3 2 --paired
