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
  printf 'test: npx jest --ci%s\n' "$(printf ' %q' "$@")"
else
  printf 'test: npx jest --ci\n'
fi
exec npx --no-install jest --ci "$@" </dev/null
