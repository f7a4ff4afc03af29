#!/usr/bin/env bash
# Installs every Debian 12 package ablate needs to build, test and run its demo.
# Idempotent: packages already present are skipped, so `make demo` and `make test`
# can call it every time at the cost of one dpkg query.
# `setup.sh fuzz` also installs what scripts/fuzz-spec.sh needs (clang and its
# libFuzzer/sanitizer runtimes), which the normal build does not use.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libsqlite3-dev sqlite3 libyaml-cpp-dev
  libgtest-dev libgmock-dev
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libcurl4-openssl-dev libzip-dev zip unzip
  dict-gcide python3 python3-torch
  libssl-dev yamllint shellcheck docker-compose
  openssl
  # report_test renders `ablate report` in headless Chromium and decodes its PNG.
  chromium libpng-dev
  # bench/coordinator_load compares against Optuna's SQLite storage.
  python3-optuna
)
if [[ "${1:-}" == fuzz ]]; then
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
