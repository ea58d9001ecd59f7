#!/usr/bin/env bash
# Builds the project's Dockerfile (the image docker-compose.yml runs) on the
# private engine of scripts/docker-up.sh and runs a node from it, as root
# (tasks under pool uids) and as the image's unprivileged user `loom`.
#
# Where a registry is reachable the Dockerfile's base comes from it. Where
# none is (CI here), the base node:20-bookworm-slim is made locally: a
# Debian bookworm minbase rootfs from debootstrap (Debian's repositories are
# reachable) with this machine's Node 20 copied in, then `docker import`ed
# under that name into the private engine only. The build runs with the
# host's network (the engine has no bridge) for apt-get and npm ci.
#
#   LOOM_DOCKER_SOCK  the engine's socket (default /tmp/loom-docker/docker.sock)
# Exit 0: built and both runs worked. Takes 3-5 minutes on a 2-core box.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export LOOM_DOCKER_SOCK=${LOOM_DOCKER_SOCK:-/tmp/loom-docker/docker.sock}
BASE=node:20-bookworm-slim
IMAGE=loom:image-check
step() { printf 'docker-image-check: %s\n' "$*"; }
dk() { docker -H "unix://$LOOM_DOCKER_SOCK" "$@"; }

was_up=0
[ -S "$LOOM_DOCKER_SOCK" ] && timeout 10 docker -H "unix://$LOOM_DOCKER_SOCK" version >/dev/null 2>&1 && was_up=1
bash scripts/docker-up.sh >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/loom-image-check.XXXXXX")
containers=()
cleanup() {
  for c in "${containers[@]}"; do dk rm -f "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
  # An engine this script started is stopped again (its images stay for the next run).
  [ "$was_up" = 1 ] || bash scripts/docker-down.sh >/dev/null 2>&1 || true
}
trap cleanup EXIT

if dk image inspect "$BASE" >/dev/null 2>&1; then
  step "base $BASE: present"
elif timeout 20 dk pull "$BASE" >/dev/null 2>&1; then
  step "base $BASE: pulled"
else
  step "base $BASE: no registry answers; making it from a debootstrap rootfs and this machine's node"
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$node_major" = 20 ] || { echo "docker-image-check: this machine has Node $node_major, the base needs 20" >&2; exit 1; }
  if ! command -v debootstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >"$work/apt.log" 2>&1 ||
      { tail -n 20 "$work/apt.log" >&2; exit 1; }
  fi
  rootfs=$work/rootfs
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  # As the official image has it: node in /usr/local/bin, npm beside it.
  node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  cp "$(readlink -f "$(command -v node)")" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$node_prefix/lib/node_modules/npm" "$rootfs/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  # This machine's trust comes along, as in any image made on it: its extra CAs
  # (taken in when the Dockerfile installs ca-certificates) and npm's cafile.
  if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
    cp -a /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
  fi
  npmrc=$(npm config get globalconfig 2>/dev/null || true)
  if [ -n "$npmrc" ] && [ -f "$npmrc" ]; then mkdir -p "$rootfs/usr/local/etc" && cp "$npmrc" "$rootfs/usr/local/etc/npmrc"; fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | dk import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' --message 'local stand-in for node:20-bookworm-slim (debootstrap + host node)' - "$BASE" >/dev/null
  step "base $BASE: imported"
fi

# docker-compose.yml, as a compose tool reads it (when this machine has one; its flags are checked by test/unit/deploy-manifests.test.ts).
if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f docker-compose.yml config -q && step "docker-compose.yml: valid for $(docker-compose version --short 2>/dev/null || echo docker-compose)"
fi
step "building $IMAGE from Dockerfile (output: $work/build.log)"
if ! dk build --network host -t "$IMAGE" . >"$work/build.log" 2>&1; then
  tail -n 30 "$work/build.log" >&2
  exit 1
fi
step "built: $(dk image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
LOOM="node $ROOT/dist/src/bin/loom.js"
# One node from the image (its own etcd member), a task through the host's CLI, the uid it ran as.
# Sets TASK_OUT. Runs in this shell (not in $(...)), so cleanup knows its container.
run_node() { # name, user ("" = the image's default)
  local name=$1 user=$2 api peer client
  api=$(free_port); peer=$(free_port); client=$(free_port)
  dk rm -f "$name" >/dev/null 2>&1 || true # left by a run that was killed
  containers+=("$name")
  dk run -d --name "$name" --network host ${user:+--user "$user"} "$IMAGE" node --name "$name" \
    --listen "127.0.0.1:$api" --peer-listen "http://127.0.0.1:$peer" --client-listen "http://127.0.0.1:$client" --data-dir /data >/dev/null
  local up=0
  for _ in $(seq 1 60); do
    if dk logs "$name" 2>&1 | grep "node $name up" >/dev/null; then up=1; break; fi
    [ "$(dk inspect -f '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.5
  done
  [ "$up" = 1 ] || { dk logs "$name" >&2; echo "docker-image-check: $name never came up" >&2; exit 1; }
  TASK_OUT=$($LOOM -N "127.0.0.1:$api" run -- sh -c 'echo "uid=$(id -u) node=$LOOM_NODE"')
  step "$name (${user:-image default user}): task printed: $TASK_OUT"
}
run_node loom-image-root ""
case $TASK_OUT in
  "uid=0 "*|"") echo "docker-image-check: a task of the root node ran as root or printed nothing: $TASK_OUT" >&2; exit 1 ;;
  *" node=loom-image-root") ;;
  *) echo "docker-image-check: unexpected task output: $TASK_OUT" >&2; exit 1 ;;
esac
run_node loom-image-user loom
[ "$TASK_OUT" = "uid=10001 node=loom-image-user" ] || { echo "docker-image-check: as user loom the task printed: $TASK_OUT" >&2; exit 1; }
[ "$(dk inspect -f '{{.Config.User}}' loom-image-user)" = loom ] || { echo "docker-image-check: loom-image-user does not run as loom" >&2; exit 1; }
step "ok: the Dockerfile builds here and its nodes run tasks (under a pool uid as root; as loom, uid 10001)"
