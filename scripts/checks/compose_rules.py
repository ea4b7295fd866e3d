#!/usr/bin/env python3
"""What docker-compose.yml and the Dockerfile must keep (scripts/checks/compose.sh runs this).

usage: compose_rules.py DEFAULTS.yml OVERRIDDEN.yml
  DEFAULTS.yml    `docker compose config` of docker-compose.yml, nothing set
  OVERRIDDEN.yml  the same with SECKILL_{HTTP,REDIS,MYSQL}_HOST_PORT = 28080, 26379, 23306

Checks: a health check on every service, the app's on /readyz at its own port; the app
waits for Redis and MySQL to be healthy and has no restart-on-failure loop; host ports on
127.0.0.1, defaults that do not clash with a local Redis (6379) or MySQL (3306), and set by
the environment; the app's addresses and port agree with the services and config/default.toml;
the Dockerfile copies every workspace member's manifest before any source (dependency layer).
"""
import re
import sys
import tomllib
from pathlib import Path

import yaml

root = Path(__file__).resolve().parents[2]
problems = []


def need(ok, text):
    if not ok:
        problems.append(text)


def published(service):
    """(host ip, host port, container port) of each published port, short or long syntax."""
    out = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.append((p.get("host_ip", ""), int(p["published"]), int(p["target"])))
        else:
            m = re.fullmatch(r"(?:([\d.]+):)?(\d+):(\d+)(?:/tcp)?", str(p))
            need(m, f"unreadable port {p}")
            if m:
                out.append((m.group(1) or "", int(m.group(2)), int(m.group(3))))
    return out


def test_of(service):
    t = service.get("healthcheck", {}).get("test")
    return " ".join(t) if isinstance(t, list) else (t or "")


defaults, overridden = (yaml.safe_load(open(p))["services"] for p in sys.argv[1:3])
config = tomllib.loads((root / "config" / "default.toml").read_text())

for name in ("redis", "mysql", "app", "provider"):
    need(name in defaults, f"no service {name}")
for name, s in defaults.items():
    need(test_of(s), f"{name}: no health check")
    need(s.get("restart") not in ("on-failure", "always") or name != "app",
         f"{name}: restart: {s.get('restart')} (a restart loop is no way to wait for dependencies)")
app = defaults["app"]
deps = app.get("depends_on", {})
for dep in ("redis", "mysql"):
    cond = deps.get(dep, {}).get("condition") if isinstance(deps, dict) else None
    need(cond == "service_healthy", f"app: depends_on {dep} is {cond!r}, not service_healthy")

env = app.get("environment", {})
app_port = int(env.get("SECKILL__SERVER__PORT", config["server"]["port"]))
need(app_port == config["server"]["port"],
     f"app listens on {app_port}, config/default.toml says {config['server']['port']}")
need("/readyz" in test_of(app) or "/healthz" in test_of(app), "app: health check is not /readyz or /healthz")
need(f":{app_port}/" in test_of(app), f"app: health check does not ask port {app_port}")
need(env.get("SECKILL__SERVER__HOST") == "0.0.0.0", "app: must listen on 0.0.0.0 inside its container")
for key, service, port in (("SECKILL__REDIS__URL", "redis", 6379), ("SECKILL__DATABASE__URL", "mysql", 3306)):
    need(f"@{service}:{port}" in env.get(key, "") or f"//{service}:{port}" in env.get(key, ""),
         f"app: {key} = {env.get(key)!r} does not name {service}:{port}")

# The provider: reached by the app, signing with the app's secret; calls back to the app.
provider = defaults.get("provider", {})
need(env.get("SECKILL__PAYMENT__PROVIDER_URL") == "http://provider:8081",
     "app: SECKILL__PAYMENT__PROVIDER_URL does not name provider:8081")
need(env.get("SECKILL__PAYMENT__CALLBACK_URL") == f"http://app:{app_port}/api/v1/payments/callback",
     "app: SECKILL__PAYMENT__CALLBACK_URL does not name the app's callback")
need(env.get("SECKILL__PAYMENT__WEBHOOK_SECRET")
     and env.get("SECKILL__PAYMENT__WEBHOOK_SECRET") == provider.get("environment", {}).get("SECKILL__PAYMENT__WEBHOOK_SECRET"),
     "app and provider: not the same SECKILL__PAYMENT__WEBHOOK_SECRET (or none: the shipped one is refused off loopback)")
need("8081" in " ".join(map(str, provider.get("command", []))), "provider: not on port 8081")
need(":8081/" in test_of(provider), "provider: health check does not ask port 8081")
need(not published(provider), "provider: published on the host (it is a stand-in for tests)")

expected = {  # service → (default host port, overridden host port, container port)
    "app": (8080, 28080, app_port),
    "redis": (16379, 26379, 6379),
    "mysql": (13306, 23306, 3306),
}
for name, (default, override, target) in expected.items():
    for services, want in ((defaults, default), (overridden, override)):
        ports = published(services[name])
        need(ports == [("127.0.0.1", want, target)],
             f"{name}: ports {ports}, expected [('127.0.0.1', {want}, {target})]")
need(not {6379, 3306} & {p for s in defaults.values() for _, p, _ in published(s)},
     "a default host port clashes with a local Redis (6379) or MySQL (3306)")

# Dockerfile: every workspace member's manifest and Cargo.lock copied before any source.
docker = (root / "Dockerfile").read_text().splitlines()
build_at = next(i for i, line in enumerate(docker) if "cargo build" in line)
before = " ".join(line for line in docker[:build_at] if line.startswith("COPY"))
members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
for member in members:
    manifest = "Cargo.toml" if member == "." else f"{member}/Cargo.toml"
    need(manifest in before, f"Dockerfile: {manifest} not copied before the dependency build")
need("Cargo.lock" in before, "Dockerfile: Cargo.lock not copied before the dependency build")
need(not re.search(r"COPY (\. |src |lua )", before), "Dockerfile: sources copied before the dependency build")
need(any("curl" in line for line in docker[build_at:] if line.lstrip().startswith(("RUN", "&&"))),
     "Dockerfile: the runtime image has no curl for the app's health check")

for p in problems:
    print(f"compose: {p}", file=sys.stderr)
print(f"compose rules: {'all hold' if not problems else f'{len(problems)} broken'}")
sys.exit(1 if problems else 0)
