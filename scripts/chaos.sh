#!/usr/bin/env bash
# Runs the chaos driver by hand: a sweep on loopback while workers are killed
# (SIGKILL, SIGTERM), frozen past their lease (SIGSTOP/SIGCONT) and the
# coordinator is killed and restarted; then checks that every job was trained
# once and every curve is whole and equal to an undisturbed run.
#
#   scripts/chaos.sh                      # 10 minutes, 4 workers, 12 jobs
#   scripts/chaos.sh --duration 3600 --workers 8 --seeds 10 --steps 3000
#   scripts/chaos.sh --seed 1234 --keep   # replay a schedule, keep the logs
#
# Flags go to ablate-chaos (see --help); later ones override these defaults.
# BUILD selects the build directory (default: build).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
if [[ ! -x "$build/bin/ablate-chaos" ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target ablate-chaos
fi
exec "$build/bin/ablate-chaos" --bin-dir "$build/bin" \
  --duration 600 --workers 4 --seeds 4 --steps 2000 "$@"
