#!/usr/bin/env bash
# Builds the CUDA worker: every CUDA source compiled with nvcc, and the worker,
# the GPU tests and the trainer benchmark linked against a CUDA LibTorch, in
# BUILD_DIR (incremental). The CLI and the coordinator link no LibTorch: the
# normal build's serve GPU machines as they are. Then, since this machine may
# have no GPU, runs what a CUDA build runs on the CPU: the CUDA path's own
# code on the CPU, the GPU tests (which skip without a GPU) and one short
# training run of the CUDA-linked worker.
#   scripts/cuda-build.sh [BUILD_DIR [TORCH_CMAKE_DIR]]
# BUILD_DIR defaults to build-cuda; TORCH_CMAKE_DIR to the share/cmake of the
# torch that scripts/setup.sh cuda installs.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-cuda}
venv=${ABLATE_CUDA_VENV:-/opt/ablate-cuda}
torch_cmake=${2:-$("$venv/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)}
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [[ -z "$torch_cmake" || ! -d "$torch_cmake" ]]; then
  echo "cuda-build: no CUDA LibTorch (run scripts/setup.sh cuda, or pass its share/cmake)" >&2
  exit 1
fi
[[ -x "$nvcc" ]] || { echo "cuda-build: nvcc not found" >&2; exit 1; }

mkdir -p "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DABLATE_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$torch_cmake" -DCMAKE_CUDA_COMPILER="$nvcc" >"$build/configure.log" 2>&1 ||
  { tail -40 "$build/configure.log" >&2; exit 1; }
cmake --build "$build" -j"${JOBS:-$(nproc)}" --target ablate-worker cuda_test \
  recurrence_device_test trainer_bench

echo "== the CUDA path on the CPU, in the CUDA build"
"$build/tests/recurrence_device_test" --gtest_brief=1
echo "== the GPU tests (they skip without a GPU)"
"$build/tests/cuda_test" --gtest_brief=1
echo "== the CUDA-linked worker trains on the CPU"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for _ in $(seq 60); do
  echo "the gated recurrent unit with layer norm did best of all the cells we tried"
done | "$build/bin/ablate-worker" data prepare - "$work/corpus.text8"
cat >"$work/run.yaml" <<YAML
data: {path: $work/corpus.text8}
model: {cell: gru, layer_norm: true, hidden: 16, vocab: 27}
train: {batch: 2, seq: 16, steps: 3, log_every: 1, eval_every: 3, precision: bf16}
YAML
"$build/bin/ablate-worker" train "$work/run.yaml" --device cpu --format json | tail -1
