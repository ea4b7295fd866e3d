#!/usr/bin/env python3
"""Checks the flash-sale invariants on MySQL and Redis after a load run; exit 1 if any fails.

Reads the stores directly (loadtest/stores.py: mariadb and redis-cli), not through the
service, at the addresses the service uses.
  - no user has two orders (I2); sold <= total_stock (I1)
  - sold equals the units of the `created` and `paid` orders; remaining (Redis) + sold = total_stock
  - every buyer the gate accepted is a row (I4): HLEN buyers = rows, and when not, which
    buyers have no row (and which rows no buyer); nothing pending or dead-lettered
  - the rows of the sale equal the fresh 201 answers the load tool counted (I3: replays and
    double clicks created nothing more), and the tool saw no unexpected answer and no replay
    naming another order
Each failure is named "<activity role>: <check>" (roles: sale, sold-out).
"""
import argparse
import json
import sys

from stores import default_db, layout, redis, redis_int
from stores import sql as sql_in

ap = argparse.ArgumentParser()
ap.add_argument("--db", help="database (default: the one in the configured MySQL URL)")
ap.add_argument("--prefix", required=True)
ap.add_argument("--sale", required=True)
ap.add_argument("--sold-out", required=True)
ap.add_argument("--summary", required=True, help="the load tool's summary (k6's export shape)")
args = ap.parse_args()
db = args.db or default_db


def sql(query):
    return sql_in(db, query)


failures = []


def expect(name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {role}: {name}: {detail}")
    if not ok:
        failures.append(f"{role}: {name}")


def unmatched(keys, activity):
    """Buyers in Redis without a row, and rows without a buyer: which orders went missing."""
    fields = redis("HGETALL", keys["buyers"]).splitlines()
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
    contract = layout(args.prefix, activity)
    keys = contract["activity"]
    [[total, sold]] = sql(f"SELECT total_stock, sold FROM seckill_activity WHERE id={activity}")
    total, sold = int(total), int(sold)
    [[rows, users, created_units]] = sql(
        "SELECT COUNT(*), COUNT(DISTINCT user_id), "
        "COALESCE(SUM(CASE WHEN status IN ('created', 'paid') THEN quantity END), 0) "
        f"FROM seckill_order WHERE activity_id={activity}")
    rows, users, created_units = int(rows), int(users), int(created_units)
    remaining = redis_int("GET", keys["stock"])
    buyers = redis_int("HLEN", keys["buyers"])
    pending = redis_int("XPENDING", keys["stream"], contract["writer_group"])
    dead = redis_int("XLEN", keys["dead"])
    print(f"activity {activity}: total {total}, sold {sold}, rows {rows}, remaining {remaining}, "
          f"buyers {buyers}, pending {pending}, dead letters {dead}")
    expect("one order per user", rows == users, f"{rows} rows, {users} distinct users")
    expect("no oversell", sold <= total, f"sold {sold} <= total {total}")
    expect("sold = units of created and paid orders", sold == created_units, f"{sold} vs {created_units}")
    expect("remaining + sold = stock", remaining is not None and remaining + sold == total,
           f"{remaining} + {sold} vs {total}")
    expect("every accepted buyer persisted", buyers == rows, f"{buyers} buyers vs {rows} rows")
    if buyers != rows:
        unmatched(keys, activity)
    expect("stream drained", pending == 0 and dead == 0, f"pending {pending}, dead {dead}")
    if activity == args.sale:
        accepted = answers("orders_accepted")
        expect("rows = fresh 201 answers", accepted == rows, f"{accepted} answers vs {rows} rows")
        bad = answers("unexpected_answers") + answers("inconsistent_replays")
        expect("no unexpected answer, every replay names the first order", bad == 0,
               f"{answers('unexpected_answers')} unexpected, {answers('inconsistent_replays')} inconsistent")

print("invariants: " + ("all hold" if not failures else f"{len(failures)} BROKEN: {', '.join(failures)}"))
sys.exit(1 if failures else 0)
