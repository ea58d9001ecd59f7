#!/usr/bin/env bash
# Compiles the node's two native helpers next to the compiled runner
# (dist/src/runner/): loom-spawner, which starts tasks with posix_spawn (see
# src/runner/spawner.ts), and loom-confine, which every task's command runs
# through (cgroups, capabilities, no_new_privs, uid: see src/runner/confine.ts).
# Part of `npm run build`.
# Without a C compiler both are skipped with a warning; scripts/setup.sh
# installs one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cc=${CC:-cc}
if ! command -v "$cc" >/dev/null 2>&1; then
  printf 'build: warning: no C compiler (%s); loom-spawner and loom-confine not built: nodes start tasks with Node'"'"'s spawn (slower) and, as root, refuse to run tasks (they cannot confine them)\n' "$cc" >&2
  exit 0
fi
mkdir -p dist/src/runner
for name in loom-spawner loom-confine; do
  src=src/runner/spawner/$name.c
  out=dist/src/runner/$name
  if [ -x "$out" ] && [ "$out" -nt "$src" ]; then continue; fi
  "$cc" -O2 -Wall -Wextra -Werror -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
done
