#!/usr/bin/env bash
# What `npm run bench` needs beyond scripts/setup.sh: redis-server for the
# BullMQ peer figures (throughput and latency scenarios). Not on the test
# path: the test suite never needs Redis.
#
# Idempotent. Never fails the bench: if Redis cannot be installed it says why
# and exits 0, and the bench records the peer figures as not measured.
# LOOM_REDIS_BIN names another redis-server binary (then nothing is installed).
set -uo pipefail

step() { printf 'setup-peer: %s\n' "$*"; }
give_up() {
  printf 'setup-peer: warning: %s; the BullMQ peer figures will be reported as not measured\n' "$*" >&2
  exit 0
}

if [ -n "${LOOM_REDIS_BIN:-}" ]; then
  [ -x "$LOOM_REDIS_BIN" ] || give_up "LOOM_REDIS_BIN=$LOOM_REDIS_BIN is not an executable"
  step "redis: $LOOM_REDIS_BIN (LOOM_REDIS_BIN)"
  exit 0
fi
if command -v redis-server >/dev/null 2>&1; then
  step "redis: $(command -v redis-server) ($(redis-server --version 2>/dev/null | head -n 1))"
  exit 0
fi

# As scripts/setup.sh installs etcd: apt-get as root, or through `sudo -n`.
sudo=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); fi
command -v apt-get >/dev/null 2>&1 || give_up "redis-server is not installed and apt-get is not available (install it, or set LOOM_REDIS_BIN)"
if [ "$(id -u)" -ne 0 ] && [ "${#sudo[@]}" -eq 0 ]; then
  give_up "redis-server is not installed; run as root or install sudo (apt-get install -y redis-server)"
fi
apt_log=$(mktemp "${TMPDIR:-/tmp}/loom-apt.XXXXXX")
step "redis: not found; installing redis-server with apt-get (output: $apt_log)"
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$apt_log" 2>&1 ||
  ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    redis-server </dev/null >>"$apt_log" 2>&1; then
  tail -n 20 "$apt_log" >&2 || true
  give_up "installing redis-server with apt-get failed (full output in $apt_log)"
fi
rm -f "$apt_log"
command -v redis-server >/dev/null 2>&1 || give_up "apt-get installed redis-server but it is still not on PATH"
step "redis: installed $(command -v redis-server) ($(redis-server --version 2>/dev/null | head -n 1))"
# Where systemd runs, the package starts a system Redis on 127.0.0.1:6379.
# The bench runs its own servers on private ports; the system one would only
# add load to the machine being measured.
if [ -d /run/systemd/system ] && systemctl is-active --quiet redis-server 2>/dev/null; then
  step "redis: stopping and disabling the redis-server system service the package started"
  "${sudo[@]}" systemctl disable --now redis-server >/dev/null 2>&1 ||
    printf 'setup-peer: warning: could not stop the redis-server system service\n' >&2
fi
