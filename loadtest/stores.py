"""Direct access to the service's stores for the load tests' checks (mariadb and redis-cli).

The addresses are the service's: SECKILL__REDIS__URL and SECKILL__DATABASE__URL (user,
password, host, port, Redis database index, MySQL database), else those of
config/default.toml. Passwords go through the environment (REDISCLI_AUTH, MYSQL_PWD), never
the command line.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

try:
    import tomllib
except ImportError:  # Python < 3.11: the built-in defaults below
    tomllib = None


def configured(section, fallback):
    """The URL the service uses: its environment variable, else config/default.toml."""
    env = os.environ.get(f"SECKILL__{section.upper()}__URL")
    if env:
        return env
    path = Path(__file__).resolve().parent.parent / "config" / "default.toml"
    if tomllib and path.exists():
        return tomllib.loads(path.read_text()).get(section, {}).get("url", fallback)
    return fallback


redis_url = urlsplit(configured("redis", "redis://127.0.0.1:6379"))
db_url = urlsplit(configured("database", "mysql://root@127.0.0.1:3306/seckill"))
default_db = db_url.path.lstrip("/")
_client = shutil.which("mariadb") or shutil.which("mysql")
_redis_cmd = ["redis-cli", "-h", redis_url.hostname or "127.0.0.1", "-p", str(redis_url.port or 6379),
              "-n", redis_url.path.lstrip("/") or "0"]
if redis_url.username:
    _redis_cmd += ["--user", unquote(redis_url.username)]
_redis_env = dict(os.environ)
if redis_url.password:  # an empty one would be sent, and refused
    _redis_env["REDISCLI_AUTH"] = unquote(redis_url.password)
_sql_cmd = [_client, "--protocol=TCP", "-h", db_url.hostname or "127.0.0.1", "-P", str(db_url.port or 3306)]
if db_url.username:
    _sql_cmd += ["-u", unquote(db_url.username)]
_sql_env = {**os.environ, "MYSQL_PWD": unquote(db_url.password or "")}


def sql(db, query):
    """Rows of `query` in database `db`, each a list of strings."""
    out = subprocess.run([*_sql_cmd, "-N", "-B", db, "-e", query], env=_sql_env,
                         check=True, capture_output=True, text=True).stdout.strip()
    return [line.split("\t") for line in out.splitlines()]


def redis(*cmd):
    return subprocess.run([*_redis_cmd, *cmd], env=_redis_env, check=True, capture_output=True,
                          text=True).stdout.strip()


def redis_int(*cmd):
    """The first line of the reply as an integer (XPENDING's summary starts with the count)."""
    first = (redis(*cmd).splitlines() or [""])[0].strip()
    return int(first) if re.fullmatch(r"-?\d+", first) else None


def layout(prefix, activity):
    """The activity's Redis keys and stream fields as the binary defines them (`seckill keys`,
    src/gate/layout.rs): the checks never spell a key. SECKILL_BIN names the binary."""
    binary = os.environ.get("SECKILL_BIN")
    if not binary:
        raise SystemExit("SECKILL_BIN is not set: the seckill binary that defines the Redis keys")
    out = subprocess.run([binary, "keys", "--prefix", prefix, "--activity", str(activity)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)
