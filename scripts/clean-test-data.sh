#!/usr/bin/env bash
# Drops the databases and Redis keys that test runs left behind, on the configured servers
# (SECKILL__DATABASE__URL, SECKILL__REDIS__URL, else config/default.toml).
#
#   scripts/clean-test-data.sh            leftovers over an hour old: a run going on at the
#                                         same time keeps its data
#   scripts/clean-test-data.sh --run ID   the data of one run, whatever its age (the id that a
#                                         failed loadtest/run prints, e.g. load_1795465334_4242)
#
# A run's data is named after its id <kind>_<unix secs>_<suffix> (kinds: test = cargo test
# and scripts/api-contract, load = loadtest/run and loadtest/lifecycle, cmp = loadtest/compare,
# prof = loadtest/profile, acks = loadtest/replica-acks, failover = loadtest/failover):
# database seckill_<id>, keys <id>:… .
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/addr.sh
source "$root/scripts/addr.sh"

kinds='test|load|cmp|prof|acks|failover'
cutoff=$(( $(date +%s) - 3600 ))
say() { echo "clean: $*"; }

databases() { # LIKE pattern → names
  mysql_cli -N -B -e "SHOW DATABASES LIKE '$1'"
}

drop_databases() { # names on stdin → how many were dropped
  local n=0 name
  while read -r name; do
    [ -n "$name" ] || continue
    mysql_cli -e "DROP DATABASE IF EXISTS \`$name\`"
    n=$((n + 1))
  done
  echo "$n"
}

delete_keys() { # keys on stdin → how many were deleted
  # One redis-cli reading DEL commands of 500 keys each (a test run leaves thousands: one
  # process per key took minutes).
  xargs -r -n 500 echo DEL | redis_cli | awk '{ n += $1 } END { print n + 0 }'
}

old() { # names on stdin (seckill_<kind>_<secs>_… or <kind>_<secs>_…) → those before the cutoff
  sed -nE "s/^((seckill_)?($kinds)_([0-9]+)_.*)$/\4 \1/p" | awk -v cutoff="$cutoff" '$1 < cutoff { print $2 }'
}

clean_run() { # id
  [[ $1 =~ ^($kinds)_[0-9]+_[A-Za-z0-9_]+$ ]] || { say "not a run id: $1" >&2; exit 2; }
  local dbs keys
  dbs=$(databases "seckill\\_$1" | drop_databases)
  keys=$(redis_cli --scan --pattern "$1:*" | delete_keys)
  say "run $1: dropped $dbs database(s) on MySQL $(db_shown), deleted $keys key(s) in Redis $(redis_shown)"
}

clean_old() {
  local dbs=0 keys=0
  if [ -n "$mysql_client" ]; then
    dbs=$(databases 'seckill\_%' | old | drop_databases)
  else
    say "no mariadb/mysql client: old test databases left on $(db_shown)"
  fi
  if command -v redis-cli >/dev/null; then
    keys=$(for kind in ${kinds//|/ }; do redis_cli --scan --pattern "${kind}_*"; done | old | delete_keys)
  else
    say "no redis-cli: old test keys left in $(redis_shown)"
  fi
  if [ "$dbs" -gt 0 ] || [ "$keys" -gt 0 ]; then
    say "dropped $dbs old test database(s) on $(db_shown), $keys old test key(s) in $(redis_shown)"
  fi
}

case "${1:-}" in
  --run) [ $# -eq 2 ] || { echo "usage: scripts/clean-test-data.sh [--run ID]" >&2; exit 2; }
         clean_run "$2";;
  "") clean_old;;
  *) echo "usage: scripts/clean-test-data.sh [--run ID]" >&2; exit 2;;
esac
