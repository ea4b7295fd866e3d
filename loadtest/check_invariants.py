#!/usr/bin/env python3
"""Checks the flash-sale invariants on MySQL and Redis after a load run; exit 1 if any fails.

Reads the stores directly (mariadb and redis-cli), not through the service, at the addresses
the service uses: SECKILL__REDIS__URL and SECKILL__DATABASE__URL (user, password, host, port,
Redis database index, MySQL database), else those of config/default.toml.
  - no user has two orders (I2); sold <= total_stock (I1)
  - sold equals the units of the `created` orders; remaining (Redis) + sold = total_stock
  - every buyer the gate accepted is a row (I4): HLEN buyers = rows, and when not, which
    buyers have no row (and which rows no buyer); nothing pending or dead-lettered
  - the rows of the sale equal the fresh 201 answers the load tool counted (I3: replays and
    double clicks created nothing more), and the tool saw no unexpected answer and no replay
    naming another order
Each failure is named "<activity role>: <check>" (roles: sale, sold-out).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

try:
    import tomllib
except ImportError:  # Python < 3.11: the built-in defaults below
    tomllib = None

ap = argparse.ArgumentParser()
ap.add_argument("--db", help="database (default: the one in the configured MySQL URL)")
ap.add_argument("--prefix", required=True)
ap.add_argument("--sale", required=True)
ap.add_argument("--sold-out", required=True)
ap.add_argument("--summary", required=True, help="the load tool's summary (k6's export shape)")
args = ap.parse_args()
client = shutil.which("mariadb") or shutil.which("mysql")


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
db = args.db or db_url.path.lstrip("/")
# Passwords go through the environment (REDISCLI_AUTH, MYSQL_PWD), never the command line.
redis_cmd = ["redis-cli", "-h", redis_url.hostname or "127.0.0.1", "-p", str(redis_url.port or 6379),
             "-n", redis_url.path.lstrip("/") or "0"]
if redis_url.username:
    redis_cmd += ["--user", unquote(redis_url.username)]
redis_env = dict(os.environ)
if redis_url.password:  # an empty one would be sent, and refused
    redis_env["REDISCLI_AUTH"] = unquote(redis_url.password)
sql_cmd = [client, "--protocol=TCP", "-h", db_url.hostname or "127.0.0.1", "-P", str(db_url.port or 3306)]
if db_url.username:
    sql_cmd += ["-u", unquote(db_url.username)]
sql_env = {**os.environ, "MYSQL_PWD": unquote(db_url.password or "")}


def sql(query):
    out = subprocess.run([*sql_cmd, "-N", "-B", db, "-e", query], env=sql_env,
                         check=True, capture_output=True, text=True).stdout.strip()
    return [line.split("\t") for line in out.splitlines()]


def redis(*cmd):
    return subprocess.run([*redis_cmd, *cmd], env=redis_env, check=True, capture_output=True,
                          text=True).stdout.strip()


def redis_int(*cmd):
    """The first line of the reply as an integer (XPENDING's summary starts with the count)."""
    first = (redis(*cmd).splitlines() or [""])[0].strip()
    return int(first) if re.fullmatch(r"-?\d+", first) else None


failures = []


def expect(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {role}: {name}: {detail}")
    if not ok:
        failures.append(f"{role}: {name}")


def unmatched(tag, activity):
    """Buyers in Redis without a row, and rows without a buyer: which orders went missing."""
    fields = redis("HGETALL", f"{tag}:buyers").splitlines()
    buyers = {user: record.split(":")[0] for user, record in zip(fields[::2], fields[1::2])}
    rows = dict(sql(f"SELECT user_id, id FROM seckill_order WHERE activity_id={activity}"))
    for user in sorted(buyers.keys() - rows.keys())[:20]:
        print(f"     missing row: order {buyers[user]} of user {user} (accepted by Redis, not in MySQL)")
    for user in sorted(rows.keys() - buyers.keys())[:20]:
        print(f"     row without buyer: order {rows[user]} of user {user}")


def answers(name):
    """A counter of the load tool (k6's metrics, or goose's in the same shape)."""
    m = json.load(open(args.summary))["metrics"]
    return int(m.get(name, {}).get("values", {}).get("count", 0))


for role, activity in (("sale", args.sale), ("sold-out", args.sold_out)):
    tag = f"{args.prefix}:{{a:{activity}}}"
    [[total, sold]] = sql(f"SELECT total_stock, sold FROM seckill_activity WHERE id={activity}")
    total, sold = int(total), int(sold)
    [[rows, users, created_units]] = sql(
        "SELECT COUNT(*), COUNT(DISTINCT user_id), "
        "COALESCE(SUM(CASE WHEN status='created' THEN quantity END), 0) "
        f"FROM seckill_order WHERE activity_id={activity}")
    rows, users, created_units = int(rows), int(users), int(created_units)
    remaining = redis_int("GET", f"{tag}:stock")
    buyers = redis_int("HLEN", f"{tag}:buyers")
    pending = redis_int("XPENDING", f"{tag}:stream", "writers")
    dead = redis_int("XLEN", f"{tag}:dead")
    print(f"activity {activity}: total {total}, sold {sold}, rows {rows}, remaining {remaining}, "
          f"buyers {buyers}, pending {pending}, dead letters {dead}")
    expect("one order per user", rows == users, f"{rows} rows, {users} distinct users")
    expect("no oversell", sold <= total, f"sold {sold} <= total {total}")
    expect("sold = units of created orders", sold == created_units, f"{sold} vs {created_units}")
    expect("remaining + sold = stock", remaining is not None and remaining + sold == total,
           f"{remaining} + {sold} vs {total}")
    expect("every accepted buyer persisted", buyers == rows, f"{buyers} buyers vs {rows} rows")
    if buyers != rows:
        unmatched(tag, activity)
    expect("stream drained", pending == 0 and dead == 0, f"pending {pending}, dead {dead}")
    if activity == args.sale:
        accepted = answers("orders_accepted")
        expect("rows = fresh 201 answers", accepted == rows, f"{accepted} answers vs {rows} rows")
        bad = answers("unexpected_answers") + answers("inconsistent_replays")
        expect("no unexpected answer, every replay names the first order", bad == 0,
               f"{answers('unexpected_answers')} unexpected, {answers('inconsistent_replays')} inconsistent")

print("invariants: " + ("all hold" if not failures else f"{len(failures)} BROKEN: {', '.join(failures)}"))
sys.exit(1 if failures else 0)
