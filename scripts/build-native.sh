#!/usr/bin/env bash
# Compiles loom-spawner (src/runner/spawner/loom-spawner.c), the helper a node
# starts its tasks with (posix_spawn; see src/runner/spawner.ts), next to the
# compiled runner: dist/src/runner/loom-spawner. Part of `npm run build`.
# Without a C compiler the helper is skipped with a warning and nodes start
# tasks with Node's spawn (correct, only slower); scripts/setup.sh installs one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

src=src/runner/spawner/loom-spawner.c
out=dist/src/runner/loom-spawner
cc=${CC:-cc}
if ! command -v "$cc" >/dev/null 2>&1; then
  printf 'build: warning: no C compiler (%s); loom-spawner not built, nodes will start tasks with Node'"'"'s spawn (slower)\n' "$cc" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
if [ -x "$out" ] && [ "$out" -nt "$src" ]; then exit 0; fi
"$cc" -O2 -Wall -Wextra -Werror -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
