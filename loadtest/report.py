#!/usr/bin/env python3
"""Writes summary.json, summary.md and chart.svg of a loadtest/run into its results folder.

Inputs, all in --out: load-summary.json (k6's summary export, or goose's phases in the same
shape: the phases whose answers the invariant check compared with MySQL and Redis),
steady-summary.json (goose's fixed-rate phase, not checked), phases.csv (what ran when, what
it asked for), timeline.csv (loadtest/sample.py), wrk-*.txt (capacity phases, if wrk ran),
redis-accept.csv and redis-soldout.csv (redis-benchmark --csv), invariants.txt.

Every figure says what measured it: which tool, which phase, what it asked for and what it
got, and whether its answers were invariant-checked. A --quick run is a smoke run: marked so
at the top, and its targets are not judged.
Only the standard library: the harness must run on a clean machine.
"""
import argparse
import csv
import json
import os
import re
import statistics

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
for name in ("spike-end", "t-start", "drain-after", "writer-secs", "raw-secs"):
    ap.add_argument(f"--{name}", type=float, required=True)
for name in ("rss-kb", "writer-rows", "raw-rows", "spike-secs", "flood-secs", "health-secs", "vus"):
    ap.add_argument(f"--{name}", type=int, required=True)
ap.add_argument("--tool", default="k6")
ap.add_argument("--steady-rate", type=int, default=0)
ap.add_argument("--spike-rate", type=int, default=0)
ap.add_argument("--quick", type=int, default=0, help="1: a smoke run (loadtest/run --quick)")
a = ap.parse_args()
out = a.out
smoke = bool(a.quick)


def read(name):
    path = os.path.join(out, name)
    return open(path).read() if os.path.exists(path) else ""


def metrics(name):
    text = read(name)
    return json.loads(text)["metrics"] if text else {}


def count(m, name):
    return int(m.get(name, {}).get("values", {}).get("count", 0))


def redis_rps(name):
    rows = list(csv.reader(read(name).splitlines()))
    return float(rows[1][1]) if len(rows) > 1 else None


def num(x, digits=0):
    """A figure for people: thousands separated by a thin space, as in the README."""
    if x is None:
        return "—"
    return f"{x:,.{digits}f}".replace(",", "\u202f")


timeline = []
for row in csv.DictReader(line for line in read("timeline.csv").splitlines() if not line.startswith("#")):
    timeline.append({k: float(v) for k, v in row.items()})
schedule = {r["phase"]: r for r in csv.DictReader(read("phases.csv").splitlines())}


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


checked_m, steady_m = metrics("load-summary.json"), metrics("steady-summary.json")
accept_rate = per_second("accepted")
peak_accept = max((r for _, r in accept_rate), default=0.0)


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
    reqs = re.search(r"(\d+) requests in", text)
    result = {"rps": float(rps.group(1)), "requests": int(reqs.group(1)) if reqs else None,
              "p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99)}
    # CPU per request of the service and of Redis (loadtest/run reads /proc around the phase):
    # with the client on the same 2 cores, this is what bounds each path.
    for who in ("service", "redis"):
        cpu = re.search(rf"{who}_cpu_s=(\d+)/(\d+)", text)
        if cpu and reqs and int(reqs.group(1)):
            result[f"{who}_cpu_us_per_req"] = round(
                int(cpu.group(1)) / int(cpu.group(2)) * 1e6 / int(reqs.group(1)), 1)
    return result


# The cost rounds (loadtest/run: healthz-shaped-<r>, the minimal script, cost-<r>).
rounds = sorted(int(m.group(1)) for m in
                (re.fullmatch(r"wrk-cost-(\d+)\.txt", f) for f in os.listdir(out)) if m)
capacity = {name: wrk(name) for name in
            ["buy", "soldout", "healthz"] + [f"{p}-{r}" for r in rounds
                                             for p in ("healthz-shaped", "cost")]}


def ticks(text, who):
    """CPU seconds of `who` as loadtest/run wrote them (`who_cpu_s=ticks/per_second`)."""
    m = re.search(rf"{who}_cpu_s=(\d+)/(\d+)", text)
    return int(m.group(1)) / int(m.group(2)) if m else None


def cmdstats(name):
    """Redis' INFO commandstats as saved by loadtest/run: command → (calls, µs)."""
    stats = {}
    for m in re.finditer(r"^cmdstat_([\w|]+):calls=(\d+),usec=(\d+)", read(name), re.M):
        stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return stats


def prom_sum_count(name):
    """(sum, count) of the gate's batch-size histogram in a saved /metrics extract."""
    text = read(name)
    total = re.search(r"^seckill_gate_batch_size_sum ([\d.e+]+)", text, re.M)
    n = re.search(r"^seckill_gate_batch_size_count (\d+)", text, re.M)
    return (float(total.group(1)) if total else 0.0, int(n.group(1)) if n else 0)


def purchase_cost(r):
    """What one stored order cost in round r (wrk-cost-<r>: buy with the writer running, until
    drained), its yardsticks of the same round, in µs of CPU, and where Redis' time went;
    None where not measured."""
    text, minimal = read(f"wrk-cost-{r}.txt"), read(f"redis-minimal-cpu-{r}.txt")
    orders = re.search(r"orders=(\d+)", text)
    calls = re.search(r"calls=(\d+)", minimal)
    if not orders or not int(orders.group(1)):
        return None
    n = int(orders.group(1))
    per = lambda s: round(s * 1e6 / n, 1) if s else None  # noqa: E731 (zero ticks: not measured)
    service, writer, redis = (ticks(text, w) for w in ("service", "writer", "redis"))
    redis_minimal = ticks(minimal, "redis")
    shaped = capacity.get(f"healthz-shaped-{r}") or {}
    keys = {k: int(v) for k, v in re.findall(r"(keys_before|keys_after)=(\d+)", text)}
    cost = {
        "round": r,
        "orders": n,
        "redis_us_per_order": per(redis),
        "service_us_per_order": per((service or 0) + (writer or 0)),
        "writer_us_per_order": per(writer),
        "redis_minimal_script_us_per_call": round(redis_minimal * 1e6 / int(calls.group(1)), 1)
        if calls and redis_minimal else None,
        "service_healthz_shaped_us_per_req": shaped.get("service_cpu_us_per_req"),
        "redis_keys_before": keys.get("keys_before"),
        "redis_keys_after": keys.get("keys_after"),
    }
    cost["redis_vs_minimal_script"] = ratio(cost["redis_us_per_order"],
                                            cost["redis_minimal_script_us_per_call"])
    cost["service_vs_healthz_shaped"] = ratio(cost["service_us_per_order"],
                                              cost["service_healthz_shaped_us_per_req"])
    # Where Redis' time went: commandstats' calls and µs per stored order (commands a script
    # runs are counted twice: on their own line and inside the script's).
    before, after = cmdstats(f"cmdstats-cost-{r}-before.txt"), cmdstats(f"cmdstats-cost-{r}-after.txt")
    cost["redis_commands_per_order"] = {
        c: {"calls": round((after[c][0] - before.get(c, (0, 0))[0]) / n, 3),
            "us": round((after[c][1] - before.get(c, (0, 0))[1]) / n, 2)}
        for c in sorted(after, key=lambda c: before.get(c, (0, 0))[1] - after[c][1])
        if after[c][0] > before.get(c, (0, 0))[0]}
    (s0, c0), (s1, c1) = (prom_sum_count(f"gate-cost-{r}-{w}.txt") for w in ("before", "after"))
    cost["gate_purchases_per_script_call"] = round((s1 - s0) / (c1 - c0), 2) if c1 > c0 else None
    xack = cost["redis_commands_per_order"].get("xack")
    cost["writer_orders_per_ack"] = round(1 / xack["calls"], 1) if xack and xack["calls"] else None
    return cost


def median_cost(per_round):
    """The rounds' figures and the median of each (the targets are judged on the medians)."""
    if not per_round:
        return None
    med = {}
    for k in ("redis_us_per_order", "service_us_per_order", "writer_us_per_order",
              "redis_minimal_script_us_per_call", "service_healthz_shaped_us_per_req",
              "redis_vs_minimal_script", "service_vs_healthz_shaped"):
        values = [c[k] for c in per_round if c.get(k) is not None]
        med[k] = statistics.median(values) if values else None
    # One activity's purchases all run on one Redis core.
    med["hot_activity_orders_per_s_per_redis_core"] = \
        round(1e6 / med["redis_us_per_order"]) if med["redis_us_per_order"] else None
    med["orders"] = sum(c["orders"] for c in per_round)
    med["rounds"] = per_round
    return med


# --- phases: asked vs delivered, and whether the answers were invariant-checked -------------
WHAT = {  # phase → (what it sends, what the invariant check covers, or why it does not)
    "spike": ("POST purchase, distinct buyers, 20 % resending, 5 % double-clicking; sale activity",
              "each fresh 201 is a row of the sale, nothing more"),
    "flood": ("POST purchase by latecomers; sold-out activity", "no row beyond its 100 units"),
    "healthz": ("GET /healthz", "no orders (each answer checked to be a 200)"),
    "wrk-buy": ("POST purchase, distinct buyers; capacity activity, writer paused",
                "wrk reads no answer"),
    "wrk-soldout": ("POST purchase; sold-out activity, writer paused", "wrk reads no answer"),
    "wrk-healthz": ("GET /healthz, static request", "no orders"),
    "wrk-healthz-shaped": ("GET /healthz with the buy requests' headers", "no orders"),
    "wrk-cost": ("POST purchase, distinct buyers; cost activity, writer running, until drained",
                 "wrk reads no answer; the orders stored are counted"),
    "steady": ("POST purchase, distinct buyers; steady activity; coordinated-omission mitigation",
               "goose counts its answers; rows not compared"),
}


def phase_row(name, sched):
    """One phase as measured: requests, latency, asked and delivered rate."""
    m = steady_m if name == "steady" else checked_m
    key = name[4:] if name.startswith("wrk-") else name
    secs = float(sched["end"]) - float(sched["start"]) if sched else None
    asked_rate, conns, tool = (int(sched["asked_rate"]), int(sched["connections"]), sched["tool"]) \
        if sched else (0, a.vus, a.tool)
    what, detail = WHAT.get(re.sub(r"-\d+$", "", name), ("", ""))
    checked = (sched or {}).get("checked", "yes") == "yes"
    row = {"tool": tool, "secs": round(secs, 2) if secs else None, "asked_rate": asked_rate,
           "connections": conns, "what": what, "invariant_checked": checked,
           "invariant_check": f"{'yes' if checked else 'no'}: {detail}"}
    if name.startswith("wrk-"):
        c = capacity.get(key) or {}
        row.update(requests=c.get("requests"), rps=c.get("rps"), p50_ms=c.get("p50_ms"),
                   p95_ms=None, p99_ms=c.get("p99_ms"), p90_ms=c.get("p90_ms"))
    else:
        d = m.get(f"http_req_duration{{phase:{name}}}", {}).get("values", {})
        r = m.get(f"http_reqs{{phase:{name}}}", {}).get("values", {})
        n = r.get("count", 0)
        # k6 phases: over the schedule's length; goose: goose's own rate (its start-up excluded)
        rps = r.get("rate", 0) if tool == "goose" or not secs else n / secs
        row.update(requests=n, rps=round(rps, 1), p50_ms=round(d.get("med", 0), 2),
                   p95_ms=round(d.get("p(95)", 0), 2), p99_ms=round(d.get("p(99)", 0), 2))
    if name == "spike" and tool == "k6":
        started, dropped = count(m, "iterations{scenario:spike}"), count(m, "dropped_iterations")
        row["arrivals_asked"] = round(asked_rate * (1 + a.spike_secs))  # 2 s ramp, then the peak
        row["arrivals_started"] = started or None
        row["arrivals_dropped"] = dropped
    return row


names = list(schedule) or ["spike", "flood", "healthz"]
phases = {name: phase_row(name, schedule.get(name)) for name in names}


def asked_text(name, p):
    if name == "spike" and p["tool"] == "k6":
        return (f"arrivals ramping to {num(p['asked_rate'])}/s in 2 s, then {num(p['asked_rate'])}/s "
                f"for {a.spike_secs} s ({num(p['arrivals_asked'])} arrivals), at most {p['connections']} "
                "in flight")
    if p["asked_rate"]:
        return f"{num(p['asked_rate'])} requests/s (throttle), {p['connections']} users"
    return f"closed loop: {p['connections']} {'connections' if p['tool'] == 'wrk' else 'VUs'}, " \
           "each as fast as answered"


def delivered_text(name, p):
    if p.get("arrivals_asked"):  # k6's open model: arrivals, each one to three requests
        started, asked = p["arrivals_started"] or 0, p["arrivals_asked"]
        return (f"{num(started)} of the {num(asked)} arrivals ({100 * started / asked:.0f} %; "
                f"{num(p['arrivals_dropped'])} dropped, no free VU); {num(p['rps'])} requests/s "
                "with the resends and double clicks")
    text = f"{num(p['rps'])} requests/s"
    if p["asked_rate"] and p["rps"]:
        text += f" = {100 * p['rps'] / p['asked_rate']:.0f} % of the rate asked"
    return text


# --- answers: the invariant-checked ones apart from the others ------------------------------
ANSWERS = ("orders_accepted", "orders_replayed", "rejected_sold_out", "rejected_already_purchased",
           "unexpected_answers", "inconsistent_replays")
checked_answers = {k: count(checked_m, k) for k in ANSWERS}
steady_answers = {k: count(steady_m, k) for k in ANSWERS} if steady_m else None

final_accepted = timeline[-1]["accepted"] if timeline else 0
# Drain time: from the last accepted purchase (the first sample that shows the final count;
# the load tool's own start-up makes the nominal end of the spike unreliable) to the first
# sample with nothing pending.
last_purchase = next((r["t"] for r in timeline if r["accepted"] >= final_accepted), a.spike_end)
drain = next((r["t"] - last_purchase for r in timeline
              if r["t"] >= last_purchase and r["pending"] == 0), None)
redis_accept, redis_soldout = redis_rps("redis-accept.csv"), redis_rps("redis-soldout.csv")
writer_rps = a.writer_rows / a.writer_secs if a.writer_secs > 0 else None
raw_rps = a.raw_rows / a.raw_secs if a.raw_secs > 0 else None


def ratio(x, y):
    return round(x / y, 2) if x and y else None


cost = median_cost([c for c in map(purchase_cost, rounds) if c])
spike, flood, health = (phases.get(p, {}) for p in ("spike", "flood", "healthz"))
# Ratios from the light client when it ran (the service's limits), else from the load tool.
# The sold-out path is held to /healthz sent with the same requests (headers, wrk's Lua):
# plain /healthz is a static request that costs wrk far less per request, so with client and
# service on one machine it measures the client as much as the service.
shaped_rps = [capacity[f"healthz-shaped-{r}"]["rps"] for r in rounds
              if capacity.get(f"healthz-shaped-{r}")]
shaped = {"rps": statistics.median(shaped_rps)} if shaped_rps else None
if all(capacity[n] for n in ("buy", "soldout", "healthz")):
    buy_rps, soldout_rps, health_rps = (capacity[n]["rps"] for n in ("buy", "soldout", "healthz"))
    ratio_source = "wrk capacity phases"
else:
    buy_rps, soldout_rps, health_rps = peak_accept, flood.get("rps"), health.get("rps")
    ratio_source = f"{a.tool} phases (no wrk)"
steady = phases.get("steady")
invariants = read("invariants.txt").strip().splitlines()[-1:] or ["not checked"]
summary = {
    "smoke_run": smoke,
    "tool": a.tool,
    "vus": a.vus,
    "phases": phases,
    "answers_invariant_checked": checked_answers,
    "answers_not_checked": {"steady": steady_answers} if steady_answers else {},
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
    "purchase_cost": cost,
    "steady": {"target_rps": a.steady_rate, **steady} if steady else None,
    "drain_after_spike_s": round(drain, 2) if drain is not None else None,
    "waited_for_drain_after_run_s": a.drain_after,
    "peak_rss_mb": round(a.rss_kb / 1024, 1),
    "invariants": invariants,
}
r = summary["ratios"]
targets = [
    ("Redis CPU per order ≤ 1.0× minimal script", (cost or {}).get("redis_vs_minimal_script"),
     1.0, False),
    ("service CPU per order ≤ 2.5× healthz-shaped", (cost or {}).get("service_vs_healthz_shaped"),
     2.5, False),
    ("buy ≥ 1.0× Redis ceiling", r["buy_vs_redis_ceiling"], 1.0, True),
    ("sold-out ≥ 1.5× buy", r["soldout_vs_buy"], 1.5, True),
    ("sold-out ≥ 0.6× healthz (same-shape requests)", r["soldout_vs_healthz"], 0.6, True),
    ("writer ≥ 0.8× raw INSERT", r["writer_vs_raw_insert"], 0.8, True),
    ("p99 at 80 % of peak ≤ 10 ms", steady["p99_ms"] if steady else None, 10, False),
    ("drain ≤ 1 s after the last purchase", summary["drain_after_spike_s"], 1, False),
    ("RSS ≤ 150 MB", summary["peak_rss_mb"], 150, False),
]
summary["targets_judged"] = not smoke
summary["targets"] = {}
for name, value, bound, at_least in targets:
    met = None if value is None or smoke else (value >= bound if at_least else value <= bound)
    summary["targets"][name] = {"measured": value, "met": met}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)

# --- chart.svg: accepted/s and rejected/s (left axis), persisted rows (right axis), phases ----
W, H, L, R, T, B = 900, 380, 70, 80, 50, 40
t0 = a.t_start
series_rate = {"accepted/s": accept_rate, "rejected/s": [
    (t, x + y) for (t, x), (_, y) in zip(per_second("sold_out"), per_second("already_purchased"))]}
persisted = [(row["t"], row["persisted"]) for row in timeline]
tmax = max([t for t, _ in persisted] + [t0 + 1]) - t0
rmax = max([v for s in series_rate.values() for _, v in s] + [1])
pmax = max([v for _, v in persisted] + [1])


def x_of(t):
    return L + min(max(t - t0, 0), tmax) / tmax * (W - L - R)


def xy(t, v, vmax):
    return x_of(t), T + (1 - v / vmax) * (H - T - B)


def line(points, vmax, color):
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v, vmax) for t, v in points))
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'


title = "seckill load run: answers per second, persisted rows, phases"
if smoke:
    title = "SMOKE RUN (--quick, not a measurement) — " + title
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="16" font-size="13">{title}</text>']
# Phase bands: each phase the timeline covers, shaded and labelled at the top of the plot.
band_colors = ["#fdf2d0", "#e3f0fb", "#e8f5e4", "#f6e6f5"]
for i, (name, sched) in enumerate(schedule.items()):
    start, end = float(sched["start"]), float(sched["end"])
    if end <= t0 or start >= t0 + tmax:
        continue
    x1, x2 = x_of(start), x_of(end)
    svg.append(f'<rect x="{x1:.1f}" y="{T}" width="{max(x2 - x1, 1):.1f}" height="{H - T - B}" '
               f'fill="{band_colors[i % len(band_colors)]}"/>')
    svg.append(f'<line x1="{x1:.1f}" y1="{T}" x2="{x1:.1f}" y2="{H - B}" stroke="#999" stroke-dasharray="3,3"/>')
    svg.append(f'<text x="{(x1 + x2) / 2:.1f}" y="{T + 22}" text-anchor="middle" fill="#555">'
               f'{name} ({sched["tool"]})</text>')
svg += [f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#444"/>',
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
for i, (name, color) in enumerate([*colors.items(), ("persisted rows of the sale (right axis)", "#2a7")]):
    svg.append(f'<rect x="{L + 10 + i * 190}" y="{T - 14}" width="12" height="3" fill="{color}"/>'
               f'<text x="{L + 26 + i * 190}" y="{T - 9}">{name}</text>')
svg.append("</svg>")
open(os.path.join(out, "chart.svg"), "w").write("\n".join(svg))

# --- summary.md ---------------------------------------------------------------------------
md = [f"# Load run {os.path.basename(out)} ({a.tool}, {a.vus} VUs, {os.cpu_count()} cores)", ""]
if smoke:
    md += ["> **Smoke run (`loadtest/run --quick`)**: each phase lasts a few seconds at a low rate, "
           "to show that the harness, the service and the invariant check work end to end. Its "
           "figures are not measurements of capacity, and its targets are not judged.", ""]
md += ["Service, its writer, Redis, MySQL and the load tools share this one machine.", "",
       "## Phases", "",
       "What each phase asked for, what the service delivered, and whether its answers were "
       "checked against MySQL and Redis by `loadtest/check_invariants.py`.", "",
       "| phase | tool | sends | asked | delivered | requests | latency ms | invariant-checked |",
       "|---|---|---|---|---|---|---|---|"]
for name, p in phases.items():
    pcts = ("p50", "p90", "p99") if p["tool"] == "wrk" else ("p50", "p95", "p99")
    lat = ", ".join(f"{k} {p[k + '_ms']}" for k in pcts if p.get(k + "_ms") is not None)
    md.append(f"| {name} | {p['tool']} | {p['what']} | {asked_text(name, p)} | {delivered_text(name, p)} | "
              f"{num(p['requests'])} | {lat or '—'} | {p['invariant_check']} |")
b = summary["baselines"]
ca = checked_answers
md += ["", "## Answers", "",
       f"Invariant-checked ({a.tool} spike and flood; `{invariants[0]}`):", "",
       f"- orders accepted (fresh 201): **{num(ca['orders_accepted'])}**, each a row of the sale "
       "activity in MySQL", f"- replays (201 `Idempotent-Replayed`): {num(ca['orders_replayed'])}, "
       f"naming another order: {ca['inconsistent_replays']}",
       f"- 409 sold_out: {num(ca['rejected_sold_out'])}; 409 already_purchased: "
       f"{num(ca['rejected_already_purchased'])}; unexpected answers: {ca['unexpected_answers']}"]
if spike.get("arrivals_asked"):
    md.append(f"- arrivals the spike asked for but k6 never sent (no free VU): "
              f"{num(spike['arrivals_dropped'])} of {num(spike['arrivals_asked'])}")
md += ["", "Not invariant-checked:", ""]
if steady_answers:
    md.append(f"- fixed-rate phase (goose, own activity): {num(steady_answers['orders_accepted'])} "
              f"orders accepted, {steady_answers['unexpected_answers']} unexpected answers, as goose "
              "counted them; not compared with the rows")
if any(capacity.values()):
    md.append("- wrk capacity phases: requests and latency only (wrk does not read the answers)")
md.append("- the ceilings below (redis-benchmark straight to Redis, the writer's drain of its "
          "entries, a raw INSERT) measure the machine, not the service's answers")
md += ["", "## The machine's ceilings and the writer, same run", "",
       f"- Redis ceiling: redis-benchmark `EVALSHA` of lua/purchase.lua straight to Redis, {a.vus} "
       f"unpipelined connections: accept branch **{num(b['redis_evalsha_accept_rps'])}**/s, sold-out "
       f"branch {num(b['redis_evalsha_soldout_rps'])}/s",
       f"- writer (`seckill writer` alone, service idle) draining the {num(a.writer_rows)} entries "
       f"redis-benchmark left: {a.writer_secs:.2f} s = **{num(b['writer_rows_per_s'])} rows/s**; raw "
       f"batched INSERT of the same rows into a copy of the table (500/commit, mariadb client): "
       f"**{num(b['raw_insert_rows_per_s'])} rows/s**",
       f"- peak accepted purchases per second during the {a.tool} spike (service's /metrics, 1 s "
       f"window): {num(summary['peak_accepted_per_s'])}",
       f"- backlog of the sale drained {summary['drain_after_spike_s']} s after its last accepted "
       "purchase (100 ms samples of the admin stats)",
       f"- peak RSS of the service over the whole run: **{summary['peak_rss_mb']} MB**"]
if ratio_source.startswith("wrk"):
    md += ["", f"## Capacity with a light client (wrk -t1 -c{a.vus}, closed loop, writer paused as "
           "for the Redis ceiling; healthz-shaped = GET /healthz with the buy requests' headers; "
           "not invariant-checked)", "",
           "| phase | req/s | p50 ms | p90 ms | p99 ms | service CPU µs/req | Redis CPU µs/req |",
           "|---|---|---|---|---|---|---|"]
    md += [f"| {n} | {c['rps']} | {c['p50_ms']} | {c['p90_ms']} | {c['p99_ms']} | "
           f"{c.get('service_cpu_us_per_req', '—')} | {c.get('redis_cpu_us_per_req', '—')} |"
           for n, c in capacity.items() if c]
if steady:
    md += ["", f"Fixed rate (goose, {a.vus} users, asked {num(a.steady_rate)} purchases/s = 80 % of the "
           f"wrk buy peak, delivered {num(steady['rps'])}/s, coordinated-omission mitigation on, not "
           f"invariant-checked): p50 {steady['p50_ms']} ms, p95 {steady['p95_ms']} ms, "
           f"**p99 {steady['p99_ms']} ms**"]
if cost:
    md += ["", "## What a stored order costs (CPU time; wrk-cost phase: buy with the writer "
           f"running, until drained; median of {len(cost['rounds'])} round(s), each round "
           "healthz-shaped, minimal script, cost in turn)", "",
           f"- orders stored: {num(cost['orders'])}",
           f"- Redis: **{cost['redis_us_per_order']} µs per order** (the purchase script and the "
           f"writer's reads, acks and deletes) ÷ {cost['redis_minimal_script_us_per_call']} µs per "
           "call of loadtest/minimal_purchase.lua (redis-benchmark, same connections): median "
           f"ratio **{cost['redis_vs_minimal_script']}×**",
           f"- hot-activity ceiling: one activity's purchases run on one Redis core: "
           f"**{num(cost['hot_activity_orders_per_s_per_redis_core'])} orders/s per Redis core**",
           f"- service: **{cost['service_us_per_order']} µs per order** (service and writer; "
           f"writer {cost['writer_us_per_order']}) ÷ {cost['service_healthz_shaped_us_per_req']} µs "
           f"per healthz-shaped request: median ratio **{cost['service_vs_healthz_shaped']}×**",
           "", "| round | orders | Redis µs/order | minimal µs/call | Redis ratio | service+writer "
           "µs/order | writer µs/order | healthz-shaped µs/req | service ratio | purchases per "
           "script call | orders per writer ack | Redis keys before → after |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {c['round']} | {num(c['orders'])} | {c['redis_us_per_order']} | "
           f"{c['redis_minimal_script_us_per_call']} | {c['redis_vs_minimal_script']}× | "
           f"{c['service_us_per_order']} | {c['writer_us_per_order']} | "
           f"{c['service_healthz_shaped_us_per_req']} | {c['service_vs_healthz_shaped']}× | "
           f"{c['gate_purchases_per_script_call']} | {c['writer_orders_per_ack']} | "
           f"{num(c['redis_keys_before'])} → {num(c['redis_keys_after'])} |" for c in cost["rounds"]]
    top = sorted(cost["rounds"], key=lambda c: c["redis_vs_minimal_script"] or 0)
    mid = top[len(top) // 2]
    md += ["", f"Where Redis' time went in round {mid['round']} (the median Redis ratio; INFO "
           "commandstats, per stored order; a script's commands are counted on their own line "
           "and again inside the script's):", "", "| command | calls per order | µs per order |",
           "|---|---|---|"]
    md += [f"| {name} | {v['calls']} | {v['us']} |"
           for name, v in mid["redis_commands_per_order"].items()]
md += ["", f"## Ratios (from the {ratio_source})", "", "| ratio | value |", "|---|---|"]
md += [f"| {k} | {v} |" for k, v in r.items()]
md += ["", "## Targets", ""]
if smoke:
    md += ["Not judged on a smoke run: its phases are too short and its rates too low to measure "
           "capacity. The values below only show that each figure is computed; run `loadtest/run` "
           "(without `--quick`) to judge the targets.", "",
           "| target | value in this smoke run |", "|---|---|"]
    md += [f"| {name} | {value if value is not None else 'not measured'} |" for name, value, _, _ in targets]
else:
    md += ["| target | measured | met? |", "|---|---|---|"]
    for name, value, _, _ in targets:
        met = summary["targets"][name]["met"]
        md.append(f"| {name} | {value if value is not None else 'not measured'} | "
                  f"{'—' if met is None else 'yes' if met else 'NO'} |")
md += ["", f"Invariant check: {invariants[0]}", "", "![chart](chart.svg)", ""]
open(os.path.join(out, "summary.md"), "w").write("\n".join(md))
