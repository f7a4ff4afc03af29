#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given
# binaries link directly, one a line, so an image's runtime stage installs
# exactly those (apt brings their own dependencies) and no list is kept by
# hand to drift from the build. Run it where the binaries were built.
#
#   runtime-packages.sh [--bundled DIR]... [--ignore REGEX]... BINARY...
#
#   --bundled DIR   libraries under DIR travel with the image as files
#                   (LibTorch's zip), not as packages
#   --ignore REGEX  sonames something else provides at run time (libcuda.so.1,
#                   which the NVIDIA container toolkit mounts)
#
# A library that is not found, or that no package owns outside the bundled
# folders, is an error: the image would not start.
set -euo pipefail

bundled=()
ignored=()
while (($#)); do
  case "$1" in
    --bundled)
      bundled+=("$(realpath "$2")")
      shift 2
      ;;
    --ignore)
      ignored+=("$2")
      shift 2
      ;;
    -*)
      echo "runtime-packages: unknown option $1" >&2
      exit 2
      ;;
    *) break ;;
  esac
done
if (($# == 0)); then
  echo "usage: runtime-packages.sh [--bundled DIR]... [--ignore REGEX]... BINARY..." >&2
  exit 2
fi

# owner PATH: prints the package that owns PATH. dpkg may have recorded the
# file under /lib or /usr/lib (the /usr merge), or only its link target.
owner() {
  local candidate found
  for candidate in "$1" "$(realpath "$1")" "/usr$1" "${1#/usr}"; do
    if found=$(dpkg-query -S "$candidate" 2>/dev/null); then
      found="${found%%:*}"
      echo "${found%%,*}"
      return 0
    fi
  done
  return 1
}

# is_ignored SONAME, is_bundled PATH: whether the library is left out.
is_ignored() {
  local pattern
  for pattern in "${ignored[@]}"; do
    if [[ "$1" =~ $pattern ]]; then return 0; fi
  done
  return 1
}
is_bundled() {
  local dir real
  real=$(realpath "$1")
  for dir in "${bundled[@]}"; do
    if [[ "$real" == "$dir"/* ]]; then return 0; fi
  done
  return 1
}

packages=()
failed=0
for binary in "$@"; do
  resolved=$(ldd "$binary")
  for soname in $(objdump -p "$binary" | awk '$1 == "NEEDED" { print $2 }'); do
    if is_ignored "$soname"; then continue; fi
    path=$(awk -v so="$soname" '$1 == so && $2 == "=>" { print $3 }' <<<"$resolved")
    if [[ -z "$path" || "$path" == not ]]; then
      echo "runtime-packages: $binary needs $soname, which is not found" >&2
      failed=1
      continue
    fi
    if is_bundled "$path"; then continue; fi
    if package=$(owner "$path"); then
      packages+=("$package")
    else
      echo "runtime-packages: $binary needs $path, which no package owns" >&2
      failed=1
    fi
  done
done
if ((failed)); then exit 1; fi
if ((${#packages[@]})); then printf '%s\n' "${packages[@]}" | sort -u; fi
