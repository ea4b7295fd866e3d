#!/usr/bin/env bash
# Finds Redis and MySQL/MariaDB at the configured addresses, or starts local ones.
#
#   scripts/deps.sh        find or start them (idempotent); prints what it found or started
#   scripts/deps.sh stop   stop the servers that deps.sh started (nothing else); idempotent
#
# Order of attempts, for each service:
#   1. something already answers at the configured host:port (SECKILL__REDIS__URL,
#      SECKILL__DATABASE__URL, else config/default.toml: 127.0.0.1:6379 and :3306);
#   2. a local `redis-server` / `mariadbd` (or `mysqld`) binary is started with its data, log
#      and pid file under ./.deps/ (git-ignored; SECKILL_DEPS_DIR sets another folder),
#      listening on that loopback address only; Redis gets the URL's password, if any;
#   3. otherwise: print exactly what to install, and exit 1.
#
# `stop` reads the pid files of that folder and stops only processes that are still the
# redis-server / mariadbd it started; servers it found already running are left alone.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/addr.sh
source "$root/scripts/addr.sh"
deps=${SECKILL_DEPS_DIR:-$root/.deps}
mkdir -p "$deps"
deps=$(cd "$deps" && pwd)

say() { echo "deps: $*"; }
die() { echo "deps: $*" >&2; exit 1; }

answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # name host port seconds
  for _ in $(seq 1 $(( $4 * 10 ))); do
    answers "$2" "$3" && return 0
    sleep 0.1
  done
  die "$1 did not come up on $2:$3 within $4 s (see $deps/$1.log)"
}

is_local() { case "$1" in 127.*|localhost|::1) return 0;; *) return 1;; esac; }

# The pid of the server deps.sh started as NAME, if that process still runs: the pid file
# names it and /proc shows the same program (a pid reused by another process is not ours).
started_pid() { # name → pid
  local pid comm
  [ -s "$deps/$1.pid" ] || return 1
  pid=$(<"$deps/$1.pid")
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  case "$comm" in redis-server|mariadbd|mysqld) echo "$pid";; *) return 1;; esac
}

start_redis() {
  mkdir -p "$deps/redis"
  say "starting redis-server on $redis_host:$redis_port (data in $deps/redis, AOF everysec)"
  local auth=()
  [ -n "$redis_pass" ] && auth=(--requirepass "$redis_pass")
  redis-server --daemonize yes --bind "$redis_host" --port "$redis_port" --dir "$deps/redis" \
    --appendonly yes --appendfsync everysec --save "" --logfile "$deps/redis.log" \
    --pidfile "$deps/redis.pid" "${auth[@]}"
  echo "$redis_host:$redis_port" > "$deps/redis.addr"
  wait_for redis "$redis_host" "$redis_port" 20
}

init_mysql_datadir() {
  [ -d "$deps/mysql/mysql" ] && return 0
  local installer
  installer=$(command -v mariadb-install-db || command -v mysql_install_db || true)
  [ -n "$installer" ] || die "found a MySQL server binary but no mariadb-install-db to initialise a data directory"
  # --no-defaults: the system's my.cnf (user = mysql, its own datadir and socket) must not
  # apply to this private server.
  if ! "$installer" --no-defaults --datadir="$deps/mysql" --user="$(id -un)" \
      >"$deps/mysql-install.log" 2>&1; then
    tail -5 "$deps/mysql-install.log" >&2
    die "$installer failed; its log is $deps/mysql-install.log"
  fi
}

start_mysql() { # binary
  mkdir -p "$deps/mysql"
  init_mysql_datadir
  say "starting $(basename "$1") on $db_host:$db_port (data in $deps/mysql," \
      "no authentication: a local development server)"
  nohup "$1" --no-defaults --datadir="$deps/mysql" --bind-address="$db_host" \
    --port="$db_port" --socket="$deps/mysql.sock" --pid-file="$deps/mysql.pid" \
    --skip-grant-tables --user="$(id -un)" >"$deps/mysql.log" 2>&1 &
  echo "$db_host:$db_port" > "$deps/mysql.addr"
  wait_for mysql "$db_host" "$db_port" 60
  # the pid file follows the port by a moment; `stop` needs it
  for _ in $(seq 1 50); do [ -s "$deps/mysql.pid" ] && break; sleep 0.1; done
}

ensure_redis() {
  if answers "$redis_host" "$redis_port"; then
    say "redis answers at $redis_host:$redis_port"
  elif is_local "$redis_host" && command -v redis-server >/dev/null; then
    start_redis
  else
    die "no Redis at $redis_host:$redis_port and no redis-server binary to start.
      install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)
      or run: docker compose up -d redis (then SECKILL__REDIS__URL=redis://127.0.0.1:16379)"
  fi
}

ensure_mysql() {
  local bin
  bin=$(command -v mariadbd || command -v mysqld || true)
  [ -z "$bin" ] && [ -x /usr/sbin/mariadbd ] && bin=/usr/sbin/mariadbd
  if answers "$db_host" "$db_port"; then
    say "mysql answers at $db_host:$db_port"
  elif is_local "$db_host" && [ -n "$bin" ]; then
    start_mysql "$bin"
  else
    die "no MySQL/MariaDB at $db_host:$db_port and no mariadbd/mysqld binary to start.
      install it (Debian/Ubuntu: sudo apt-get install mariadb-server; macOS: brew install mariadb)
      or run: docker compose up -d mysql (then SECKILL__DATABASE__URL=mysql://root@127.0.0.1:13306/seckill)"
  fi
}

stop_one() { # name
  local pid addr
  addr=$(cat "$deps/$1.addr" 2>/dev/null || echo "?")
  if ! pid=$(started_pid "$1"); then
    say "$1: nothing that deps.sh started is running (pid file $deps/$1.pid)"
    rm -f "$deps/$1.pid" "$deps/$1.addr"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 300); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  [ -d "/proc/$pid" ] && die "$1 (pid $pid) did not stop within 30 s"
  rm -f "$deps/$1.pid" "$deps/$1.addr"
  say "stopped $1 (pid $pid) on $addr; its data stays in $deps/$1"
}

case "${1:-start}" in
  start) ensure_redis; ensure_mysql;;
  stop) stop_one redis; stop_one mysql;;
  *) echo "usage: scripts/deps.sh [start|stop]" >&2; exit 2;;
esac
