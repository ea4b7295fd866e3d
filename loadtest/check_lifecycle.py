#!/usr/bin/env python3
"""Checks I1–I8 after a lifecycle load run (loadtest/lifecycle), directly in MySQL and Redis,
and writes the run's figures; exit 1 if any invariant fails.

usage: check_lifecycle.py --db DB --prefix P --activity A --load SUMMARY --provider STATS
                          --secs DURATION --out DIR --tool k6|goose

  I1 no oversell: sold <= total, Redis remaining >= 0
  I2 one order per user
  I3 every replay (a resent purchase, a second pay, a second cancel) named the first answer
  I4 every fresh 201 is a row; every buyer Redis accepted is a row; the stream is drained
  I6 at most one succeeded payment per order; a paid order has exactly one, and a succeeded
     payment's order is paid; nothing left `processing`; every charge the provider made is a
     payment here, succeeded or refund_required when it succeeded
  I7 Redis remaining + units of created/paid orders = total; sold = those units; every
     cancelled/expired order has its units back (stock_returned_at, and its id in the
     Redis `returned` set) and no other order is in that set; no unpaid order past its deadline
  I8 one payment per pay request that started one (a second use of a token started nothing)
"""
import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from stores import layout, redis, redis_int, sql as sql_in

ap = argparse.ArgumentParser()
for name in ("--db", "--prefix", "--activity", "--load", "--provider", "--secs", "--out", "--tool"):
    ap.add_argument(name, required=True)
args = ap.parse_args()
A = args.activity
keys = layout(args.prefix, A)["activity"]


def sql(query):
    return sql_in(args.db, query)


def one(query):
    return [int(x) if x not in ("NULL", "") else 0 for x in sql(query)[0]]


k6 = json.load(open(args.load))["metrics"]  # k6's summary, or goose's in the same shape
provider = json.load(open(args.provider))


def counter(name):
    return int(k6.get(name, {}).get("values", {}).get("count", 0))


failures = []


def expect(inv, name, ok, detail):
    print(f"{'ok  ' if ok else 'FAIL'} {inv} {name}: {detail}")
    if not ok:
        failures.append(f"{inv} {name}")


[total, sold] = one(f"SELECT total_stock, sold FROM seckill_activity WHERE id={A}")
statuses = dict((s, int(n)) for s, n in sql(
    f"SELECT status, COUNT(*) FROM seckill_order WHERE activity_id={A} GROUP BY status"))
[rows, users, held] = one(
    "SELECT COUNT(*), COUNT(DISTINCT user_id), "
    "COALESCE(SUM(CASE WHEN status IN ('created','paid') THEN quantity END), 0) "
    f"FROM seckill_order WHERE activity_id={A}")
remaining = redis_int("GET", keys["stock"])
buyers = redis_int("HLEN", keys["buyers"])
stream = redis_int("XLEN", keys["stream"])
returned = set(redis("SMEMBERS", keys["returned"]).split())
closed = {r[0]: r[1] for r in sql(
    f"SELECT id, stock_returned_at FROM seckill_order WHERE activity_id={A} "
    "AND status IN ('cancelled','expired')")}
pay = f"seckill_payment p JOIN seckill_order o ON o.id = p.order_id AND o.activity_id = {A}"
pstat = dict((s, int(n)) for s, n in sql(f"SELECT p.status, COUNT(*) FROM {pay} GROUP BY p.status"))
print(f"activity {A}: total {total}, sold {sold}, remaining {remaining}, orders {statuses}, "
      f"payments {pstat}, returned set {len(returned)}")

expect("I1", "no oversell", sold <= total and remaining is not None and remaining >= 0,
       f"sold {sold} <= total {total}, remaining {remaining} >= 0")
expect("I2", "one order per user", rows == users, f"{rows} rows, {users} users")
expect("I3", "replays name the first answer", counter("inconsistent_replays") == 0,
       f"{counter('inconsistent_replays')} inconsistent, {counter('unexpected_answers')} unexpected answers")
expect("I3", "no unexpected answer", counter("unexpected_answers") == 0, f"{counter('unexpected_answers')}")
expect("I4", "every fresh 201 is a row", counter("orders_accepted") == rows,
       f"{counter('orders_accepted')} answers, {rows} rows")
expect("I4", "every accepted buyer is a row, stream drained", buyers == rows and stream == 0,
       f"{buyers} buyers, {rows} rows, {stream} in the stream")

[multi] = one(f"SELECT COUNT(*) FROM (SELECT p.order_id FROM {pay} WHERE p.status='succeeded' "
              "GROUP BY p.order_id HAVING COUNT(*) > 1) x")
[paid_bad] = one(f"SELECT COUNT(*) FROM seckill_order o WHERE o.activity_id={A} AND o.status='paid' AND "
                 "(o.paid_at IS NULL OR (SELECT COUNT(*) FROM seckill_payment p WHERE p.order_id=o.id "
                 "AND p.status='succeeded') <> 1)")
[succ_bad] = one(f"SELECT COUNT(*) FROM {pay} WHERE p.status='succeeded' AND o.status <> 'paid'")
expect("I6", "at most one succeeded payment per order", multi == 0, f"{multi} orders with more")
expect("I6", "paid ⇔ one succeeded payment", paid_bad == 0 and succ_bad == 0,
       f"{paid_bad} paid orders without exactly one, {succ_bad} succeeded payments of unpaid orders")
expect("I6", "nothing left processing", pstat.get("processing", 0) == 0, f"{pstat.get('processing', 0)}")
ours = sum(pstat.values())
expect("I6", "every provider charge is a payment here", provider["charges"] == ours
       and provider["succeeded"] == pstat.get("succeeded", 0) + pstat.get("refund_required", 0),
       f"provider {provider['charges']} charges ({provider['succeeded']} succeeded), "
       f"here {ours} payments ({pstat.get('succeeded', 0)} succeeded, "
       f"{pstat.get('refund_required', 0)} refund_required)")

expect("I7", "remaining + held units = total", remaining is not None and remaining + held == total,
       f"{remaining} + {held} vs {total}")
expect("I7", "sold = held units", sold == held, f"{sold} vs {held}")
not_back = [o for o, at in closed.items() if at in ("NULL", "") or o not in returned]
expect("I7", "every closed order's units back once", not not_back and returned <= set(closed),
       f"{len(closed)} closed, {len(not_back)} not back, {len(returned - set(closed))} returned not closed")
[overdue] = one(f"SELECT COUNT(*) FROM seckill_order WHERE activity_id={A} AND status='created' "
                "AND payment_deadline < NOW(3) - INTERVAL 5 SECOND")
expect("I7", "no unpaid order past its deadline", overdue == 0, f"{overdue}")
expect("I8", "one payment per started pay request", ours == counter("payments_started"),
       f"{ours} payments, {counter('payments_started')} pay requests that started one "
       f"({counter('payment_replays')} second clicks replayed)")


def ts(s):
    return datetime.fromisoformat(s)


# Resale: each unit given back by an expiry went to the next order accepted after its return.
expired = sorted((ts(r), ts(d)) for r, d in sql(
    f"SELECT stock_returned_at, payment_deadline FROM seckill_order WHERE activity_id={A} "
    "AND status='expired' AND stock_returned_at IS NOT NULL"))
later = sorted(ts(c) for [c] in sql(f"SELECT created_at FROM seckill_order WHERE activity_id={A}"))
gaps, j = [], 0
for back, deadline in expired:
    while j < len(later) and later[j] < back:
        j += 1
    if j < len(later):
        gaps.append((later[j] - deadline).total_seconds())
        j += 1
gaps.sort()


def q(values, p):
    return round(values[min(len(values) - 1, int(len(values) * p))], 3) if values else None


returns = sorted(ts(r) for [r] in sql(f"SELECT stock_returned_at FROM seckill_order WHERE activity_id={A} "
                                      "AND stock_returned_at IS NOT NULL"))
resold = sum(1 for c in later if returns and c > returns[0])
secs = float(args.secs)
ttp = k6.get("time_to_paid_ms", {}).get("values", {})
figures = {
    "tool": args.tool,
    "duration_secs": secs,
    "total_stock": total,
    "orders": rows,
    "orders_per_sec": round(rows / secs, 1),
    "paid": statuses.get("paid", 0),
    "cancelled": statuses.get("cancelled", 0),
    "expired": statuses.get("expired", 0),
    "created_left": statuses.get("created", 0),
    "rejected": statuses.get("rejected", 0),
    "units_resold": resold,
    "payments": ours,
    "payments_per_sec": round(ours / secs, 1),
    "refund_required": pstat.get("refund_required", 0),
    "sold_out_answers": counter("rejected_sold_out"),
    "callback_deliveries": provider["delivered"],
    "callback_p50_ms": provider["callback_p50_ms"],
    "callback_p99_ms": provider["callback_p99_ms"],
    "time_to_paid_p50_ms": ttp.get("med"),
    "time_to_paid_p95_ms": ttp.get("p(95)"),
    "expiry_to_resale_secs": {"n": len(gaps), "p50": q(gaps, 0.5), "p99": q(gaps, 0.99),
                              "max": gaps[-1] if gaps else None},
    "invariants": "all hold" if not failures else failures,
}
out = Path(args.out)
(out / "summary.json").write_text(json.dumps(figures, indent=1) + "\n")
lines = ["# Lifecycle load run", "", "| figure | value |", "|---|---|"]
lines += [f"| {k} | {v} |" for k, v in figures.items()]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print(json.dumps(figures))
print("invariants: " + ("all hold" if not failures else f"{len(failures)} BROKEN: {', '.join(failures)}"))
sys.exit(1 if failures else 0)
