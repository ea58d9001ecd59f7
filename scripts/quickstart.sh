#!/usr/bin/env bash
# From a fresh Debian machine to a task run on a three-node local cluster.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
if bash scripts/cluster.sh status >/dev/null 2>&1; then
  echo "quickstart: a local cluster is already running; using it"
else
  bash scripts/cluster.sh start 3
fi

echo "quickstart: node dist/src/bin/loom.js -N 127.0.0.1:8080 run ls -- -l"
node dist/src/bin/loom.js -N 127.0.0.1:8080 run ls -- -l

cat <<'DONE'

quickstart: the cluster keeps running in the background.
  list the nodes:  node dist/src/bin/loom.js -N 127.0.0.1:8080 nodes
  watch the keys:  ETCDCTL_API=3 etcdctl --endpoints http://127.0.0.1:2379 watch --prefix /task/status/
  stop it:         scripts/cluster.sh stop
DONE
