#!/usr/bin/env bash
# Installs what loom needs on a fresh Debian machine, then builds it.
# Idempotent: steps already done are skipped. Safe with CI=true and no stdin.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf 'setup: %s\n' "$*"; }
die() {
  printf 'setup: ERROR: %s\n' "$*" >&2
  exit 1
}
trap 'die "command failed (exit $?) at scripts/setup.sh line $LINENO: $BASH_COMMAND"' ERR

# apt-get runs as root, or through `sudo -n` for another user.
sudo=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); fi

# apt_install WHAT HINT PACKAGE...: installs the packages for WHAT with apt-get,
# or dies saying why it cannot (HINT: what to do instead without apt-get).
apt_install() {
  local what=$1 hint=$2 apt_log
  shift 2
  command -v apt-get >/dev/null 2>&1 || die "$what is not installed and apt-get is not available: $hint"
  if [ "$(id -u)" -ne 0 ] && [ "${#sudo[@]}" -eq 0 ]; then
    die "$what is not installed; run as root or install sudo (apt-get install -y $*)"
  fi
  apt_log=$(mktemp "${TMPDIR:-/tmp}/loom-apt.XXXXXX")
  step "$what: not found; installing $* with apt-get (output: $apt_log)"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$apt_log" 2>&1 ||
    ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "$@" </dev/null >>"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2 || true
    die "installing $what with apt-get failed (full output in $apt_log)"
  fi
  rm -f "$apt_log"
}

# --- Node.js ----------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "Node.js 20 or newer is required (node not found on PATH)"
command -v npm >/dev/null 2>&1 || die "npm is required (not found on PATH)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js 20 or newer is required (found $(node --version))"
step "node $(node --version), npm $(npm --version 2>/dev/null)"

# --- etcd -------------------------------------------------------------------
if command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; then
  step "etcd: $(command -v etcd) ($(etcd --version 2>/dev/null | head -n 1))"
else
  apt_install etcd "install etcd (server and etcdctl) yourself, or pass --etcd-bin / LOOM_ETCD_BIN" etcd-server etcd-client
  command -v etcd >/dev/null 2>&1 || die "apt-get installed etcd-server but etcd is still not on PATH"
  step "etcd: installed $(command -v etcd) ($(etcd --version 2>/dev/null | head -n 1))"
  # Where systemd runs, the package starts a system etcd on 127.0.0.1:2379/2380,
  # which would take the ports of a local loom node: loom runs its own members.
  if [ -d /run/systemd/system ] && systemctl is-active --quiet etcd 2>/dev/null; then
    step "etcd: stopping and disabling the etcd system service the package started"
    "${sudo[@]}" systemctl disable --now etcd >/dev/null 2>&1 ||
      printf 'setup: warning: could not stop the etcd system service; it may hold ports 2379/2380\n' >&2
  fi
fi

# --- openssl (`loom certs` makes certificates with it) -------------------------
if command -v openssl >/dev/null 2>&1; then
  step "openssl: $(openssl version 2>/dev/null)"
else
  apt_install openssl "install openssl yourself (loom certs needs it)" openssl
  command -v openssl >/dev/null 2>&1 || die "apt-get installed openssl but it is still not on PATH"
  step "openssl: installed ($(openssl version 2>/dev/null))"
fi

# --- C compiler (builds loom-spawner, the node's posix_spawn helper) -------------
if command -v cc >/dev/null 2>&1 && [ -e /usr/include/spawn.h ]; then
  step "C compiler: $(command -v cc)"
else
  apt_install "C compiler" "install one (e.g. gcc and libc6-dev) to build loom-spawner" gcc libc6-dev
  command -v cc >/dev/null 2>&1 || die "apt-get installed gcc but cc is still not on PATH"
  step "C compiler: installed $(command -v cc)"
fi

# --- Chromium (the dashboard's browser test drives it with playwright-core) -------
# LOOM_CHROMIUM names another Chromium or Chrome binary (then nothing is installed).
if [ -n "${LOOM_CHROMIUM:-}" ]; then
  [ -x "$LOOM_CHROMIUM" ] || die "LOOM_CHROMIUM=$LOOM_CHROMIUM is not an executable file"
  step "chromium: $LOOM_CHROMIUM (LOOM_CHROMIUM)"
elif command -v chromium >/dev/null 2>&1; then
  step "chromium: $(command -v chromium)"
else
  apt_install chromium "install Chromium yourself and set LOOM_CHROMIUM to it (only the browser test needs it)" chromium
  command -v chromium >/dev/null 2>&1 || die "apt-get installed chromium but it is still not on PATH"
  step "chromium: installed $(command -v chromium)"
fi

# --- npm dependencies ---------------------------------------------------------
# npm ci writes node_modules/.package-lock.json; a newer package-lock.json
# means the dependencies changed since.
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm ci"
  npm ci --no-audit --no-fund --loglevel=error </dev/null ||
    die "npm ci failed (see the npm output above)"
else
  step "npm dependencies: up to date"
fi

# --- build --------------------------------------------------------------------
# src/gen is committed: the build is tsc and cc only (no buf generate).
step "build (tsc -p tsconfig.json -> dist/, cc -> dist/src/runner/loom-spawner)"
npm run --silent build </dev/null || die "the build failed (see the errors above)"
step "done"
