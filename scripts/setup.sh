#!/usr/bin/env bash
# Installs every Debian 12 package ablate needs to build, test and run its demo.
# Idempotent: packages already present are skipped, so `make demo` and `make test`
# can call it every time at the cost of one dpkg query.
# `setup.sh fuzz` also installs what scripts/fuzz-spec.sh needs beyond clang:
# its libFuzzer and sanitizer runtimes.
# `setup.sh cuda` also installs what building the CUDA worker needs beyond
# NVIDIA's compiler (nvcc 13, which it expects in /usr/local/cuda or on the
# PATH): the CUDA LibTorch of the GPU machines, PyTorch 2.11's pip wheel, in
# a virtual environment at $ABLATE_CUDA_VENV (default /opt/ablate-cuda). The
# build and the tests take LibTorch from there; nothing at run time does.
set -euo pipefail

cuda_torch_version=2.11.0
cuda_venv=${ABLATE_CUDA_VENV:-/opt/ablate-cuda}

packages=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libsqlite3-dev sqlite3 libyaml-cpp-dev libboost-math-dev
  libgtest-dev libgmock-dev
  libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libcurl4-openssl-dev libzip-dev zip unzip
  dict-gcide python3 python3-torch
  # The run protocol's Python module is installed with pip from the checkout.
  python3-pip python3-setuptools
  libssl-dev yamllint shellcheck docker-compose
  # The lint test checks the locks with clang's thread-safety analysis.
  clang
  openssl
  # report_test renders `ablate report` in headless Chromium and decodes its PNG.
  chromium libpng-dev
  # `ablate serve` speaks HTTP with cpp-httplib; serve_test drives its pages in
  # Chromium through Selenium and chromedriver.
  libcpp-httplib-dev chromium-driver python3-selenium
  # bench/coordinator_load compares against Optuna's SQLite storage.
  python3-optuna
)
if [[ "${1:-}" == fuzz ]]; then
  packages+=(libclang-rt-14-dev)
fi
if [[ "${1:-}" == cuda ]]; then
  packages+=(python3-venv)
fi

# The CUDA LibTorch, once the Debian packages are in (below).
install_cuda_torch() {
  local nvcc
  nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  if [[ ! -x "$nvcc" ]]; then
    echo "setup: nvcc not found (PATH or /usr/local/cuda/bin): install NVIDIA's CUDA toolkit 13" >&2
    exit 1
  fi
  if "$cuda_venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$cuda_torch_version' or not torch.version.cuda)" 2>/dev/null; then
    return
  fi
  echo "setup: installing torch==$cuda_torch_version (CUDA) into $cuda_venv" >&2
  python3 -m venv "$cuda_venv"
  "$cuda_venv/bin/pip" install --quiet --disable-pip-version-check "torch==$cuda_torch_version"
}

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  [[ "${1:-}" == cuda ]] && install_cuda_torch
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
[[ "${1:-}" == cuda ]] && install_cuda_torch
exit 0
