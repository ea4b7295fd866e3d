#!/usr/bin/env bash
# Part of scripts/test: the lifecycle load test's smoke run (loadtest/lifecycle --quick
# --debug: buy, pay through `seckill provider`, cancel, expire, resell) must pass its I1–I8
# check and remove its data; the same run with one closed order's units returned twice
# (--sabotage) must fail on I7, and its kept data is then removed; and the same scenario in
# goose (--tool goose, its debug build) must pass too.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/checks/common.sh
source scripts/checks/common.sh
# shellcheck source=scripts/addr.sh
source scripts/addr.sh
dir=target/lifecycle-smoke
rm -rf "$dir"
mkdir -p "$dir"
say "lifecycle smoke run (loadtest/lifecycle --quick --debug) on $(redis_shown) and $(db_shown)"
RESULTS_DIR=$dir passing_run "$dir/run.log" "lifecycle smoke run" loadtest/lifecycle --quick --debug >/dev/null
grep -E "^invariants:" "$dir/run.log"
grep -q '"invariants": "all hold"' "$dir"/*-lifecycle/summary.json || fail "summary.json does not say all hold"

say "lifecycle sabotage run: a closed order's units returned twice must be caught"
if RESULTS_DIR=$dir/sabotage loadtest/lifecycle --quick --debug --sabotage > "$dir/sabotage.log" 2>&1; then
  cat "$dir/sabotage.log"
  fail "the lifecycle check passed a unit returned twice"
fi
grep -q "FAIL I7 remaining + held units = total" "$dir/sabotage.log" ||
  { cat "$dir/sabotage.log"; fail "the sabotage run failed, but not on I7"; }
id=$(run_id_of "$dir/sabotage.log")
scripts/clean-test-data.sh --run "$id" >/dev/null
say "lifecycle smoke run with goose (loadtest/lifecycle --quick --debug --tool goose)"
RESULTS_DIR=$dir/goose passing_run "$dir/goose.log" "lifecycle smoke run with goose" \
  loadtest/lifecycle --quick --debug --tool goose >/dev/null
grep -E "^invariants:" "$dir/goose.log"
say "lifecycle: invariants hold with k6 and goose; a unit returned twice is caught (I7)"
