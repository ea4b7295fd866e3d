#!/usr/bin/env bash
# Drops the databases (seckill_test_<secs>_<rand>) and Redis keys (test_<secs>_<rand>:…)
# that test runs left behind, once they are over an hour old: a run going on at the same
# time keeps its data.
set -euo pipefail
cutoff=$(( $(date +%s) - 3600 ))
old() { # name → true if its embedded timestamp is before the cutoff
  local secs
  secs=$(sed -E 's/^(seckill_)?test_([0-9]+)_.*/\2/' <<<"$1")
  [[ "$secs" =~ ^[0-9]+$ ]] && (( secs < cutoff ))
}
client=$(command -v mariadb || command -v mysql || true)
if [ -n "$client" ]; then
  dropped=0
  for db in $("$client" -h 127.0.0.1 -u root -N -e "SHOW DATABASES LIKE 'seckill\\_test\\_%'" 2>/dev/null || true); do
    if old "$db"; then "$client" -h 127.0.0.1 -u root -e "DROP DATABASE \`$db\`"; dropped=$((dropped + 1)); fi
  done
  [ "$dropped" -gt 0 ] && echo "clean: dropped $dropped old test databases"
fi
if command -v redis-cli >/dev/null; then
  # One awk for all keys (a test run leaves thousands: one process per key took minutes).
  redis-cli --scan --pattern 'test_*' |
    awk -F_ -v cutoff="$cutoff" '$2 ~ /^[0-9]+$/ && $2 + 0 < cutoff' |
    xargs -r -n 500 redis-cli del >/dev/null
fi
true
