#!/usr/bin/env bash
# Lints the deployment files offline (no container engine or cluster needed):
# bash -n on every script, shellcheck and yamllint where installed
# (scripts/setup.sh installs them), docker/check_deploy.py's consistency
# checks of the Dockerfiles, compose, Kubernetes and Slurm files, and, when
# their tools are on the machine, `docker compose config` (or Debian's
# docker-compose) and `kubectl kustomize`. Exits non-zero when any check fails; a missing tool is
# a skip, said on one line.
#
#   scripts/lint-deploy.sh [ROOT]    (ROOT: the repository, default this one)
set -euo pipefail

# The checks' own files come from this repository, whatever ROOT is linted.
here="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
root="$(cd "${1:-$here}" && pwd)"
cd "$root"
shopt -s nullglob

failed=0
# check NAME COMMAND...: runs a check and reports it on one line.
check() {
  local name="$1" output
  shift
  if output=$("$@" 2>&1); then
    echo "lint-deploy: ok      $name"
  else
    echo "lint-deploy: FAILED  $name"
    printf '%s\n' "$output" | sed 's/^/    /'
    failed=1
  fi
}
skip() {
  echo "lint-deploy: skipped $1 ($2)"
}

scripts=(scripts/*.sh docker/*.sh docker/slurm/*.sbatch)
deploy_scripts=(scripts/*-entrypoint.sh scripts/lint-*.sh docker/*.sh docker/slurm/*.sbatch)
yaml_files=(docker/*.yaml docker/k8s/*.yaml)

for script in "${scripts[@]}"; do
  check "bash -n $script" bash -n "$script"
done

if command -v shellcheck >/dev/null; then
  if ((${#deploy_scripts[@]})); then check shellcheck shellcheck "${deploy_scripts[@]}"; fi
else
  skip shellcheck "not installed"
fi

if command -v yamllint >/dev/null; then
  if ((${#yaml_files[@]})); then
    check yamllint yamllint --strict -c "$here/docker/yamllint.yaml" "${yaml_files[@]}"
  fi
else
  skip yamllint "not installed"
fi

# Debian's python3 has python3-yaml (a dependency of yamllint); another
# python3 on PATH may not.
python=""
for candidate in /usr/bin/python3 python3; do
  if "$candidate" -c 'import yaml' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [[ -n "$python" ]]; then
  check check_deploy.py "$python" "$here/docker/check_deploy.py" "$root"
else
  skip check_deploy.py "no python3 with the yaml module"
fi

compose_files=(docker/compose*.yaml)
if ((${#compose_files[@]} == 0)); then
  :
elif docker compose version >/dev/null 2>&1; then
  compose_args=()
  for file in "${compose_files[@]}"; do compose_args+=(-f "$file"); done
  check "docker compose config" docker compose "${compose_args[@]}" config --quiet
elif command -v docker-compose >/dev/null; then
  # Debian's Compose v1 checks the Compose schema too, but predates the
  # top-level name: key; each file is checked on its own, from stdin.
  # shellcheck disable=SC2317  # called through check
  compose_v1_config() {
    sed "/^name: /d" "$1" | docker-compose --project-directory docker -f - config --quiet
  }
  for file in "${compose_files[@]}"; do
    check "docker-compose config $file" compose_v1_config "$file"
  done
else
  skip "docker compose config" "neither docker compose nor docker-compose"
fi

if [[ ! -e docker/k8s/kustomization.yaml ]]; then
  :
elif command -v kubectl >/dev/null; then
  check "kubectl kustomize" kubectl kustomize docker/k8s
else
  skip "kubectl kustomize" "kubectl not installed"
fi

exit "$failed"
