#!/usr/bin/env python3
"""Prints N rows of batched INSERTs (500 rows each, one autocommit per batch) into
bench_order: the MySQL ceiling the writer is compared with. usage: raw_insert.py N"""
import sys

n = int(sys.argv[1])
now = "2026-01-01 00:00:00.000"
for start in range(0, n, 500):
    rows = ",".join(
        f"({i},1,{i},1,'created','k',0,'{now}','{now}')" for i in range(start + 1, min(n, start + 500) + 1)
    )
    print(
        "INSERT INTO bench_order (id,activity_id,user_id,quantity,status,idempotency_key,version,"
        f"created_at,updated_at) VALUES {rows};"
    )
