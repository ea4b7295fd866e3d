#!/usr/bin/env bash
# Part of scripts/test: the scripts follow the configured Redis and MySQL addresses, and
# `scripts/deps.sh stop` stops what deps.sh started.
#
#  1. scripts/deps.sh starts a redis-server (with a password, database index 3) and a mariadbd
#     on free non-default ports, data under target/other-addresses/;
#  2. the sabotaged smoke run (loadtest/run --quick --debug --sabotage) against them must
#     fail with exactly the three checks one deleted order breaks, naming that order and no
#     other; its data is kept there (and only there), and clean-test-data.sh --run removes it;
#  3. clean-test-data.sh drops leftovers over an hour old there and keeps fresh ones;
#  4. scripts/deps.sh stop stops both (and says so), the ports are free, a second stop is a
#     no-op.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=target/other-addresses
rm -rf "$dir"
mkdir -p "$dir"
# shellcheck source=scripts/checks/common.sh
source scripts/checks/common.sh

rport=$(free_port) mport=$(free_port)
export SECKILL_DEPS_DIR=$dir/deps
export SECKILL__REDIS__URL="redis://:pw-$rport@127.0.0.1:$rport/3"
export SECKILL__DATABASE__URL="mysql://root:pw-$mport@127.0.0.1:$mport/seckill"
# shellcheck source=scripts/addr.sh
source scripts/addr.sh
# shellcheck disable=SC2317  # run by the EXIT trap
stop_servers() { scripts/deps.sh stop > "$dir/stop-on-exit.log" 2>&1 || true; }
trap stop_servers EXIT

say "other addresses: redis 127.0.0.1:$rport (password, db 3), mysql 127.0.0.1:$mport"
scripts/deps.sh > "$dir/deps.log" 2>&1 || { cat "$dir/deps.log"; fail "deps.sh could not start them"; }
if ! grep -q "starting redis-server on 127.0.0.1:$rport" "$dir/deps.log" ||
   ! grep -q "starting mariadbd on 127.0.0.1:$mport" "$dir/deps.log"; then
  cat "$dir/deps.log"; fail "deps.sh did not start its own servers"
fi

expect_sabotage_caught() { # log
  local victim
  victim=$(sed -nE 's/.*SABOTAGE: deleting order ([0-9]+) of user ([0-9]+).*/\1 \2/p' "$1")
  [ -n "$victim" ] || fail "the sabotaged run deleted no order (see $1)"
  read -r order user <<<"$victim"
  local want="invariants: 3 BROKEN: sale: sold = units of created and paid orders, sale: every accepted buyer persisted, sale: rows = fresh 201 answers"
  grep -qxF "$want" "$1" || { grep -E "^(FAIL|invariants)|Error" "$1" >&2 || true; fail "expected exactly: $want"; }
  if [ "$(grep -c "missing row:\|row without buyer:" "$1")" != 1 ] ||
     ! grep -q "missing row: order $order of user $user " "$1"; then
    grep "missing row\|row without" "$1" >&2 || true; fail "the check did not name exactly order $order"
  fi
  say "the check caught the deletion of order $order (user $user), and nothing else"
}

say "sabotaged smoke run against them (loadtest/run --quick --debug --sabotage)"
log=$dir/sabotage.log
if RESULTS_DIR=$dir/results PORT=$(free_port) loadtest/run --quick --debug --sabotage > "$log" 2>&1; then
  cat "$log"; fail "the invariant check passed although an order was deleted"
fi
grep -q "invariants broken" "$log" || { cat "$log"; fail "the sabotaged run failed for another reason"; }
expect_sabotage_caught "$log"

id=$(run_id_of "$log")
[ "$(data_left "$id")" != "0 0" ] || fail "the failed run $id did not keep its data at $(db_shown) / $(redis_shown)"
grep -q "kept the data of run $id" "$log" || fail "the failed run did not say where its data is"
default_dbs=$(SECKILL__DATABASE__URL='' SECKILL__REDIS__URL='' bash -c \
  'source scripts/addr.sh; source scripts/checks/common.sh; data_left "$1"' _ "$id")
[ "$default_dbs" = "0 0" ] || fail "run $id wrote to the default Redis/MySQL ($default_dbs)"
scripts/clean-test-data.sh --run "$id"
[ "$(data_left "$id")" = "0 0" ] || fail "clean-test-data.sh --run $id left data behind"

say "leftovers over an hour old are dropped there, fresh ones kept"
fresh="test_$(date +%s)_fresh"
for name in test_1000_old load_1000_1 "$fresh"; do
  mysql_cli -e "CREATE DATABASE \`seckill_$name\`"
  redis_cli set "$name:{a:1}:stock" 1 > /dev/null
done
redis_cli set "seckill:{a:1}:stock" 1 > /dev/null
scripts/clean-test-data.sh
for name in test_1000_old load_1000_1; do
  [ "$(data_left "$name")" = "0 0" ] || fail "old leftovers $name not dropped"
done
[ "$(data_left "$fresh")" = "1 1" ] || fail "fresh test data $fresh was dropped"
[ "$(redis_cli get "seckill:{a:1}:stock")" = 1 ] || fail "a key that is no test data was dropped"

say "scripts/deps.sh stop"
scripts/deps.sh stop | tee "$dir/stop.log"
grep -q "stopped redis (pid [0-9]*) on 127.0.0.1:$rport" "$dir/stop.log" || fail "deps.sh stop: redis?"
grep -q "stopped mysql (pid [0-9]*) on 127.0.0.1:$mport" "$dir/stop.log" || fail "deps.sh stop: mysql?"
port_free 127.0.0.1 "$rport" || fail "port $rport (redis) still in use after deps.sh stop"
port_free 127.0.0.1 "$mport" || fail "port $mport (mysql) still in use after deps.sh stop"
scripts/deps.sh stop | grep -c "nothing that deps.sh started is running" | grep -qx 2 ||
  fail "a second deps.sh stop was not a no-op"
say "other addresses: passed (ports $rport and $mport free again)"
