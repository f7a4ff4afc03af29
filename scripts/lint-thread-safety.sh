#!/usr/bin/env bash
# Clang's thread-safety analysis over every source that takes a lock: each
# translation unit of the tree that includes common/mutex.h or
# common/thread_annotations.h, directly or through the tree's own headers,
# compiled with -fsyntax-only -Wthread-safety -Werror and the include paths
# and definitions the build gives it (BUILD_DIR/compile_commands.json, which
# CMake writes at configure time; the generated protobuf headers must be
# built). The build's own warning flags are left out: GCC builds the project,
# and clang checks only the locks. Exits non-zero when any file fails, with
# clang's messages.
#
#   scripts/lint-thread-safety.sh BUILD_DIR
#
# CLANGXX names the compiler (default clang++; scripts/setup.sh installs it),
# JOBS how many run at once (default: the machine's cores).
set -euo pipefail

if (($# != 1)); then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
root="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
build="$(cd "$1" && pwd)"
clangxx="${CLANGXX:-clang++}"
if ! command -v "$clangxx" >/dev/null; then
  echo "lint-thread-safety: $clangxx not found (scripts/setup.sh installs clang)" >&2
  exit 1
fi
if [[ ! -f "$build/compile_commands.json" ]]; then
  echo "lint-thread-safety: no $build/compile_commands.json: configure with CMake first" >&2
  exit 1
fi

exec python3 - "$root" "$build" "$clangxx" "${JOBS:-$(nproc)}" <<'EOF'
import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys

root, build, clangxx, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
LOCK_HEADERS = {"common/mutex.h", "common/thread_annotations.h"}
# Compiler arguments that name an output (dropped with it), and others dropped.
TAKES_OUTPUT = {"-o", "-MF", "-MT", "-MQ"}
DROPPED = {"-c", "-MD", "-MMD"}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def project_includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return set(INCLUDE.findall(f.read()))


# The tree's headers that bring in a lock header, to a fixed point.
headers = {}
for folder, dirs, files in os.walk(root):
    dirs[:] = [d for d in dirs if not d.startswith((".", "build"))]
    for name in files:
        if name.endswith(".h"):
            path = os.path.join(folder, name)
            headers[os.path.relpath(path, root)] = project_includes(path)
locking = set(LOCK_HEADERS)
grew = True
while grew:
    grew = False
    for header, includes in headers.items():
        if header not in locking and includes & locking:
            locking.add(header)
            grew = True

# One command per source file of the tree (not generated ones) that takes locks.
with open(os.path.join(build, "compile_commands.json")) as f:
    entries = json.load(f)
commands = {}
for entry in entries:
    source = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    if not source.endswith(".cc") or not source.startswith(root + os.sep):
        continue
    # Generated sources; a second target's copy; one removed since CMake ran.
    if source.startswith(build + os.sep) or source in commands or not os.path.exists(source):
        continue
    if not project_includes(source) & locking:
        continue
    argv = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    flags, args = [], iter(argv[1:])
    for arg in args:
        if arg in TAKES_OUTPUT:
            next(args, None)
        elif arg in DROPPED or arg.startswith("-W"):
            continue
        elif os.path.realpath(os.path.join(entry["directory"], arg)) != source:
            flags.append(arg)
    commands[source] = (entry["directory"], [clangxx, *flags, "-fsyntax-only",
                                             "-Wthread-safety", "-Werror", source])

if not commands:
    print("lint-thread-safety: no source includes a lock header; is the build configured?")
    sys.exit(1)


def lint(source):
    directory, argv = commands[source]
    run = subprocess.run(argv, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    return source, run.returncode, run.stdout


failed = 0
with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
    for source, code, output in pool.map(lint, sorted(commands)):
        name = os.path.relpath(source, root)
        if code == 0:
            print(f"lint-thread-safety: ok      {name}")
        else:
            failed += 1
            print(f"lint-thread-safety: FAILED  {name}")
            print("".join("    " + line + "\n" for line in output.splitlines()))
print(f"lint-thread-safety: {len(commands) - failed} of {len(commands)} files pass")
sys.exit(1 if failed else 0)
EOF
