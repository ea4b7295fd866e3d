"""The failover test's buyers (loadtest/failover): many buyers over several service instances,
each retrying with the same Idempotency-Key on a 503 or a broken connection, while a Redis
Cluster master is killed (SIGKILL) mid-sale.

usage: failover.py --bases URL,URL,... --activities ID,ID,... --secs S --kill-at S
                   --kill-pid PID --shard-activities ID,... --out FILE

Writes to FILE (JSON): every acknowledged order (activity, user, key, order id), the counts of
503s and of buyers who gave up, and for the activities on the killed shard the longest time
without an accepted purchase after the kill. Then asks again with every acknowledged key and
counts the replays that do not answer the first order.
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from urllib.parse import urlsplit

ap = argparse.ArgumentParser()
for name in ("--bases", "--activities", "--secs", "--kill-at", "--kill-pid", "--shard-activities",
             "--out"):
    ap.add_argument(name, required=True)
ap.add_argument("--threads", type=int, default=24)
ap.add_argument("--restart-after", type=float, default=3.0,
                help="seconds after the kill to restart the killed node (it rejoins as a replica)")
ap.add_argument("--restart-cmd", default="scripts/redis-cluster.sh start")
ap.add_argument("--lag-pid", type=int, default=0,
                help="the victim's replica: stopped (SIGSTOP) and cut off by its master (CLIENT "
                     "KILL TYPE replica) half a second before the kill, so the accepts of that "
                     "half second never reach it; resumed at the kill and promoted at once "
                     "(CLUSTER FAILOVER TAKEOVER on --lag-port)")
ap.add_argument("--lag-port", type=int, default=0)
ap.add_argument("--kill-port", type=int, default=0, help="the victim's port (for --lag)")
ap.add_argument("--hang", action="store_true",
                help="stop the master (SIGSTOP) instead of killing it, and resume it (SIGCONT) "
                     "instead of restarting it: a hung node keeps its sockets open")
args = ap.parse_args()
bases = [urlsplit(b) for b in args.bases.split(",")]
activities = [int(a) for a in args.activities.split(",")]
shard = {int(a) for a in args.shard_activities.split(",") if a}
secs, kill_at = float(args.secs), float(args.kill_at)

lock = threading.Lock()
acked = []          # (activity, user, key, order_id, t)
unavailable = 0     # 503 answers (each retried)
broken = 0          # connection errors (each retried)
gave_up = 0
other = {}
next_user = [1]
t0 = time.monotonic()


def post(conn_box, base, path, user, key):
    """One POST; (status, body) or (None, None) on a broken connection (a new one next)."""
    try:
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection(base.hostname, base.port, timeout=5)
        c = conn_box[0]
        c.request("POST", path, body=b"", headers={"X-User-Id": str(user), "Idempotency-Key": key})
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else {})
    except (OSError, http.client.HTTPException, ValueError):
        if conn_box[0] is not None:
            conn_box[0].close()
        conn_box[0] = None
        return None, None


def buy(conn_boxes, user, activity, key):
    """Retries with the same key until an answer that is not 503 (or 60 tries)."""
    global unavailable, broken, gave_up
    for attempt in range(60):
        i = (user + attempt) % len(bases)
        status, body = post(conn_boxes[i], bases[i], f"/api/v1/activities/{activity}/purchase", user, key)
        if status in (None, 503, 500, 502, 504):
            with lock:
                if status is None:
                    broken += 1
                else:
                    unavailable += 1
            time.sleep(0.05)
            continue
        return status, body
    with lock:
        gave_up += 1
    return None, None


def buyer():
    conn_boxes = [[None] for _ in bases]
    while time.monotonic() - t0 < secs:
        with lock:
            user = next_user[0]
            next_user[0] += 1
        activity = activities[user % len(activities)]
        key = f"k{user}"
        status, body = buy(conn_boxes, user, activity, key)
        with lock:
            if status == 201:
                acked.append((activity, user, key, int(body["order_id"]), time.monotonic() - t0))
            elif status is not None:
                code = body.get("code", str(status))
                other[code] = other.get(code, 0) + 1


restarted_at = [None]


def killer():
    if args.lag_pid:
        time.sleep(max(kill_at - 0.5, 0))
        os.kill(args.lag_pid, signal.SIGSTOP)
        # What the master sent before this is in the stopped replica's socket buffer and
        # reaches it on resume; what it writes after it does not.
        subprocess.run(["redis-cli", "-p", str(args.kill_port), "client", "kill", "type",
                        "replica"], check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        time.sleep(min(0.5, kill_at))
    else:
        time.sleep(kill_at)
    os.kill(int(args.kill_pid), signal.SIGSTOP if args.hang else signal.SIGKILL)
    if args.lag_pid:
        os.kill(args.lag_pid, signal.SIGCONT)
        time.sleep(0.1)
        subprocess.run(["redis-cli", "-p", str(args.lag_port), "cluster", "failover", "takeover"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # As an operator (or a supervisor) would: the node comes back, and rejoins as a replica
    # of the master its replica became.
    time.sleep(args.restart_after)
    if args.hang:
        os.kill(int(args.kill_pid), signal.SIGCONT)
    else:
        subprocess.run(args.restart_cmd, shell=True, check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    restarted_at[0] = time.monotonic() - t0


threads = [threading.Thread(target=buyer) for _ in range(args.threads)]
threading.Thread(target=killer, daemon=True).start()
for t in threads:
    t.start()
for t in threads:
    t.join()

# Longest time without an accept on the killed shard, from the kill on.
times = sorted(t for (a, _, _, _, t) in acked if a in shard and t >= kill_at - 1)
gaps = [b - a for a, b in zip([kill_at] + times, times)]
outage = max(gaps) if gaps else secs - kill_at

# Every acknowledged key asked again (after the failover): the same order?
mismatched = [0]
todo = list(acked)


def replayer():
    conn_boxes = [[None] for _ in bases]
    while True:
        with lock:
            if not todo:
                return
            activity, user, key, order_id, _ = todo.pop()
        status, body = buy(conn_boxes, user, activity, key)
        if status != 201 or int(body.get("order_id", 0)) != order_id:
            with lock:
                mismatched[0] += 1


replayers = [threading.Thread(target=replayer) for _ in range(args.threads)]
for t in replayers:
    t.start()
for t in replayers:
    t.join()
mismatched = mismatched[0]

json.dump({
    "acknowledged": [[a, u, k, o] for (a, u, k, o, _) in acked],
    "accepted": len(acked),
    "answers_503": unavailable,
    "broken_connections": broken,
    "gave_up": gave_up,
    "other_answers": other,
    "shard_outage_secs": round(outage, 2),
    "killed_node_restarted_at_secs": restarted_at[0],
    "replays_not_the_first_order": mismatched,
}, open(args.out, "w"))
print(f"accepted {len(acked)}, 503s {unavailable}, broken {broken}, gave up {gave_up}, "
      f"shard outage {outage:.2f} s, replays not the first order {mismatched}")
