#!/usr/bin/env bash
# Finds Redis and MySQL/MariaDB at the configured addresses, or starts local ones.
#
# Order of attempts, for each service:
#   1. something already answers at the configured host:port (SECKILL__REDIS__URL,
#      SECKILL__DATABASE__URL, defaults redis://127.0.0.1:6379 and mysql://root@127.0.0.1:3306);
#   2. a local `redis-server` / `mariadbd` (or `mysqld`) binary is started with its data under
#      ./.deps/ (ignored by git), listening on loopback only;
#   3. otherwise: print exactly what to install, and exit 1.
#
# Source it or run it; it prints what it found. Idempotent.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps="$root/.deps"

redis_url=${SECKILL__REDIS__URL:-redis://127.0.0.1:6379}
db_url=${SECKILL__DATABASE__URL:-mysql://root@127.0.0.1:3306/seckill}

# host and port of a URL like scheme://[user[:pass]@]host[:port][/...]
hostport() {
  local rest=${1#*://}
  rest=${rest%%/*}
  rest=${rest##*@}
  local host=${rest%%:*} port=${rest##*:}
  [ "$port" = "$rest" ] && port=$2
  echo "$host $port"
}

answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # name host port seconds
  for _ in $(seq 1 $(( $4 * 10 ))); do
    answers "$2" "$3" && return 0
    sleep 0.1
  done
  echo "deps: $1 did not come up on $2:$3 within $4 s (see $deps/$1.log)" >&2
  return 1
}

is_local() { case "$1" in 127.*|localhost|::1) return 0;; *) return 1;; esac; }

read -r rhost rport < <(hostport "$redis_url" 6379)
if answers "$rhost" "$rport"; then
  echo "deps: redis answers at $rhost:$rport"
elif is_local "$rhost" && command -v redis-server >/dev/null; then
  mkdir -p "$deps/redis"
  echo "deps: starting redis-server on $rhost:$rport (data in .deps/redis, AOF everysec)"
  redis-server --daemonize yes --bind "$rhost" --port "$rport" --dir "$deps/redis" \
    --appendonly yes --appendfsync everysec --save "" --logfile "$deps/redis.log"
  wait_for redis "$rhost" "$rport" 20
else
  echo "deps: no Redis at $rhost:$rport and no redis-server binary to start." >&2
  echo "      install it (Debian/Ubuntu: sudo apt-get install redis-server;" \
       "macOS: brew install redis) or run: docker compose up -d redis" >&2
  exit 1
fi

read -r mhost mport < <(hostport "$db_url" 3306)
mysqld_bin=$(command -v mariadbd || command -v mysqld || true)
[ -z "$mysqld_bin" ] && [ -x /usr/sbin/mariadbd ] && mysqld_bin=/usr/sbin/mariadbd
if answers "$mhost" "$mport"; then
  echo "deps: mysql answers at $mhost:$mport"
elif is_local "$mhost" && [ -n "$mysqld_bin" ]; then
  mkdir -p "$deps/mysql"
  if [ ! -d "$deps/mysql/mysql" ]; then
    installer=$(command -v mariadb-install-db || command -v mysql_install_db || true)
    if [ -z "$installer" ]; then
      echo "deps: found $mysqld_bin but no mariadb-install-db to initialise a data directory" >&2
      exit 1
    fi
    # --no-defaults: the system's my.cnf (user = mysql, its own datadir and socket) must not
    # apply to this private server.
    if ! "$installer" --no-defaults --datadir="$deps/mysql" --user="$(id -un)" \
        >"$deps/mysql-install.log" 2>&1; then
      echo "deps: $installer failed; its log ($deps/mysql-install.log) ends with:" >&2
      tail -5 "$deps/mysql-install.log" >&2
      exit 1
    fi
  fi
  echo "deps: starting $(basename "$mysqld_bin") on $mhost:$mport (data in .deps/mysql," \
       "no authentication: a local development server)"
  nohup "$mysqld_bin" --no-defaults --datadir="$deps/mysql" --bind-address="$mhost" \
    --port="$mport" --socket="$deps/mysql.sock" --pid-file="$deps/mysql.pid" \
    --skip-grant-tables --user="$(id -un)" >"$deps/mysql.log" 2>&1 &
  wait_for mysql "$mhost" "$mport" 60
else
  echo "deps: no MySQL/MariaDB at $mhost:$mport and no mariadbd/mysqld binary to start." >&2
  echo "      install it (Debian/Ubuntu: sudo apt-get install mariadb-server;" \
       "macOS: brew install mariadb) or run: docker compose up -d mysql" >&2
  exit 1
fi
