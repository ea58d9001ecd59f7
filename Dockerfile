# loom node image: Node 20 + etcd (the embedded member) + the built project.
#
#   docker build -t loom .
#   docker run --rm loom node --help
#   docker compose up -d          # 3-node cluster, see docker-compose.yml
FROM node:20-bookworm-slim

# etcd-server: the member each node embeds; etcd-client: etcdctl for debugging.
# No systemd in the image, so the package starts no etcd service of its own.
# gcc, libc6-dev: `npm run build` compiles loom-spawner (README "Starting a task").
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      etcd-server etcd-client ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/loom

# Dependencies first, so a source change does not reinstall them. (ssh2's
# optional native addons, pulled in by dockerode, fail to build here without
# a compiler; npm skips them and ssh2 falls back to pure JS.)
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

COPY . .
RUN npm run build

ENV NODE_ENV=production
# The node runs as root by default on purpose: root is what lets it run each
# task under a uid of its own (--run-as pool), drop the task's capabilities
# and put it in cgroups it cannot leave; tasks themselves never run as root.
# Where that confinement is not needed (every task trusted), run it as the
# unprivileged user `loom` made here: `docker run --user loom ...` (the node
# then picks --run-as node: tasks share its user and can read its data dir
# and key). scripts/docker-image-check.sh runs a task both ways.
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin loom \
 && mkdir -p /data && chown loom:loom /data
# Task logs, the lease file and the embedded etcd member.
VOLUME ["/data"]
# gRPC API, etcd client, etcd peer.
EXPOSE 8080 2379 2380

# --max-semi-space-size=2: see src/bin/runtime-flags.ts (node RSS after bursts).
ENTRYPOINT ["node", "--max-semi-space-size=2", "dist/src/bin/loom.js"]
CMD ["--help"]
