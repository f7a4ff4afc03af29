#!/usr/bin/env bash
# Fuzzes the sweep spec reader (common/spec.cc, common/run_config.cc) with
# libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer for a
# bounded time: scripts/fuzz-spec.sh [SECONDS] (default 60).
#
# Built with clang straight from the sources, outside CMake: the normal build
# never needs clang. Starts from sweeps/*.yaml and tests/fuzz/seeds; inputs
# that reach new code are kept in $FUZZ_DIR/corpus (default build-fuzz/) and
# reused by the next run. A finding is written to $FUZZ_DIR/crash-* (or
# leak-*, timeout-*) and the script exits non-zero; reproduce it with
#   build-fuzz/spec_fuzzer build-fuzz/crash-...
set -euo pipefail

seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${FUZZ_DIR:-$root/build-fuzz}

"$root/scripts/setup.sh" fuzz
mkdir -p "$out/corpus"

sources=(
  "$root/tests/fuzz/spec_fuzzer.cc"
  "$root/common/spec.cc"
  "$root/common/run_config.cc"
  "$root/common/config_hash.cc"
  "$root/common/status.cc"
)
if [[ ! -x "$out/spec_fuzzer" || -n "$(find "${sources[@]}" "$root/common" -newer "$out/spec_fuzzer" -name '*.[ch]*' -print -quit)" ]]; then
  echo "fuzz-spec: building $out/spec_fuzzer" >&2
  clang++ -std=c++17 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root" "${sources[@]}" -lyaml-cpp -lcrypto -o "$out/spec_fuzzer"
fi

seeds=("$root/tests/fuzz/seeds")
if compgen -G "$root/sweeps/*.yaml" >/dev/null; then
  seeds+=("$root/sweeps")
fi
echo "fuzz-spec: fuzzing for ${seconds} s" >&2
# -max_len: specs are small; the parser's 1 MiB cap is tested directly.
# -timeout: a single input taking seconds is a finding (hang).
exec "$out/spec_fuzzer" \
  -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -dict="$root/tests/fuzz/spec.dict" -artifact_prefix="$out/" -print_final_stats=1 \
  "$out/corpus" "${seeds[@]}"
