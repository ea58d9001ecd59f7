#!/usr/bin/env bash
# Sets the machine up (scripts/setup.sh), lints (the full run only), then
# runs every jest project (unit, integration, e2e). Arguments go to jest, e.g.
#   bash scripts/test.sh --selectProjects unit
#   bash scripts/test.sh dist/test/integration/embedded-etcd.test.js
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
if [ "$#" -eq 0 ]; then
  # Module map, file-size ceilings, unused code: eslint.config.js.
  printf 'test: npx eslint .\n'
  npx --no-install eslint . </dev/null
fi
if [ "$#" -gt 0 ]; then
  printf 'test: npx jest --ci --forceExit%s\n' "$(printf ' %q' "$@")"
else
  printf 'test: npx jest --ci --forceExit\n'
fi
# --forceExit: two full runs on 2026-12-07 (one passing, one not) stayed up after
# the summary (a handle left open in jest's main process, not found yet); without it CI
# would wait out its time limit. The exit status is still the tests'.
exec npx --no-install jest --ci --forceExit "$@" </dev/null
