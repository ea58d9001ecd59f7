#!/usr/bin/env bash
# Starts a private Docker engine for loom's container tests, and makes sure the
# offline test image loom-busybox:latest exists in it. Idempotent.
#
#   LOOM_DOCKER_SOCK  socket of the engine (default /tmp/loom-docker/docker.sock)
#   LOOM_DOCKER_DIR   its state: data/, exec/, docker.pid, dockerd.log (default /tmp/loom-docker)
#
# Installs docker.io and busybox-static with apt-get when they are missing.
# The engine runs with no bridge and no iptables rules (containers get
# --network none or host), so it touches nothing of the machine's networking.
# No registry is needed: the image is imported from a busybox rootfs.
#
# Exit 0: the engine answers and the image exists. Exit 3: docker cannot be
# had here; the last line on stderr says why (callers skip with that reason).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIR=${LOOM_DOCKER_DIR:-/tmp/loom-docker}
SOCK=${LOOM_DOCKER_SOCK:-$DIR/docker.sock}
IMAGE=loom-busybox:latest
PIDFILE=$DIR/docker.pid
LOG=$DIR/dockerd.log
START_TIMEOUT_S=30

step() { printf 'docker-up: %s\n' "$*"; }
fail() {
  printf 'docker-up: UNAVAILABLE: %s\n' "$*" >&2
  exit 3
}

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); fi
fi

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || fail "$1 is missing and apt-get is not available to install it"
  if [ "$(id -u)" -ne 0 ] && [ "${#sudo[@]}" -eq 0 ]; then
    fail "$1 is missing; run as root or install it yourself (apt-get install -y ${*:2})"
  fi
  local apt_log
  apt_log=$(mktemp "${TMPDIR:-/tmp}/loom-apt.XXXXXX")
  step "$1: not found; installing ${*:2} with apt-get (output: $apt_log)"
  if [ "$apt_updated" -eq 0 ]; then
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$apt_log" 2>&1; then
      tail -n 20 "$apt_log" >&2 || true
      fail "apt-get update failed (full output in $apt_log)"
    fi
    apt_updated=1
  fi
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${@:2}" </dev/null >>"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2 || true
    fail "apt-get install ${*:2} failed (full output in $apt_log)"
  fi
  rm -f "$apt_log"
}

dk() { docker -H "unix://$SOCK" "$@"; }

# Does an engine answer on $SOCK? (The CLI negotiates the API version down.)
engine_answers() {
  [ -S "$SOCK" ] || return 1
  timeout 10 docker -H "unix://$SOCK" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# --- packages ----------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  apt_install docker docker.io
  command -v dockerd >/dev/null 2>&1 || fail "apt-get installed docker.io but dockerd is still not on PATH"
  command -v docker >/dev/null 2>&1 || fail "apt-get installed docker.io but docker is still not on PATH"
fi
step "docker: $(command -v dockerd) ($(dockerd --version 2>/dev/null | head -n 1))"

busybox_bin() {
  local b
  for b in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null)"; do
    [ -n "$b" ] && [ -x "$b" ] && { printf '%s\n' "$b"; return 0; }
  done
  return 1
}
BUSYBOX=$(busybox_bin) || {
  apt_install busybox busybox-static
  BUSYBOX=$(busybox_bin) || fail "apt-get installed busybox-static but no busybox binary was found"
}
step "busybox: $BUSYBOX"

# --- engine ------------------------------------------------------------------
mkdir -p "$DIR" || fail "cannot create $DIR"
if engine_answers; then
  step "engine: already answering on unix://$SOCK"
else
  # A pid file whose process still runs is an engine that does not answer (yet).
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null; then
    step "engine: dockerd $(cat "$PIDFILE") is running but not answering; waiting for it"
  else
    rm -f "$PIDFILE" "$SOCK"
    step "engine: starting dockerd on unix://$SOCK (log: $LOG)"
    # Its own containerd (under exec-root) and namespace: a system engine on
    # this machine, if any, is left alone. setsid: Ctrl-C to the caller does
    # not stop it; scripts/docker-down.sh does.
    setsid dockerd \
      --host "unix://$SOCK" \
      --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
      --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$PIDFILE" \
      --containerd-namespace loom --containerd-plugins-namespace loom-plugins \
      >>"$LOG" 2>&1 </dev/null &
    started_pid=$!
  fi
  deadline=$((SECONDS + START_TIMEOUT_S))
  until engine_answers; do
    if [ -n "${started_pid:-}" ] && ! kill -0 "$started_pid" 2>/dev/null; then
      tail -n 15 "$LOG" >&2 || true
      why=$(grep -E 'level=(fatal|error)|failed to start|Error|error' "$LOG" | tail -n 1 | cut -c1-400)
      fail "dockerd cannot start here (it exited): ${why:-see $LOG}"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 15 "$LOG" >&2 || true
      fail "dockerd did not answer on unix://$SOCK within ${START_TIMEOUT_S}s (log: $LOG)"
    fi
    sleep 0.5
  done
  step "engine: dockerd $(cat "$PIDFILE" 2>/dev/null || echo '?') answers ($(dk version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}' 2>/dev/null))"
fi

# --- test image ----------------------------------------------------------------
if dk image inspect "$IMAGE" >/dev/null 2>&1; then
  step "image: $IMAGE present"
else
  step "image: building $IMAGE from $BUSYBOX"
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/loom-rootfs.XXXXXX") || fail "cannot create a temp dir"
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs"/{bin,tmp,etc,proc,sys,dev,root,home} || fail "cannot build the rootfs in $rootfs"
  chmod 1777 "$rootfs/tmp"
  cp "$BUSYBOX" "$rootfs/bin/busybox" || fail "cannot copy $BUSYBOX"
  # A dynamically linked busybox (Debian's 'busybox' package) needs its libraries.
  if ldd "$BUSYBOX" >/dev/null 2>&1; then
    for lib in $(ldd "$BUSYBOX" | grep -oE '/[^ ]+'); do
      mkdir -p "$rootfs$(dirname "$lib")" && cp -L "$lib" "$rootfs$lib" ||
        fail "cannot copy $lib (needed by the dynamically linked $BUSYBOX)"
    done
  fi
  # Every applet this busybox has, plus the ones the tests rely on.
  applets=$("$BUSYBOX" --list 2>/dev/null || true)
  for a in $applets sh ls echo sleep cat true false env head tail dd yes kill ps id ip wc grep; do
    [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
  if ! tar -C "$rootfs" -c . | dk import \
    --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
    --message 'loom test image: busybox' - "$IMAGE" >/dev/null; then
    fail "docker import of $IMAGE failed"
  fi
  rm -rf "$rootfs"
  trap - EXIT
  step "image: $IMAGE imported"
fi
step "ready: LOOM_DOCKER_SOCK=$SOCK"
