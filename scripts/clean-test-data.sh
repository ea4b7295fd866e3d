#!/usr/bin/env bash
# Drops the databases and Redis keys that earlier test runs left behind.
set -euo pipefail
client=$(command -v mariadb || command -v mysql || true)
if [ -n "$client" ]; then
  dbs=$("$client" -h 127.0.0.1 -u root -N -e "SHOW DATABASES LIKE 'seckill\\_test\\_%'" 2>/dev/null || true)
  for db in $dbs; do "$client" -h 127.0.0.1 -u root -e "DROP DATABASE \`$db\`"; done
  [ -n "$dbs" ] && echo "clean: dropped $(echo "$dbs" | wc -l) test databases"
fi
if command -v redis-cli >/dev/null; then
  redis-cli --scan --pattern 'test_*' | xargs -r -n 500 redis-cli del >/dev/null
fi
true
