# shellcheck shell=bash disable=SC2034  # variables for the scripts that source this file
# Sourced by the scripts (deps.sh, clean-test-data.sh, loadtest/run): the Redis and MySQL
# addresses the service would use, and clients that talk to exactly those.
#
# The addresses come from SECKILL__REDIS__URL and SECKILL__DATABASE__URL, as for the service,
# else from config/default.toml. (A file named by SECKILL_CONFIG is not read here: export
# the two variables when it changes them.) User, password, host, port, Redis database index
# and MySQL database name are all taken from the URL.
#
#   redis_cli ARGS…    redis-cli at the configured Redis (password not on the command line)
#   redis_benchmark ARGS…  redis-benchmark at the configured Redis
#   mysql_cli ARGS…    the mariadb/mysql client at the configured server (no database chosen)
#   db_url_named NAME  the configured MySQL URL with its database replaced by NAME
#   url_parse URL PORT sets url_user url_pass url_host url_port url_path (decoded)

addr_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The url of a section of config/default.toml ("" if absent).
addr_default() { # section
  awk -v want="[$1]" '
    /^\[/ { section = $1 }
    section == want && $1 == "url" { match($0, /"[^"]*"/); print substr($0, RSTART + 1, RLENGTH - 2); exit }
  ' "$addr_root/config/default.toml" 2>/dev/null
}

url_decode() { # percent-encoded text → text
  local s=${1//+/ }
  printf '%b' "${s//%/\\x}"
}

url_parse() { # url default-port
  local rest=${1#*://} auth=""
  url_path=""
  if [[ $rest == */* ]]; then url_path=${rest#*/}; rest=${rest%%/*}; fi
  url_path=${url_path%%\?*}
  if [[ $rest == *@* ]]; then auth=${rest%@*}; rest=${rest##*@}; fi
  url_user=$(url_decode "${auth%%:*}")
  url_pass=""
  [[ $auth == *:* ]] && url_pass=$(url_decode "${auth#*:}")
  if [[ $rest == \[* ]]; then # [v6 address]:port
    url_host=${rest%%]*}; url_host=${url_host#[}
    rest=${rest#*]}
  else
    url_host=${rest%%:*}
    rest=${rest#"$url_host"}
  fi
  url_port=${rest#:}
  [ -n "$url_port" ] || url_port=$2
}

redis_url=${SECKILL__REDIS__URL:-$(addr_default redis)}
redis_url=${redis_url:-redis://127.0.0.1:6379}
db_url=${SECKILL__DATABASE__URL:-$(addr_default database)}
db_url=${db_url:-mysql://root@127.0.0.1:3306/seckill}

url_parse "$db_url" 3306
db_host=$url_host db_port=$url_port db_user=$url_user db_pass=$url_pass db_name=$url_path

url_parse "$redis_url" 6379
redis_host=$url_host redis_port=$url_port redis_user=$url_user redis_pass=$url_pass
redis_db=${url_path:-0}
# host, port, database and user of the configured Redis as redis-cli/redis-benchmark options
redis_opts=(-h "$redis_host" -p "$redis_port" -n "$redis_db" ${redis_user:+--user "$redis_user"})

redis_cli() {
  # the password through the environment, never the command line (ps shows that); none at
  # all without one (an empty one is sent, and refused)
  env ${redis_pass:+"REDISCLI_AUTH=$redis_pass"} redis-cli "${redis_opts[@]}" "$@"
}

# redis-benchmark reads no password from the environment: -a it is, when there is one.
redis_benchmark() {
  local opts=("${redis_opts[@]}")
  opts[4]=--dbnum
  redis-benchmark "${opts[@]}" ${redis_pass:+-a "$redis_pass"} "$@"
}

mysql_client=$(command -v mariadb || command -v mysql || true)
mysql_cli() {
  [ -n "$mysql_client" ] || { echo "no mariadb or mysql client on PATH" >&2; return 127; }
  # The password goes through the environment, never the command line (ps shows that).
  MYSQL_PWD=$db_pass "$mysql_client" --protocol=TCP -h "$db_host" -P "$db_port" \
    ${db_user:+-u "$db_user"} "$@"
}

db_url_named() { # name → the configured URL with that database (query string kept)
  local base=${db_url%%\?*} query=""
  [[ $db_url == *\?* ]] && query="?${db_url#*\?}"
  local authority=${base#*://}
  authority=${authority%%/*}
  echo "${base%%://*}://$authority/$1$query"
}

# The address as it may be shown (no password).
redis_shown() { echo "$redis_host:$redis_port/$redis_db"; }
db_shown() { echo "$db_host:$db_port"; }

# One Redis key of an activity as the binary defines it (`$bin keys`, src/gate/layout.rs):
# meta, stock, buyers, stream, dead, returned, replicated, or idempotency (a template with {user} and
# {key}). Scripts never spell a key. Needs $bin, the seckill binary.
activity_key() { # prefix activity name
  "$bin" keys --prefix "$1" --activity "$2" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["activity"][sys.argv[1]])' "$3"
}
