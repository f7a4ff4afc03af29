#!/usr/bin/env bash
# Entrypoint of the worker images (CPU and CUDA), of the Slurm job script,
# and exactly what the integration tests run: maps ABLATE_* environment
# variables to ablate-worker flags and execs it, so the worker itself receives
# the container's SIGTERM (it checkpoints, uploads and releases its job).
#
#   ABLATE_COORDINATOR     HOST:PORT of the coordinator (required)
#   ABLATE_GPUS            all, or indices such as 0,2: one worker per GPU,
#                          named $ABLATE_NAME/gpuI
#   ABLATE_JOBS_PER_GPU    N workers share each GPU of ABLATE_GPUS, named
#                          $ABLATE_NAME/gpuI.J (default 1; needs ABLATE_GPUS)
#   ABLATE_DEVICE          auto, cpu or cuda:N, for a single worker
#                          (when ABLATE_GPUS is empty)
#   ABLATE_THREADS         CPU threads per worker (default: all cores)
#   ABLATE_DATA_DIR        corpus cache (text8 is fetched there once)
#   ABLATE_WORK_DIR        local checkpoint folder (default: a temp folder)
#   ABLATE_NAME            worker name, stable across restarts (default HOST-PID)
#   ABLATE_POLL            seconds between lease attempts when idle
#   ABLATE_EXIT_WHEN_IDLE  1 or true: exit once no job is pending or running
#   ABLATE_TOKEN_FILE      file holding the coordinator's token
#   ABLATE_BIN_DIR         folder of the binaries (default: found on PATH)
#
# ablate-worker reads ABLATE_TOKEN, ABLATE_TLS_CA, ABLATE_TLS_CERT and
# ABLATE_TLS_KEY itself.
#
# Arguments are passed on after those flags. A first argument of `train` or
# `data` runs that ablate-worker subcommand instead, with the arguments as
# given (e.g. `data fetch --data-dir /var/cache/ablate` to fill a volume).
set -euo pipefail

worker="${ABLATE_BIN_DIR:+${ABLATE_BIN_DIR}/}ablate-worker"

case "${1:-}" in
  train | data) exec "$worker" "$@" ;;
esac

: "${ABLATE_COORDINATOR:?set ABLATE_COORDINATOR to HOST:PORT of the coordinator}"

flags=(--coordinator "$ABLATE_COORDINATOR")
# add_flag FLAG VALUE: passes FLAG only when VALUE is set.
add_flag() {
  if [[ -n "$2" ]]; then flags+=("$1" "$2"); fi
}
if [[ -n "${ABLATE_GPUS:-}" ]]; then
  flags+=(--gpus "$ABLATE_GPUS")
else
  add_flag --device "${ABLATE_DEVICE:-}"
fi
add_flag --jobs-per-gpu "${ABLATE_JOBS_PER_GPU:-}"
add_flag --threads "${ABLATE_THREADS:-}"
add_flag --data-dir "${ABLATE_DATA_DIR:-}"
add_flag --work-dir "${ABLATE_WORK_DIR:-}"
add_flag --name "${ABLATE_NAME:-}"
add_flag --poll "${ABLATE_POLL:-}"
add_flag --token-file "${ABLATE_TOKEN_FILE:-}"
case "${ABLATE_EXIT_WHEN_IDLE:-}" in
  1 | true | yes) flags+=(--exit-when-idle) ;;
  "" | 0 | false | no) ;;
  *)
    echo "worker-entrypoint: ABLATE_EXIT_WHEN_IDLE=${ABLATE_EXIT_WHEN_IDLE}: expected 1, true, 0 or false" >&2
    exit 2
    ;;
esac

exec "$worker" "${flags[@]}" "$@"
