#!/usr/bin/env python3
"""Writes summary.json, summary.md and chart.svg of a loadtest/run into its results folder.

Inputs, all in --out: load-summary.json (k6's summary export, or goose's phases in the same
shape), timeline.csv (loadtest/sample.py), wrk-*.txt (capacity phases, if wrk ran),
redis-accept.csv and redis-soldout.csv (redis-benchmark --csv), invariants.txt.
Only the standard library: the harness must run on a clean machine.
"""
import argparse
import csv
import json
import os
import re

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
for name in ("spike-end", "t-start", "drain-after", "writer-secs", "raw-secs"):
    ap.add_argument(f"--{name}", type=float, required=True)
for name in ("rss-kb", "writer-rows", "raw-rows", "spike-secs", "flood-secs", "health-secs", "vus"):
    ap.add_argument(f"--{name}", type=int, required=True)
ap.add_argument("--tool", default="k6")
ap.add_argument("--steady-rate", type=int, default=0)
a = ap.parse_args()
out = a.out


def read(name):
    path = os.path.join(out, name)
    return open(path).read() if os.path.exists(path) else ""


def redis_rps(name):
    rows = list(csv.reader(read(name).splitlines()))
    return float(rows[1][1]) if len(rows) > 1 else None


timeline = []
for row in csv.DictReader(line for line in read("timeline.csv").splitlines() if not line.startswith("#")):
    timeline.append({k: float(v) for k, v in row.items()})


def per_second(column):
    """(t, rate) pairs from a cumulative column, over 1 s windows."""
    pts = []
    for i, r in enumerate(timeline):
        j = i
        while j > 0 and r["t"] - timeline[j - 1]["t"] <= 1.0:
            j -= 1
        if j < i and r["t"] > timeline[j]["t"]:
            pts.append((r["t"], (r[column] - timeline[j][column]) / (r["t"] - timeline[j]["t"])))
    return pts


m = json.loads(read("load-summary.json"))["metrics"]
phases = {}
durations = {"spike": a.spike_secs + 2, "flood": a.flood_secs, "healthz": a.health_secs}
if "http_reqs{phase:steady}" in m:
    durations["steady"] = None  # goose's own rate: the run's length includes its start
for phase, secs in durations.items():
    d = m.get(f"http_req_duration{{phase:{phase}}}", {}).get("values", {})
    r = m.get(f"http_reqs{{phase:{phase}}}", {}).get("values", {})
    n = r.get("count", 0)
    phases[phase] = {
        "requests": n,
        "rps": round(n / secs, 1) if secs else round(r.get("rate", 0), 1),
        "p50_ms": round(d.get("med", 0), 2),
        "p95_ms": round(d.get("p(95)", 0), 2),
        "p99_ms": round(d.get("p(99)", 0), 2),
    }
counts = {k: int(m.get(k, {}).get("values", {}).get("count", 0)) for k in (
    "orders_accepted", "orders_replayed", "rejected_sold_out", "rejected_already_purchased",
    "unexpected_answers", "inconsistent_replays", "dropped_iterations")}


def wrk(name):
    """RPS and latency percentiles of a wrk --latency run, if it ran."""
    text = read(f"wrk-{name}.txt")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        return None
    def ms(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            return None
        return round(float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)], 2)
    result = {"rps": float(rps.group(1)), "p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99)}
    # CPU per request of the service and of Redis (loadtest/run reads /proc around the phase):
    # with the client on the same 2 cores, this is what bounds each path.
    reqs = re.search(r"(\d+) requests in", text)
    for who in ("service", "redis"):
        cpu = re.search(rf"{who}_cpu_s=(\d+)/(\d+)", text)
        if cpu and reqs and int(reqs.group(1)):
            result[f"{who}_cpu_us_per_req"] = round(
                int(cpu.group(1)) / int(cpu.group(2)) * 1e6 / int(reqs.group(1)), 1)
    return result


capacity = {name: wrk(name) for name in ("buy", "soldout", "healthz", "healthz-shaped")}
accept_rate = per_second("accepted")
peak_accept = max((r for _, r in accept_rate), default=0.0)
# Drain time: from the last accepted purchase (the first sample that shows the final count;
# the load tool's own start-up makes the nominal end of the spike unreliable) to the first
# sample with nothing pending.
final_accepted = timeline[-1]["accepted"] if timeline else 0
last_purchase = next((r["t"] for r in timeline if r["accepted"] >= final_accepted), a.spike_end)
drain = next((r["t"] - last_purchase for r in timeline
              if r["t"] >= last_purchase and r["pending"] == 0), None)
redis_accept, redis_soldout = redis_rps("redis-accept.csv"), redis_rps("redis-soldout.csv")
writer_rps = a.writer_rows / a.writer_secs if a.writer_secs > 0 else None
raw_rps = a.raw_rows / a.raw_secs if a.raw_secs > 0 else None


def ratio(x, y):
    return round(x / y, 2) if x and y else None


spike, flood, health = (phases.get(p, {}) for p in ("spike", "flood", "healthz"))
# Ratios from the light client when it ran (the service's limits), else from the load tool.
# The sold-out path is held to /healthz sent with the same requests (headers, wrk's Lua):
# plain /healthz is a static request that costs wrk far less per request, so with client and
# service on one machine it measures the client as much as the service.
shaped = capacity.get("healthz-shaped")
if all(capacity[n] for n in ("buy", "soldout", "healthz")):
    buy_rps, soldout_rps, health_rps = (capacity[n]["rps"] for n in ("buy", "soldout", "healthz"))
    ratio_source = "wrk"
else:
    buy_rps, soldout_rps, health_rps = peak_accept, flood.get("rps"), health.get("rps")
    ratio_source = a.tool
steady = phases.get("steady")
summary = {
    "tool": a.tool,
    "vus": a.vus,
    "phases": phases,
    "answers": counts,
    "peak_accepted_per_s": round(peak_accept, 1),
    "baselines": {
        "redis_evalsha_accept_rps": redis_accept,
        "redis_evalsha_soldout_rps": redis_soldout,
        "writer_rows_per_s": round(writer_rps, 1) if writer_rps else None,
        "raw_insert_rows_per_s": round(raw_rps, 1) if raw_rps else None,
        "writer_rows": a.writer_rows,
    },
    "capacity_wrk": capacity,
    "ratio_source": ratio_source,
    "ratios": {
        "buy_vs_healthz": ratio(buy_rps, health_rps),
        "buy_vs_redis_ceiling": ratio(buy_rps, redis_accept),
        "soldout_vs_buy": ratio(soldout_rps, buy_rps),
        "soldout_vs_healthz": ratio(soldout_rps, shaped["rps"] if shaped else health_rps),
        "soldout_vs_plain_healthz": ratio(soldout_rps, health_rps),
        "writer_vs_raw_insert": ratio(writer_rps, raw_rps),
    },
    "steady": {"target_rps": a.steady_rate, **steady} if steady else None,
    "drain_after_spike_s": round(drain, 2) if drain is not None else None,
    "waited_for_drain_after_run_s": a.drain_after,
    "peak_rss_mb": round(a.rss_kb / 1024, 1),
    "invariants": read("invariants.txt").strip().splitlines()[-1:] or ["not checked"],
}

# --- chart.svg: accepted/s and rejected/s (left axis), persisted rows (right axis) ---------
W, H, L, R, T, B = 900, 360, 70, 80, 30, 40
t0 = a.t_start
series_rate = {"accepted/s": accept_rate, "rejected/s": [
    (t, x + y) for (t, x), (_, y) in zip(per_second("sold_out"), per_second("already_purchased"))]}
persisted = [(r["t"], r["persisted"]) for r in timeline]
tmax = max([t for t, _ in persisted] + [t0 + 1]) - t0
rmax = max([v for s in series_rate.values() for _, v in s] + [1])
pmax = max([v for _, v in persisted] + [1])


def xy(t, v, vmax):
    return L + (t - t0) / tmax * (W - L - R), T + (1 - v / vmax) * (H - T - B)


def line(points, vmax, color):
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v, vmax) for t, v in points))
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'


svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="18" font-size="13">seckill load run: answers per second and persisted rows</text>',
       f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#444"/>',
       f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#444"/>',
       f'<line x1="{W - R}" y1="{T}" x2="{W - R}" y2="{H - B}" stroke="#444"/>']
for i in range(5):
    v, y = rmax * i / 4, T + (1 - i / 4) * (H - T - B)
    svg.append(f'<text x="{L - 6}" y="{y + 4:.0f}" text-anchor="end">{v:,.0f}</text>')
    svg.append(f'<text x="{W - R + 6}" y="{y + 4:.0f}" fill="#2a7">{pmax * i / 4:,.0f}</text>')
for i in range(6):
    x = L + i / 5 * (W - L - R)
    svg.append(f'<text x="{x:.0f}" y="{H - B + 16}" text-anchor="middle">{tmax * i / 5:.0f} s</text>')
colors = {"accepted/s": "#1f6feb", "rejected/s": "#d1242f"}
for name, pts in series_rate.items():
    svg.append(line(pts, rmax, colors[name]))
svg.append(line(persisted, pmax, "#2a7"))
for i, (name, color) in enumerate([*colors.items(), ("persisted rows (right axis)", "#2a7")]):
    svg.append(f'<rect x="{L + 10 + i * 190}" y="{T + 4}" width="12" height="3" fill="{color}"/>'
               f'<text x="{L + 26 + i * 190}" y="{T + 9}">{name}</text>')
svg.append("</svg>")
open(os.path.join(out, "chart.svg"), "w").write("\n".join(svg))

# --- summary.md ---------------------------------------------------------------------------
md = [f"# Load run {os.path.basename(out)} ({a.tool}, {a.vus} VUs, {os.cpu_count()} cores)", "",
      "Service, its writer, Redis, MySQL and the load tool share this one machine.", "",
      "| phase | requests | req/s | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|---|"]
for name, p in phases.items():
    md.append(f"| {name} | {p['requests']} | {p['rps']} | {p['p50_ms']} | {p['p95_ms']} | {p['p99_ms']} |")
b, r = summary["baselines"], summary["ratios"]
md += ["", f"- answers: {', '.join(f'{k} {v}' for k, v in counts.items())}",
       f"- peak accepted purchases per second (1 s window): **{summary['peak_accepted_per_s']}**",
       f"- Redis ceiling, redis-benchmark EVALSHA of lua/purchase.lua, {a.vus} unpipelined connections: "
       f"accept branch **{b['redis_evalsha_accept_rps']}**/s, sold-out branch {b['redis_evalsha_soldout_rps']}/s",
       f"- writer: {a.writer_rows} rows in {a.writer_secs:.2f} s = **{b['writer_rows_per_s']} rows/s**; "
       f"raw batched INSERT of the same rows into a copy of the table (500/commit): "
       f"**{b['raw_insert_rows_per_s']} rows/s**",
       f"- backlog drained {summary['drain_after_spike_s']} s after the last accepted purchase "
       "(100 ms samples)",
       f"- peak RSS of the service: **{summary['peak_rss_mb']} MB**", "",
       ]
if ratio_source == "wrk":
    md += ["", f"Capacity with a light client (wrk -t1 -c{a.vus}, closed loop, writer paused as for the "
           "Redis ceiling; healthz-shaped = GET /healthz with the buy requests' headers):", "",
           "| phase | req/s | p50 ms | p90 ms | p99 ms | service CPU µs/req | Redis CPU µs/req |",
           "|---|---|---|---|---|---|---|"]
    md += [f"| {n} | {c['rps']} | {c['p50_ms']} | {c['p90_ms']} | {c['p99_ms']} | "
           f"{c.get('service_cpu_us_per_req', '—')} | {c.get('redis_cpu_us_per_req', '—')} |"
           for n, c in capacity.items() if c]
if steady:
    md += ["", f"Fixed rate (goose, {a.vus} users, throttled to {a.steady_rate} purchases/s = 80 % of the "
           f"wrk buy peak, coordinated-omission mitigation on): {steady['rps']} req/s, "
           f"p50 {steady['p50_ms']} ms, p95 {steady['p95_ms']} ms, **p99 {steady['p99_ms']} ms**"]
md += ["", f"Ratios (from {ratio_source}):", "", "| ratio | value |", "|---|---|"]
md += [f"| {k} | {v} |" for k, v in r.items()]
targets = [
    ("buy ≥ 1.0× Redis ceiling", r["buy_vs_redis_ceiling"], 1.0, True),
    ("sold-out ≥ 1.5× buy", r["soldout_vs_buy"], 1.5, True),
    ("sold-out ≥ 0.6× healthz (same-shape requests)", r["soldout_vs_healthz"], 0.6, True),
    ("writer ≥ 0.8× raw INSERT", r["writer_vs_raw_insert"], 0.8, True),
    ("p99 at 80 % of peak ≤ 10 ms", steady["p99_ms"] if steady else None, 10, False),
    ("drain ≤ 1 s after the last purchase", summary["drain_after_spike_s"], 1, False),
    ("RSS ≤ 150 MB", summary["peak_rss_mb"], 150, False),
]
summary["targets"] = {}
md += ["", "| target | measured | met? |", "|---|---|---|"]
for name, value, bound, at_least in targets:
    met = None if value is None else (value >= bound if at_least else value <= bound)
    summary["targets"][name] = {"measured": value, "met": met}
    md.append(f"| {name} | {value if value is not None else 'not measured'} | "
              f"{'—' if met is None else 'yes' if met else 'NO'} |")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
md += ["", f"Invariant check: {summary['invariants'][0]}", "", "![chart](chart.svg)", ""]
open(os.path.join(out, "summary.md"), "w").write("\n".join(md))
