#!/usr/bin/env bash
# Part of scripts/test: the sale page and the dashboard in a real headless browser
# (tests/browser/test_pages.py: Debian's chromium through its chromedriver, driven by
# Selenium from PyPI, pinned below, in .deps/browser-venv).
#
# Starts `seckill provider` and `seckill serve` (debug build) on free ports with a database
# and key prefix of their own, on the configured Redis and MySQL, with the shipped
# development secrets (the page's sign-in by user id needs them; they are refused off
# loopback, and the service listens on 127.0.0.1). Screenshots of every state go to
# target/browser/; on failure the logs are there too and the run's data is kept
# (scripts/clean-test-data.sh --run <id> removes it).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
SELENIUM_VERSION=4.51.0
TOOLS_WHO=browser
# shellcheck source=scripts/tools.sh
source scripts/tools.sh
# shellcheck source=scripts/checks/common.sh
source scripts/checks/common.sh
tools_require chromium chromium
tools_require chromium-driver chromedriver
tools_require python3 python3
# shellcheck source=scripts/addr.sh
source scripts/addr.sh

venv=$root/.deps/browser-venv
if ! "$venv/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$SELENIUM_VERSION')" 2>/dev/null; then
  python3 -c 'import ensurepip' 2>/dev/null || { tools_on_ci && tools_apt_install python3-venv; } ||
    fail "python3 cannot make a venv (Debian: apt-get install python3-venv)"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  say "installing selenium $SELENIUM_VERSION from PyPI into .deps/browser-venv"
  "$venv/bin/pip" install -q "selenium==$SELENIUM_VERSION" || fail "could not install selenium==$SELENIUM_VERSION"
fi
k6=$(tools_k6)

cargo build --locked --bin seckill 2>&1 | tail -1
bin=$root/target/debug/seckill
out=$root/target/browser
rm -rf "$out"
mkdir -p "$out"

run_id=test_$(date +%s)_browser_$$
port=$(free_port) pport=$(free_port)
export SECKILL__DATABASE__URL
SECKILL__DATABASE__URL=$(db_url_named "seckill_$run_id")
export SECKILL__REDIS__URL=$redis_url SECKILL__REDIS__KEY_PREFIX=$run_id
export SECKILL__SERVER__HOST=127.0.0.1 SECKILL__SERVER__PORT=$port SECKILL__IDS__INSTANCE_ID=905
export SECKILL__PAYMENT__PROVIDER_URL=http://127.0.0.1:$pport
export SECKILL__SWEEPER__INTERVAL_MS=200
# Not the development secrets' environment variables: the built-in defaults are those.
unset SECKILL__AUTH__JWT_SECRET SECKILL__ADMIN__TOKEN SECKILL__PAYMENT__WEBHOOK_SECRET
admin_token=$(python3 -c 'import tomllib; print(tomllib.load(open("config/default.toml", "rb"))["admin"]["token"])')

pids=()
finish() {
  local status=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$status" = 0 ]; then
    scripts/clean-test-data.sh --run "$run_id" >/dev/null
  else
    echo "test: browser run failed: logs and screenshots in $out; its data kept (scripts/clean-test-data.sh --run $run_id)" >&2
  fi
}
trap finish EXIT

"$bin" provider --port "$pport" --delay-ms 300 > "$out/provider.log" 2>&1 &
pids+=($!)
"$bin" serve > "$out/service.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { tail -20 "$out/service.log" >&2; fail "the service did not start"; }

say "browser scenarios (chromium $(chromium --version 2>/dev/null | awk '{print $2}'), selenium $SELENIUM_VERSION)"
"$venv/bin/python" tests/browser/test_pages.py --base "http://127.0.0.1:$port" --admin-token "$admin_token" \
  --artifacts "$out" --k6 "$k6" --bin "$bin" --chromium "$(command -v chromium)" \
  --chromedriver "$(command -v chromedriver)"
