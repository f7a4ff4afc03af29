#!/usr/bin/env bash
# Stages what a trainer-only build needs beyond a compiler, CMake and LibTorch
# (nlohmann-json and CLI11 headers, GoogleTest sources) from this machine's
# Debian packages into a folder that travels to a GPU box with no network:
#   scripts/stage-gpu-deps.sh [DIR]     (default .gpu-deps, git-ignored)
# then on the GPU box: scripts/gpu-check.sh (it looks in .gpu-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-deps}
for f in /usr/include/nlohmann/json.hpp /usr/include/CLI/CLI.hpp /usr/src/googletest/CMakeLists.txt; do
  [[ -e "$f" ]] || { echo "stage-gpu-deps: $f is missing; run scripts/setup.sh" >&2; exit 1; }
done
rm -rf "$dir"
mkdir -p "$dir/include"
cp -r /usr/include/nlohmann /usr/include/CLI "$dir/include/"
cp -r /usr/src/googletest "$dir/googletest"
echo "staged $(du -sh "$dir" | cut -f1) in $dir"
