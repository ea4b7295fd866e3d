#!/usr/bin/env bash
# Part of scripts/test: docker-compose.yml and the Dockerfile, checked without a Docker engine.
#
#  1. `docker compose config` (the v2 plugin) or `docker-compose config` (Debian's
#     docker-compose) validates the file against the compose schema and resolves it, with
#     the default host ports and with ports set through the environment; a copy with a
#     misspelt key must be refused (the validator really validates);
#  2. scripts/checks/compose_rules.py: health checks, depends_on service_healthy, no restart
#     loop, host ports, addresses consistent with config/default.toml, Dockerfile layers;
#  3. the Dockerfile's dependency layer, replayed in a folder: the files its COPY lines take
#     before the first `cargo build`, then scripts/docker-stubs.sh, then `cargo metadata
#     --locked` must accept that workspace as it is, every target's source present.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/checks/common.sh
source scripts/checks/common.sh
dir=target/compose-check
rm -rf "$dir"
mkdir -p "$dir"
: > "$dir/empty.env"   # not the .env of whoever runs this

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose) format=(--format json)
else
  command -v docker-compose >/dev/null || fail "neither 'docker compose' nor docker-compose"
  compose=(docker-compose) format=()
fi
resolve() { # compose-file [VAR=value…] → the resolved configuration on stdout
  local file=$1; shift
  env -u SECKILL_HTTP_HOST_PORT -u SECKILL_REDIS_HOST_PORT -u SECKILL_MYSQL_HOST_PORT "$@" \
    "${compose[@]}" --env-file "$dir/empty.env" -f "$file" config "${format[@]}"
}

say "compose: ${compose[*]} config"
resolve docker-compose.yml > "$dir/defaults.yml" || fail "docker-compose.yml is not valid"
resolve docker-compose.yml SECKILL_HTTP_HOST_PORT=28080 SECKILL_REDIS_HOST_PORT=26379 \
  SECKILL_MYSQL_HOST_PORT=23306 > "$dir/overridden.yml" || fail "docker-compose.yml with ports set is not valid"
sed '0,/interval:/s//intreval:/' docker-compose.yml > "$dir/docker-compose.yml"
if resolve "$dir/docker-compose.yml" > /dev/null 2>&1; then
  fail "${compose[*]} accepted a misspelt key: it does not validate"
fi

py=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c 'import yaml, tomllib' 2>/dev/null; then py=$candidate; break; fi
done
[ -n "$py" ] || fail "no python3 with the yaml module (Debian: python3-yaml, which docker-compose brings)"
"$py" scripts/checks/compose_rules.py "$dir/defaults.yml" "$dir/overridden.yml"

say "compose: the Dockerfile's dependency layer (its COPY lines, docker-stubs.sh, cargo metadata --locked)"
stage=$dir/stage
mkdir -p "$stage"
sed -n '1,/cargo build/p' Dockerfile | sed -n 's/^COPY //p' | while read -ra args; do
  dest=${args[-1]}
  mkdir -p "$stage/$dest"
  cp "${args[@]:0:${#args[@]}-1}" "$stage/$dest"
done
(cd "$stage" && scripts/docker-stubs.sh && cargo metadata --locked --format-version 1 > ../metadata.json) ||
  fail "the Dockerfile's dependency layer is not a workspace cargo accepts as locked"
python3 - "$dir/metadata.json" <<'PY'
import json, os, sys
meta = json.load(open(sys.argv[1]))
members = set(meta["workspace_members"])
missing = [t["src_path"] for p in meta["packages"] if p["id"] in members for t in p["targets"]
           if not os.path.exists(t["src_path"])]
if missing:
    sys.exit(f"test: FAILED: the dependency layer lacks {missing}")
print(f"test: compose: dependency layer holds {len(members)} workspace members, every target stubbed")
PY
