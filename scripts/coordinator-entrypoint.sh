#!/usr/bin/env bash
# Entrypoint of the coordinator image, and exactly what the integration tests
# run: maps ABLATE_* environment variables to ablate-coordinator flags and
# execs it, so the coordinator itself receives the container's SIGTERM.
#
#   ABLATE_DB              SQLite database file (required; its folder is created)
#   ABLATE_LISTEN          HOST:PORT to serve on (default 0.0.0.0:50051)
#   ABLATE_CHECKPOINT_DIR  where job checkpoints are kept (default $ABLATE_DB.ckpt)
#   ABLATE_SYNC            normal, or full to survive a power loss too
#   ABLATE_LOG_LEVEL       trace, debug, info, warn or error
#   ABLATE_TOKEN_FILE      file holding the token every client must present
#                          (required when ABLATE_LISTEN is not loopback)
#   ABLATE_TLS_CERT        server certificate chain (PEM): serve TLS only
#   ABLATE_TLS_KEY         its private key (PEM)
#   ABLATE_TLS_CLIENT_CA   CA (PEM) whose certificates clients must present
#   ABLATE_BIN_DIR         folder of the binaries (default: found on PATH)
#
# Arguments are passed on after those flags. `coordinator-entrypoint.sh health`
# instead asks the coordinator on ABLATE_LISTEN's port, through the standard
# gRPC health service (which needs no token), whether it serves: exit 0 when
# it does (the image's HEALTHCHECK). Under TLS it trusts ABLATE_TLS_CA, else
# the server's own certificate, and expects the name ABLATE_TLS_SERVER_NAME;
# with ABLATE_TLS_CLIENT_CA set it has no client certificate to present.
set -euo pipefail

coordinator="${ABLATE_BIN_DIR:+${ABLATE_BIN_DIR}/}ablate-coordinator"
listen="${ABLATE_LISTEN:-0.0.0.0:50051}"

if [[ "${1:-}" == health ]]; then
  shift
  health=(--coordinator "127.0.0.1:${listen##*:}")
  if [[ -n "${ABLATE_TLS_CERT:-}" ]]; then
    health+=(--tls-ca "${ABLATE_TLS_CA:-$ABLATE_TLS_CERT}")
    if [[ -n "${ABLATE_TLS_SERVER_NAME:-}" ]]; then
      health+=(--tls-server-name "$ABLATE_TLS_SERVER_NAME")
    fi
  fi
  # Here ABLATE_TLS_CERT and _KEY are the server's, not a client certificate.
  exec env -u ABLATE_TLS_CERT -u ABLATE_TLS_KEY "$coordinator" health "${health[@]}" "$@"
fi

: "${ABLATE_DB:?set ABLATE_DB to the SQLite database file of the coordinator}"
# A fresh volume may hold nothing yet.
mkdir -p "$(dirname "$ABLATE_DB")"

flags=(--db "$ABLATE_DB" --listen "$listen")
# add_flag FLAG VALUE: passes FLAG only when VALUE is set.
add_flag() {
  if [[ -n "$2" ]]; then flags+=("$1" "$2"); fi
}
add_flag --checkpoint-dir "${ABLATE_CHECKPOINT_DIR:-}"
add_flag --sync "${ABLATE_SYNC:-}"
add_flag --log-level "${ABLATE_LOG_LEVEL:-}"
add_flag --token-file "${ABLATE_TOKEN_FILE:-}"
add_flag --tls-cert "${ABLATE_TLS_CERT:-}"
add_flag --tls-key "${ABLATE_TLS_KEY:-}"
add_flag --tls-client-ca "${ABLATE_TLS_CLIENT_CA:-}"

exec "$coordinator" "${flags[@]}" "$@"
