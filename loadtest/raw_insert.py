#!/usr/bin/env python3
"""Reads `id<TAB>user_id` lines (the rows the writer stored) on stdin and prints them as
batched INSERTs into bench_order (500 rows per statement, one autocommit each): the MySQL
ceiling the writer is compared with, for the same rows and the same columns the writer
writes (amount and payment deadline included). usage: raw_insert.py ACTIVITY_ID"""
import sys

activity = int(sys.argv[1])
now = "2026-01-01 00:00:00.000"
deadline = "2026-01-01 00:15:00.000"
rows = [line.split("\t") for line in sys.stdin.read().splitlines() if line]
for start in range(0, len(rows), 500):
    values = ",".join(
        f"({int(i)},{activity},{int(u)},1,0,'{deadline}','created','k',0,'{now}','{now}')"
        for i, u in rows[start:start + 500]
    )
    print(
        "INSERT INTO bench_order (id,activity_id,user_id,quantity,amount_cents,payment_deadline,"
        "status,idempotency_key,version,"
        f"created_at,updated_at) VALUES {values};"
    )
