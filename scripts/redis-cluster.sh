#!/usr/bin/env bash
# A local Redis Cluster for tests and users: 6 nodes (3 masters, 3 replicas) of the local
# `redis-server`, data, logs and pid files under ./.deps/cluster/ (SECKILL_DEPS_DIR sets
# another folder), loopback only.
#
#   scripts/redis-cluster.sh [start]   start it (idempotent); prints the seed URLs, and the
#                                      setting that points the service at it
#   scripts/redis-cluster.sh stop      stop the nodes this script started; idempotent
#   scripts/redis-cluster.sh status    the nodes and their roles
#   scripts/redis-cluster.sh seeds     the nodes' URLs, comma-separated (for
#                                      SECKILL__REDIS__CLUSTER_NODES)
#   scripts/redis-cluster.sh free-port a first port for SECKILL_CLUSTER_PORT whose six node
#                                      ports and cluster-bus ports (+10000) are all free
#
# Ports: SECKILL_CLUSTER_PORT (default 7101) and the next five. Each node writes an AOF
# (appendfsync everysec), as deps.sh's single Redis does.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps=${SECKILL_DEPS_DIR:-$root/.deps}
mkdir -p "$deps"
deps=$(cd "$deps" && pwd)   # absolute: redis-server changes to its --dir before opening files
dir=$deps/cluster
first=${SECKILL_CLUSTER_PORT:-7101}
ports=()
for i in 0 1 2 3 4 5; do ports+=($((first + i))); done

say() { echo "redis-cluster: $*"; }
die() { echo "redis-cluster: $*" >&2; exit 1; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid of the node on PORT that this script started, if it still runs.
node_pid() { # port → pid
  local pid comm
  [ -s "$dir/$1/redis.pid" ] || return 1
  pid=$(<"$dir/$1/redis.pid")
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [ "$comm" = redis-server ] && echo "$pid"
}

seeds() {
  local IFS=,
  local urls=()
  for p in "${ports[@]}"; do urls+=("redis://127.0.0.1:$p"); done
  echo "${urls[*]}"
}

settled() { # status 0 when every node says the cluster is ok, agrees on the slots, and every replica's link to its master is up
  local p info
  for p in "${ports[@]}"; do
    [[ $(redis-cli -p "$p" cluster info | tr -d '\r') == *cluster_state:ok* ]] || return 1
    info=$(redis-cli -p "$p" info replication | tr -d '\r')
    case $info in
      *role:slave*) [[ $info == *master_link_status:up* ]] || return 1 ;;
    esac
  done
  redis-cli --cluster check "127.0.0.1:$first" 2>/dev/null | grep -q 'All nodes agree about slots configuration'
}

start() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    die "redis-server and redis-cli are needed (Debian: apt-get install redis-server)"
  mkdir -p "$dir"
  local p
  for p in "${ports[@]}"; do
    if node_pid "$p" >/dev/null; then continue; fi
    answers "$p" && die "port $p is taken by something this script did not start"
    mkdir -p "$dir/$p"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --dir "$dir/$p" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --appendonly yes --appendfsync everysec --save "" \
      --logfile "$dir/$p/redis.log" --pidfile "$dir/$p/redis.pid"
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 1 50); do answers "$p" && break; sleep 0.1; done
    answers "$p" || die "node $p did not come up (see $dir/$p/redis.log)"
  done
  if [ "$(redis-cli -p "$first" cluster info | tr -d '\r' | grep '^cluster_state:')" != cluster_state:ok ]; then
    local known
    known=$(redis-cli -p "$first" cluster info | tr -d '\r' | grep '^cluster_known_nodes:' | cut -d: -f2)
    if [ "${known:-1}" = 1 ]; then
      say "creating the cluster: 3 masters, 1 replica each"
      local addrs=()
      for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
      redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes > "$dir/create.log" 2>&1 ||
        { cat "$dir/create.log" >&2; die "redis-cli --cluster create failed"; }
    fi
    for _ in $(seq 1 100); do
      [ "$(redis-cli -p "$first" cluster info | tr -d '\r' | grep '^cluster_state:')" = cluster_state:ok ] && break
      sleep 0.1
    done
  fi
  [ "$(redis-cli -p "$first" cluster info | tr -d '\r' | grep '^cluster_state:')" = cluster_state:ok ] ||
    die "the cluster is not ok (redis-cli -p $first cluster info)"
  # The first node's "ok" is not the cluster's: the others may still disagree about the
  # slots (a client then meets redirects and retries), and a replica answers before it has
  # synced with its master (until then a `WAIT`, the service's redis.replica_acks, cannot be
  # satisfied). Ready means every node agrees and every replica is linked.
  local ready=0
  for _ in $(seq 1 150); do
    settled && { ready=1; break; }
    sleep 0.1
  done
  [ "$ready" = 1 ] || die "the cluster did not settle (redis-cli --cluster check 127.0.0.1:$first; redis-cli -p PORT info replication)"
  say "up: $(seeds)"
  say "point the service at it: SECKILL__REDIS__CLUSTER_NODES=$(seeds)"
}

stop() {
  local p pid stopped=0
  for p in "${ports[@]}"; do
    if pid=$(node_pid "$p"); then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      stopped=$((stopped + 1))
    fi
  done
  say "stopped $stopped node(s)"
}

# Below the ephemeral range (32768 up), so a client socket cannot take a bus port between
# this check and the start.
free_port() {
  local candidate i ok
  for _ in $(seq 1 50); do
    candidate=$(( 10000 + RANDOM % 9990 )) ok=1
    for i in 0 1 2 3 4 5; do
      answers $((candidate + i)) && ok=0
      answers $((candidate + i + 10000)) && ok=0
    done
    [ "$ok" = 1 ] && { echo "$candidate"; return; }
  done
  die "no 6 free consecutive ports (with their bus ports) found"
}

status() {
  local p
  for p in "${ports[@]}"; do
    if answers "$p"; then
      # A node that accepts connections but does not answer (stopped, hung) must not hang
      # the status: one second each.
      echo "$p $(timeout 1 redis-cli -p "$p" role 2>/dev/null | head -1 || true)"
    else
      echo "$p down"
    fi
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  seeds) seeds ;;
  free-port) free_port ;;
  *) die "usage: scripts/redis-cluster.sh [start|stop|status|seeds|free-port]" ;;
esac
