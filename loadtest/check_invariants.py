#!/usr/bin/env python3
"""Checks the flash-sale invariants on MySQL and Redis after a load run; exit 1 if any fails.

Reads the stores directly (mariadb and redis-cli), not through the service:
  - no user has two orders (I2); sold <= total_stock (I1)
  - sold equals the units of the `created` orders; remaining (Redis) + sold = total_stock
  - every buyer the gate accepted is a row (I4): HLEN buyers = rows; nothing pending or
    dead-lettered in the stream
  - the rows of the sale equal the fresh 201 answers the load tool counted (I3: replays and
    double clicks created nothing more), and the tool saw no unexpected answer and no replay
    naming another order
"""
import argparse
import json
import re
import shutil
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--db", required=True)
ap.add_argument("--prefix", required=True)
ap.add_argument("--sale", required=True)
ap.add_argument("--sold-out", required=True)
ap.add_argument("--summary", required=True, help="the load tool's summary (k6's export shape)")
args = ap.parse_args()
client = shutil.which("mariadb") or shutil.which("mysql")


def sql(query):
    out = subprocess.run([client, "-h", "127.0.0.1", "-u", "root", "-N", "-B", args.db, "-e", query],
                         check=True, capture_output=True, text=True).stdout.strip()
    return [line.split("\t") for line in out.splitlines()]


def redis(*cmd):
    return subprocess.run(["redis-cli", *cmd], check=True, capture_output=True,
                          text=True).stdout.strip()


def redis_int(*cmd):
    """The first line of the reply as an integer (XPENDING's summary starts with the count)."""
    first = (redis(*cmd).splitlines() or [""])[0].strip()
    return int(first) if re.fullmatch(r"-?\d+", first) else None


failures = []


def expect(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    if not ok:
        failures.append(name)


def answers(name):
    """A counter of the load tool (k6's metrics, or goose's in the same shape)."""
    m = json.load(open(args.summary))["metrics"]
    return int(m.get(name, {}).get("values", {}).get("count", 0))


for activity in (args.sale, args.sold_out):
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
    expect("stream drained", pending == 0 and dead == 0, f"pending {pending}, dead {dead}")
    if activity == args.sale:
        accepted = answers("orders_accepted")
        expect("rows = fresh 201 answers", accepted == rows, f"{accepted} answers vs {rows} rows")
        bad = answers("unexpected_answers") + answers("inconsistent_replays")
        expect("no unexpected answer, every replay names the first order", bad == 0,
               f"{answers('unexpected_answers')} unexpected, {answers('inconsistent_replays')} inconsistent")

print("invariants: " + ("all hold" if not failures else f"{len(failures)} BROKEN: {', '.join(failures)}"))
sys.exit(1 if failures else 0)
