#!/usr/bin/env bash
# A local loom cluster for trying things out: node i listens on 127.0.0.i,
# keeps its data in .loom/node<i>/ (node.log, node.pid, etcd.log, etcd/).
#
#   scripts/cluster.sh start [N]   start N nodes (default 3) in the background
#   scripts/cluster.sh stop        SIGTERM every node, SIGKILL after 30 s
#   scripts/cluster.sh join I      add node I (127.0.0.I) to the running cluster as a new etcd member
#   scripts/cluster.sh status      list the nodes (exit 0 if any is running)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

LOOM=(node dist/src/bin/loom.js)
# Node daemons start with the V8 flags of src/bin/runtime-flags.ts (smaller young
# generation: far less RSS kept after bursts).
LOOM_NODE=(node --max-semi-space-size=2 dist/src/bin/loom.js)
STATE_DIR=.loom
START_TIMEOUT=60
STOP_TIMEOUT=30

say() { printf 'cluster: %s\n' "$*"; }
die() {
  printf 'cluster: ERROR: %s\n' "$*" >&2
  exit 1
}

# True if PID is a live process (a zombie, dead but not reaped, counts as gone).
alive() {
  local pid=$1 stat
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/stat" ]; then
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || return 1
  fi
  return 0
}

pid_files() {
  local f
  for f in "$STATE_DIR"/node*/node.pid; do
    [ -f "$f" ] && printf '%s\n' "$f"
  done
  return 0
}

read_pid() {
  local pid
  pid=$(head -n 1 "$1" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && printf '%s' "$pid"
}

# Number of nodes the cluster reports, or nothing if it does not answer.
node_count() {
  "${LOOM[@]}" -N 127.0.0.1:8080 nodes --json </dev/null 2>/dev/null |
    node -e '
      let s = "";
      process.stdin.on("data", (d) => (s += d));
      process.stdin.on("end", () => {
        try {
          const v = JSON.parse(s);
          const list = Array.isArray(v) ? v : v && Array.isArray(v.nodes) ? v.nodes : null;
          if (list) process.stdout.write(String(list.length));
        } catch {}
      });' 2>/dev/null || true
}

cmd_start() {
  local n=${1:-3}
  if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 254 ]; then
    die "N must be a number from 1 to 254 (got \"$n\")"
  fi
  [ -f dist/src/bin/loom.js ] || die "dist/src/bin/loom.js is missing: run scripts/setup.sh (or npm run build) first"
  command -v etcd >/dev/null 2>&1 || [ -n "${LOOM_ETCD_BIN:-}" ] ||
    die "etcd is not on PATH: run scripts/setup.sh (or apt-get install -y etcd-server), or set LOOM_ETCD_BIN"

  local f pid
  while IFS= read -r f; do
    pid=$(read_pid "$f") || true
    if [ -n "$pid" ] && alive "$pid"; then
      die "a cluster is already running ($(dirname "$f") has pid $pid); run scripts/cluster.sh stop first"
    fi
  done < <(pid_files)

  local i j dir
  local -a args
  for ((i = 1; i <= n; i++)); do
    dir=$STATE_DIR/node$i
    mkdir -p "$dir"
    args=(node --name "node$i" --listen "127.0.0.$i:8080" --data-dir "$dir"
      --peer-listen "http://127.0.0.$i:2380" --client-listen "http://127.0.0.$i:2379")
    for ((j = 1; j <= n; j++)); do
      [ "$j" -eq "$i" ] || args+=(--peer "node$j=http://127.0.0.$j:2380")
    done
    printf -- '--- %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${LOOM[*]} ${args[*]}" >>"$dir/node.log"
    nohup "${LOOM_NODE[@]}" "${args[@]}" </dev/null >>"$dir/node.log" 2>&1 &
    echo $! >"$dir/node.pid"
    say "started node$i (pid $!) on 127.0.0.$i:8080, log $dir/node.log"
  done

  local start=$SECONDS count last_report=-1 elapsed
  while :; do
    count=$(node_count)
    if [ "${count:-0}" -ge "$n" ]; then
      say "ready: $count nodes after $((SECONDS - start)) s"
      return 0
    fi
    for ((i = 1; i <= n; i++)); do
      pid=$(read_pid "$STATE_DIR/node$i/node.pid") || true
      if [ -z "$pid" ] || ! alive "$pid"; then
        printf 'cluster: node%d exited; last lines of %s:\n' "$i" "$STATE_DIR/node$i/node.log" >&2
        tail -n 15 "$STATE_DIR/node$i/node.log" >&2 || true
        die "node$i failed to start; stop the rest with scripts/cluster.sh stop"
      fi
    done
    elapsed=$((SECONDS - start))
    if [ "$elapsed" -ge "$START_TIMEOUT" ]; then
      die "only ${count:-0} of $n nodes up after ${START_TIMEOUT} s; see $STATE_DIR/node*/node.log and etcd.log"
    fi
    if [ $((elapsed / 2)) -ne "$last_report" ]; then
      last_report=$((elapsed / 2))
      say "waiting for the cluster: ${count:-0}/$n nodes up (${elapsed} s)"
    fi
    sleep 0.5
  done
}

# Adds node I to the running cluster: its embedded member joins with --join
# (added as a learner, promoted once caught up), its --peer flags name the
# nodes that run.
cmd_join() {
  local i=${1:-}
  if ! [[ $i =~ ^[0-9]+$ ]] || [ "$i" -lt 1 ] || [ "$i" -gt 254 ]; then
    die "join needs the node number I, from 1 to 254 (got \"$i\")"
  fi
  [ -f dist/src/bin/loom.js ] || die "dist/src/bin/loom.js is missing: run scripts/setup.sh (or npm run build) first"
  local dir=$STATE_DIR/node$i f pid name
  pid=$(read_pid "$dir/node.pid" 2>/dev/null) || true
  if [ -n "$pid" ] && alive "$pid"; then die "node$i is already running (pid $pid)"; fi
  local -a args=(node --name "node$i" --listen "127.0.0.$i:8080" --data-dir "$dir"
    --peer-listen "http://127.0.0.$i:2380" --client-listen "http://127.0.0.$i:2379" --join)
  local peers=0
  while IFS= read -r f; do
    name=$(basename "$(dirname "$f")")
    pid=$(read_pid "$f") || true
    if [ "$name" != "node$i" ] && [ -n "$pid" ] && alive "$pid"; then
      args+=(--peer "$name=http://127.0.0.${name#node}:2380")
      peers=$((peers + 1))
    fi
  done < <(pid_files)
  [ "$peers" -gt 0 ] || die "no node is running to join; start a cluster first (scripts/cluster.sh start)"
  mkdir -p "$dir"
  local from=0
  [ ! -f "$dir/node.log" ] || from=$(wc -c <"$dir/node.log")
  printf -- '--- %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${LOOM[*]} ${args[*]}" >>"$dir/node.log"
  nohup "${LOOM_NODE[@]}" "${args[@]}" </dev/null >>"$dir/node.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/node.pid"
  say "started node$i (pid $pid) on 127.0.0.$i:8080 with --join, log $dir/node.log"
  local start=$SECONDS
  while :; do
    if tail -c +"$((from + 1))" "$dir/node.log" | grep -q "node node$i up: "; then
      tail -c +"$((from + 1))" "$dir/node.log" | grep -E 'as a learner|promoted|--join ignored' | sed 's/^[^ ]* /cluster: /' || true
      say "node$i is up after $((SECONDS - start)) s"
      return 0
    fi
    if ! alive "$pid"; then
      tail -n 15 "$dir/node.log" >&2 || true
      rm -f "$dir/node.pid"
      die "node$i failed to join"
    fi
    [ $((SECONDS - start)) -lt 180 ] || die "node$i not up after 180 s; see $dir/node.log and $dir/etcd.log"
    sleep 0.5
  done
}

cmd_stop() {
  local f pid name
  local -a pids=() names=() files=()
  while IFS= read -r f; do
    name=$(basename "$(dirname "$f")")
    pid=$(read_pid "$f") || true
    if [ -n "$pid" ] && alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      say "sent SIGTERM to $name (pid $pid)"
      pids+=("$pid")
      names+=("$name")
    else
      say "$name: not running"
    fi
    files+=("$f")
  done < <(pid_files)
  if [ "${#files[@]}" -eq 0 ]; then
    say "no nodes (no $STATE_DIR/node*/node.pid)"
    return 0
  fi

  local start=$SECONDS k left
  while :; do
    left=0
    for k in "${!pids[@]}"; do
      alive "${pids[$k]}" && left=$((left + 1))
    done
    [ "$left" -eq 0 ] && break
    if [ $((SECONDS - start)) -ge "$STOP_TIMEOUT" ]; then
      for k in "${!pids[@]}"; do
        if alive "${pids[$k]}"; then
          kill -KILL "${pids[$k]}" 2>/dev/null || true
          say "${names[$k]} (pid ${pids[$k]}) still running after ${STOP_TIMEOUT} s: sent SIGKILL (its etcd may need stopping too; see $STATE_DIR/${names[$k]}/etcd.log)"
        fi
      done
      break
    fi
    sleep 0.2
  done
  rm -f "${files[@]}"
  say "stopped ${#pids[@]} node(s) after $((SECONDS - start)) s"
}

cmd_status() {
  local f pid name any=1
  while IFS= read -r f; do
    name=$(basename "$(dirname "$f")")
    pid=$(read_pid "$f") || true
    if [ -n "$pid" ] && alive "$pid"; then
      printf '%-8s pid %-8s running  %s\n' "$name" "$pid" "$(dirname "$f")/node.log"
      any=0
    else
      printf '%-8s pid %-8s stopped  %s\n' "$name" "${pid:--}" "$(dirname "$f")/node.log"
    fi
  done < <(pid_files)
  [ "$any" -eq 0 ] || say "no node is running"
  return "$any"
}

usage() {
  cat <<'USAGE'
usage: scripts/cluster.sh start [N]   start N local nodes (default 3) on 127.0.0.1..N
       scripts/cluster.sh join I      add node I (127.0.0.I) to the running cluster, a new etcd member
       scripts/cluster.sh stop        stop them (SIGTERM, SIGKILL after 30 s)
       scripts/cluster.sh status      list them
USAGE
}

case "${1:-}" in
  start)
    shift
    cmd_start "$@"
    ;;
  join)
    shift
    cmd_join "$@"
    ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
