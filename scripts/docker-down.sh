#!/usr/bin/env bash
# Stops the private Docker engine scripts/docker-up.sh started (by its pid
# file). Its data (images, stopped containers) stays in $LOOM_DOCKER_DIR/data;
# pass --purge to delete that too. Idempotent.
set -uo pipefail

DIR=${LOOM_DOCKER_DIR:-/tmp/loom-docker}
SOCK=${LOOM_DOCKER_SOCK:-$DIR/docker.sock}
PIDFILE=$DIR/docker.pid

step() { printf 'docker-down: %s\n' "$*"; }

pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/cmdline" 2>/dev/null; then
  step "stopping dockerd $pid"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    step "dockerd $pid still running after 30s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  step "stopped"
else
  step "no dockerd running from $PIDFILE"
fi
rm -f "$PIDFILE" "$SOCK"
if [ "${1:-}" = "--purge" ]; then
  # Mounts left by a killed engine would make rm fail on busy directories.
  grep -o " $DIR/[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$DIR/data" "$DIR/exec"
  step "purged $DIR/data and $DIR/exec"
fi
