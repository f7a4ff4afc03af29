#!/usr/bin/env bash
# On a machine with one GPU and a pip PyTorch but no internet: build the
# trainer and its benchmark against that PyTorch's LibTorch, run the
# correctness tests on CUDA (CPU and CUDA agree on the same weights and data),
# and print ms/step per cell and layer-norm setting at the seed's size.
#   scripts/stage-gpu-deps.sh      # here, before: headers and GoogleTest to carry
#   scripts/gpu-check.sh           # there; ABLATE_DEPS_DIR defaults to .gpu-deps
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
build=${BUILD:-build-gpu}
deps=$(realpath "${ABLATE_DEPS_DIR:-.gpu-deps}")
prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
echo "LibTorch from $prefix ($("$python" -c 'import torch; print(torch.__version__, torch.version.cuda)'))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DABLATE_TRAINER_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$prefix" -DABLATE_DEPS_DIR="$deps" >"$build.configure.log" 2>&1 ||
  { tail -40 "$build.configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target model_test trainer_test cuda_test trainer_bench

echo "== correctness on CUDA"
ABLATE_REQUIRE_CUDA=1 "$build/tests/cuda_test"
"$build/tests/model_test" --gtest_brief=1
"$build/tests/trainer_test" --gtest_brief=1

echo "== ms/step at H=2000 B=100 T=200 V=256 ($(date -u +%F))"
printf '%-6s %-5s %10s %10s\n' cell ln ms/step bytes/s
for cell in lstm gru mgu; do
  for ln in "" --layer-norm; do
    json=$("$build/bench/trainer_bench" --device cuda --cell "$cell" $ln --hidden 2000 --batch 100 \
           --seq 200 --vocab 256 --steps 5 --warmup 2 --format json)
    "$python" -c 'import json,sys; r=json.loads(sys.argv[1]); print("%-6s %-5s %10.1f %10.0f" % (r["cell"], "on" if r["layer_norm"] else "off", 1000*r["step_seconds"], r["bytes_per_s"]))' "$json"
  done
done
