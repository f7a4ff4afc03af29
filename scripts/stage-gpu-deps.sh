#!/usr/bin/env bash
# Stages, here, everything scripts/gpu-check.sh needs on a lent GPU machine
# that has python3 with a CUDA PyTorch 2.11 but no network and none of
# Debian's libraries, into one folder under 60 MiB:
#   bin/            ablate-worker, cuda_test and trainer_bench built against
#                   the CUDA LibTorch of the GPU machines (scripts/cuda-build.sh,
#                   which needs `scripts/setup.sh cuda` first), and ablate and
#                   ablate-coordinator, which link no LibTorch, from the
#                   normal build
#   lib/            the Debian shared libraries those need (gRPC, protobuf,
#                   SQLite, yaml-cpp, curl, libzip, fmt, spdlog, OpenSSL and
#                   what they need), without glibc, libstdc++, LibTorch or CUDA
#   corpus.text8    4 MB of real English: Debian's GNU dictionary (dict-gcide)
#                   in text8 format
#   include/, googletest/   nlohmann-json, CLI11, zlib's headers and
#                   GoogleTest, for building the trainer there should the
#                   binaries not start
#   MANIFEST        every file with its size, and each library's package
#   scripts/stage-gpu-deps.sh [DIR]     (default .gpu-deps, git-ignored)
# The device tool carries it: `carry: [".gpu-deps"]`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu-deps}
build=${BUILD:-build}
cuda_build=${CUDA_BUILD:-build-cuda}
venv=${ABLATE_CUDA_VENV:-/opt/ablate-cuda}
limit_mib=60

scripts/cuda-build.sh "$cuda_build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target ablate ablate-coordinator

rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/lib"
cp "$cuda_build/bin/ablate-worker" "$cuda_build/tests/cuda_test" "$cuda_build/bench/trainer_bench" \
  "$build/bin/ablate" "$build/bin/ablate-coordinator" "$dir/bin/"
strip --strip-unneeded "$dir"/bin/*

# The libraries ldd resolves for them, less those the GPU machine brings:
# glibc and the compiler's runtime, and LibTorch with its CUDA libraries
# (its python3's torch package).
torch_lib=$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__) + "/lib")')
nvidia_libs=$(find "$(dirname "$(dirname "$torch_lib")")/nvidia" -name lib -type d | tr '\n' ':')
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libpthread\.|libdl\.|librt\.|libstdc\+\+|libgcc_s|libgomp|libtorch|libc10|libcaffe2|libshm|libcu|libnv|libcudnn|libnccl)'
unresolved=$(LD_LIBRARY_PATH="$torch_lib:$nvidia_libs" ldd "$dir"/bin/* | grep 'not found' || true)
if [[ -n "$unresolved" ]]; then
  echo "stage-gpu-deps: unresolved libraries:" >&2
  echo "$unresolved" >&2
  exit 1
fi
LD_LIBRARY_PATH="$torch_lib:$nvidia_libs" ldd "$dir"/bin/* |
  awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    cp -L "$path" "$dir/lib/$name"
  done

# Real English, not the repeated sentences of the tests.
if [[ ! -s runs/gcide.text8 ]]; then
  mkdir -p runs
  zcat /usr/share/dictd/gcide.dict.dz | "$build/bin/ablate-worker" data prepare - runs/gcide.text8
fi
head -c 4000000 runs/gcide.text8 >"$dir/corpus.text8"

# For a machine where the binaries do not start: what gpu-check.sh's
# trainer-only build there needs beyond CMake, nvcc and LibTorch.
mkdir -p "$dir/include"
cp -r /usr/include/nlohmann /usr/include/CLI /usr/include/zlib.h /usr/include/zconf.h "$dir/include/"
cp -r /usr/src/googletest "$dir/googletest"

{
  echo "# staged $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
  echo "# torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'), $(nvcc --version 2>/dev/null | tail -1 || echo 'nvcc ?')"
  (cd "$dir" && find . -type f ! -name MANIFEST -printf '%s %p\n' | sort -k2)
  for lib in "$dir"/lib/*; do
    name=$(basename "$lib")
    echo "lib $name: $(dpkg -S "$name" 2>/dev/null | head -1 | cut -d: -f1 || echo '?')"
  done
} >"$dir/MANIFEST"

size=$(du -sb "$dir" | cut -f1)
echo "staged $((size / 1048576)) MiB in $dir ($(find "$dir/lib" -type f | wc -l) libraries)"
if ((size > limit_mib * 1048576)); then
  echo "stage-gpu-deps: $dir is over $limit_mib MiB" >&2
  exit 1
fi
