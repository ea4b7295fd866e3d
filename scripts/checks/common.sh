# shellcheck shell=bash
# Sourced by the checks of scripts/test (scripts/checks/*.sh): messages, assertions, and what a
# load-test run left in the stores. Source scripts/addr.sh first (the stores to look in).

say() { echo "test: $*"; }
fail() { echo "test: FAILED: $*" >&2; exit 1; }

# The run id that loadtest/run printed into its log (load_<secs>_<pid>).
run_id_of() { # log
  grep -oE '\b(run|of run) load_[0-9]+_[0-9]+' "$1" | head -1 | grep -oE 'load_[0-9]+_[0-9]+' ||
    fail "no run id in $1"
}

# "<databases> <keys>" a run has in the configured stores.
data_left() { # run-id
  local dbs keys
  dbs=$(mysql_cli -N -B -e "SHOW DATABASES LIKE 'seckill\\_$1'" | grep -c . || true)
  keys=$(redis_cli --scan --pattern "$1:*" | grep -c . || true)
  echo "$dbs $keys"
}

# Runs a load test ("$@") that must pass, its output in LOG (shown when it fails), then
# checks that the run removed its database and keys; prints the run id.
passing_run() { # log what command...
  local log=$1 what=$2 id
  shift 2
  "$@" > "$log" 2>&1 || { cat "$log" >&2; fail "$what"; }
  id=$(run_id_of "$log")
  [ "$(data_left "$id")" = "0 0" ] ||
    fail "the passing $what ($id) left data behind ($(data_left "$id"): databases, keys)"
  echo "$id"
}

# shellcheck source=scripts/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/../ports.sh"
