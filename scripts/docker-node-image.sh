#!/usr/bin/env bash
# Imports loom-node-runtime:latest into the private engine of
# scripts/docker-up.sh: this machine's node binary and the libraries it
# links, busybox for the tasks' shell tools, and an entrypoint of
# /opt/loom/dist/src/bin/loom.js, which the container gets from a bind mount
# of the checkout (so the image never goes stale when the code is rebuilt).
# No registry is needed. Idempotent; run docker-up.sh first.
#
#   LOOM_DOCKER_SOCK  the engine's socket (default /tmp/loom-docker/docker.sock)
set -euo pipefail
SOCK=${LOOM_DOCKER_SOCK:-/tmp/loom-docker/docker.sock}
IMAGE=loom-node-runtime:latest
dk() { docker -H "unix://$SOCK" "$@"; }

if dk image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "docker-node-image: $IMAGE present"
  exit 0
fi
NODE=$(command -v node)
BUSYBOX=$(command -v busybox || echo /bin/busybox)
[ -x "$BUSYBOX" ] || { echo "docker-node-image: no busybox (scripts/docker-up.sh installs it)" >&2; exit 1; }
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/loom-node-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,usr/bin,tmp,etc,proc,sys,dev,root,data,opt/loom}
chmod 1777 "$rootfs/tmp"
cp "$NODE" "$rootfs/usr/bin/node"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for bin in "$NODE" "$BUSYBOX"; do
  for lib in $(ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+' || true); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
done
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
tar -C "$rootfs" -c . | dk import \
  --change 'ENV PATH=/usr/bin:/bin' --change 'WORKDIR /opt/loom' \
  --change 'ENTRYPOINT ["/usr/bin/node", "/opt/loom/dist/src/bin/loom.js"]' --change 'CMD ["--help"]' \
  --message 'loom node runtime for tests: node + busybox, loom bind-mounted at /opt/loom' - "$IMAGE" >/dev/null
echo "docker-node-image: $IMAGE imported"
