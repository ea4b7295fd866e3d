#!/usr/bin/env python3
"""Samples the service every 100 ms into CSV on stdout, until killed.

usage: sample.py BASE_URL ACTIVITY ADMIN_TOKEN
columns: t (unix s), accepted, replay, sold_out, already_purchased, local_answers (cumulative
counters from /metrics, all activities), persisted, pending (admin stats of ACTIVITY)
"""
import json
import re
import signal
import sys
import time
import urllib.request

base, activity, token = sys.argv[1:4]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
outcome = re.compile(r'^seckill_purchase_total\{outcome="([a-z_]+)"\} (\S+)$', re.M)
local = re.compile(r"^seckill_gate_local_answers_total (\S+)$", re.M)
print("t,accepted,replay,sold_out,already_purchased,local_answers,persisted,pending", flush=True)
while True:
    t = time.time()
    try:
        text = urllib.request.urlopen(f"{base}/metrics", timeout=2).read().decode()
        counts = {k: float(v) for k, v in outcome.findall(text)}
        m = local.search(text)
        req = urllib.request.Request(
            f"{base}/api/v1/admin/activities/{activity}",
            headers={"Authorization": f"Bearer {token}"},
        )
        stats = json.load(urllib.request.urlopen(req, timeout=2))
        row = [
            f"{t:.3f}",
            *(int(counts.get(k, 0)) for k in ("accepted", "replay", "sold_out", "already_purchased")),
            int(float(m.group(1))) if m else 0,
            stats["persisted"],
            stats["pending"],
        ]
        print(",".join(map(str, row)), flush=True)
    except Exception as e:  # a missed sample is not fatal
        print(f"# {e}", file=sys.stderr)
    time.sleep(max(0.0, 0.1 - (time.time() - t)))
