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
  command -v apt-get >/dev/null 2>&1 ||
    die "etcd is not installed and apt-get is not available: install etcd (server and etcdctl) yourself, or pass --etcd-bin / LOOM_ETCD_BIN"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "etcd is not installed; run as root or install sudo (apt-get install -y etcd-server etcd-client)"
    sudo=(sudo -n)
  fi
  apt_log=$(mktemp "${TMPDIR:-/tmp}/loom-apt.XXXXXX")
  step "etcd: not found; installing etcd-server and etcd-client with apt-get (output: $apt_log)"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$apt_log" 2>&1 ||
    ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      etcd-server etcd-client </dev/null >>"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2 || true
    die "installing etcd with apt-get failed (full output in $apt_log)"
  fi
  command -v etcd >/dev/null 2>&1 || die "apt-get installed etcd-server but etcd is still not on PATH"
  rm -f "$apt_log"
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
  command -v apt-get >/dev/null 2>&1 ||
    die "openssl is not installed and apt-get is not available: install openssl yourself (loom certs needs it)"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "openssl is not installed; run as root or install sudo (apt-get install -y openssl)"
    sudo=(sudo -n)
  fi
  apt_log=$(mktemp "${TMPDIR:-/tmp}/loom-apt.XXXXXX")
  step "openssl: not found; installing it with apt-get (output: $apt_log)"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$apt_log" 2>&1 ||
    ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openssl </dev/null >>"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2 || true
    die "installing openssl with apt-get failed (full output in $apt_log)"
  fi
  command -v openssl >/dev/null 2>&1 || die "apt-get installed openssl but it is still not on PATH"
  rm -f "$apt_log"
  step "openssl: installed ($(openssl version 2>/dev/null))"
fi

# --- C compiler (builds loom-spawner, the node's posix_spawn helper) -------------
if command -v cc >/dev/null 2>&1 && [ -e /usr/include/spawn.h ]; then
  step "C compiler: $(command -v cc)"
else
  command -v apt-get >/dev/null 2>&1 ||
    die "no C compiler (cc) with C library headers and apt-get is not available: install one (e.g. gcc and libc6-dev) to build loom-spawner"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "no C compiler; run as root or install sudo (apt-get install -y gcc libc6-dev)"
    sudo=(sudo -n)
  fi
  apt_log=$(mktemp "${TMPDIR:-/tmp}/loom-apt.XXXXXX")
  step "C compiler: not found; installing gcc and libc6-dev with apt-get (output: $apt_log)"
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >"$apt_log" 2>&1 ||
    ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev </dev/null >>"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2 || true
    die "installing gcc with apt-get failed (full output in $apt_log)"
  fi
  command -v cc >/dev/null 2>&1 || die "apt-get installed gcc but cc is still not on PATH"
  rm -f "$apt_log"
  step "C compiler: installed $(command -v cc)"
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
# src/gen is committed: the build is tsc only (no buf generate).
step "build (tsc -p tsconfig.json -> dist/, cc -> dist/src/runner/loom-spawner)"
npm run --silent build </dev/null || die "the TypeScript build failed (see the errors above)"
step "done"
