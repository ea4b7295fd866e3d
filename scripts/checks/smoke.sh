#!/usr/bin/env bash
# Part of scripts/test: the load test's smoke run (loadtest/run --quick --debug) on the
# configured addresses must pass its invariant check, remove its database and keys, and write
# a report marked as a smoke run, judging no target, its chart banded by phase.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/checks/common.sh
source scripts/checks/common.sh
# shellcheck source=scripts/addr.sh
source scripts/addr.sh
dir=target/loadtest-smoke
rm -rf "$dir"
mkdir -p "$dir"
log=$dir/run.log
say "load test smoke run (loadtest/run --quick --debug) on $(redis_shown) and $(db_shown)"
id=$(RESULTS_DIR=$dir passing_run "$log" "load test smoke run" loadtest/run --quick --debug)
grep -E "^(spike|flood|healthz):|^invariants:" "$log"
report=$(ls -d "$dir"/*/)
grep -q "^> \*\*Smoke run" "$report/summary.md" || fail "summary.md is not marked as a smoke run"
grep -q "targets are not judged" "$report/summary.md" || fail "summary.md does not say targets are not judged"
! grep -q "| NO |" "$report/summary.md" || fail "a smoke run's summary.md judges a target"
grep -q "arrivals (" "$report/summary.md" || fail "summary.md does not compare the spike's arrivals asked and delivered"
for phase in spike flood healthz; do
  grep -q ">$phase (k6)<" "$report/chart.svg" || fail "chart.svg has no band for the $phase phase"
done
say "smoke run: invariants hold, data of $id removed, report in $report"
