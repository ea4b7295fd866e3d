#!/usr/bin/env bash
# A first measurement of the buy path and the writer (the full harness is loadtest/run).
#
#   loadtest/wrk/run.sh [seconds] [connections]
#
# Phases, all against one release build, an isolated database and key prefix:
#   buy      distinct buyers, stock never runs out, writer OFF (accepted path only)
#   drain    `seckill writer` alone drains the backlog of the buy phase: rows/s
#   soldout  distinct buyers against a sold-out activity
#   healthz  GET /healthz: the HTTP ceiling of this machine
# Writes loadtest/results/<timestamp>/summary.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-64}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
scripts/deps.sh >/dev/null
cargo build --release --locked --bin seckill 2>&1 | tail -1

stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=loadtest/results/$stamp
mkdir -p "$out"
run_id=$(date +%s)
export SECKILL__DATABASE__URL="mysql://root@127.0.0.1:3306/seckill_load_$run_id"
export SECKILL__REDIS__KEY_PREFIX="load_$run_id"
export SECKILL__SERVER__PORT=18181
export SECKILL__AUTH__JWT_SECRET=load-secret
export SECKILL__ADMIN__TOKEN=load-admin
export SECKILL__IDS__INSTANCE_ID=901
export RUST_LOG=warn
base=http://127.0.0.1:18181
bin=target/release/seckill
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

python3 loadtest/wrk/mint_tokens.py load-secret 400000 > "$out/tokens.txt"

start_service() { # writer enabled?
  SECKILL__WRITER__ENABLED=$1 $bin serve > "$out/service-$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf $base/healthz >/dev/null && return; sleep 0.1; done
  echo "service did not start"; cat "$out/service-$2.log"; exit 1
}
create() { # stock → activity id
  curl -sf -X POST $base/api/v1/admin/activities -H 'Authorization: Bearer load-admin' \
    -H 'content-type: application/json' \
    -d "{\"name\":\"load\",\"stock\":$1,\"starts_at\":\"2020-01-01T00:00:00Z\",\"ends_at\":\"2099-01-01T00:00:00Z\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["activity_id"])'
}
stat() { # activity field
  curl -sf $base/api/v1/admin/activities/$1 -H 'Authorization: Bearer load-admin' |
    python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"
}
bench() { # name url [lua args…]
  local name=$1 url=$2; shift 2
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$url" "$@" > "$out/wrk-$name.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$out/wrk-$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$out/wrk-$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$out/wrk-$name.txt")
  echo "| $name | $rps | $p50 | $p99 |" >> "$out/table.md"
  echo "$name: $rps req/s, p50 $p50, p99 $p99"
}

start_service false nowriter
buy=$(create 100000000)
bench buy "$base" -s loadtest/wrk/buy.lua -- "$out/tokens.txt" "$buy" 1
accepted=$(stat "$buy" accepted)
sold_out=$(create 1)
curl -s -X POST $base/api/v1/activities/$sold_out/purchase -H "Authorization: Bearer $(sed -n 1p "$out/tokens.txt")" -H 'Idempotency-Key: first' >/dev/null
bench soldout "$base" -s loadtest/wrk/buy.lua -- "$out/tokens.txt" "$sold_out" 1
bench healthz "$base/healthz"
curl -s $base/metrics | grep '^seckill_purchase_total' > "$out/metrics.txt"

# Drain: the writer alone, timed until the backlog of the buy phase is committed.
t0=$(date +%s.%N)
$bin writer > "$out/writer.log" 2>&1 &
pids+=($!)
while [ "$(stat "$buy" pending)" != 0 ]; do sleep 0.05; done
t1=$(date +%s.%N)
persisted=$(stat "$buy" persisted)
drain=$(python3 -c "print(round($persisted / ($t1 - $t0)))")

{
  echo "# Load run $stamp"
  echo
  echo "wrk -t1 -c$conns -d${secs}s on $(nproc) cores; service, Redis, MySQL and wrk on one machine."
  echo
  echo "| phase | req/s | p50 | p99 |"
  echo "|---|---|---|---|"
  cat "$out/table.md"
  echo
  echo "- buy phase: $accepted orders accepted (writer off)"
  echo "- drain: $persisted rows committed by \`seckill writer\` in $(python3 -c "print(round($t1 - $t0, 2))") s = **$drain rows/s**"
  echo "- ratios: buy/healthz $(python3 -c "import re;t=open('$out/table.md').read();r={l.split('|')[1].strip():float(l.split('|')[2]) for l in t.strip().splitlines()};print(round(r['buy']/r['healthz'],2))"), soldout/buy $(python3 -c "import re;t=open('$out/table.md').read();r={l.split('|')[1].strip():float(l.split('|')[2]) for l in t.strip().splitlines()};print(round(r['soldout']/r['buy'],2))")"
  echo
  echo '```'
  cat "$out/metrics.txt"
  echo '```'
} > "$out/summary.md"
rm -f "$out/tokens.txt" "$out/table.md" "$out/metrics.txt" "$out"/*.log
cat "$out/summary.md"
mysql_client=$(command -v mariadb || command -v mysql || true)
[ -n "$mysql_client" ] && "$mysql_client" -h 127.0.0.1 -u root -e "DROP DATABASE seckill_load_$run_id" || true
