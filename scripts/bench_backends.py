#!/usr/bin/env python3
"""The operational database's backends under load, in one sitting on this machine: SQLite with one gateway,
PostgreSQL with one gateway, and PostgreSQL with three gateways behind nginx (storage.gateways: several). Each is
populated by `veil demo` (USERS subjects, ITEMS items, the same seed) and driven by wrk (2 threads, 64 connections,
DURATION s per route): cached recommendations (after a pass that fills the caches), uncached ones (the cache off),
one event per request, and events in batches of BATCH per request over 8 connections (a shop's server posting what it
collected; counted in events/s). ROUNDS rounds, the configurations alternated within each; prints each round and the
medians, with each figure's ratio to SQLite's. PostgreSQL runs with fsync on, on the same disk and the same 2 cores.

Usage: scripts/bench_backends.py [--veil .build/release/veil] [--duration 10] [--rounds 3] [--users 1000] [--items 1000]
       [--batch 50]
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from cluster_demo import NGINX, nginx_config
from veil_instance import ROOT, free_port
from wrk_output import problems, summary

SCRATCH = os.path.join(ROOT, "scripts", "pg-scratch.sh")
POLICIES = os.path.join(ROOT, "Policies")


def wait_live(port, process, log, seconds=600):
    for _ in range(seconds * 10):
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/health/live" % port, timeout=1)
            return
        except Exception:
            if process is not None and process.poll() is not None:
                raise SystemExit("a server exited at start; see " + log)
            time.sleep(0.1)
    raise SystemExit("a server did not start; see " + log)


def recs_script(path, users, key):
    # Formatted when the script loads, before wrk sets its default headers: Host is given here (nginx refuses a request
    # without one with 400).
    with open(path, "w") as f:
        f.write("""local requests = {}
for i = 1, %(users)d do
  local n = (i * 7919) %% %(users)d
  if n %% 8 == 7 then n = n - 1 end
  requests[i] = wrk.format("GET", "/v1/recommendations/user-" .. n .. "%%40example.com?k=10", {["Authorization"] = "Bearer %(key)s", ["Host"] = "127.0.0.1"})
end
local counter = 0
request = function()
  counter = counter %% %(users)d + 1
  return requests[counter]
end
""" % {"users": users, "key": key})


def events_script(path, users, key, tag):
    with open(path, "w") as f:
        f.write("""counter = 0
local thread_id = math.random(1, 1000000000)
request = function()
  counter = counter + 1
  local n = (counter * 7919) %% %(users)d
  local body = '{"events":[{"id":"%(tag)s-' .. thread_id .. '-' .. counter .. '","kind":"page_view","subject":"user-' .. n ..
    '@example.com","timestamp":"2026-11-20T10:00:00Z","source":"bench","item":"sku-000' .. (counter %% 10) .. '","dwell_ms":1500}]}'
  return wrk.format("POST", "/v1/events", {["Authorization"] = "Bearer %(key)s", ["Content-Type"] = "application/json"}, body)
end
""" % {"users": users, "key": key, "tag": tag})


def batch_script(path, users, key, tag, size):
    """A shop's server posting page views in batches of SIZE (events from many subjects in one request)."""
    with open(path, "w") as f:
        f.write("""counter = 0
local thread_id = math.random(1, 1000000000)
request = function()
  counter = counter + 1
  local events = {}
  for j = 1, %(size)d do
    local n = (counter * 7919 + j * 104729) %% %(users)d
    events[j] = '{"id":"%(tag)s-b-' .. thread_id .. '-' .. counter .. '-' .. j .. '","kind":"page_view","subject":"user-' .. n ..
      '@example.com","timestamp":"2026-11-20T10:00:00Z","source":"bench","item":"sku-000' .. (j %% 10) .. '","dwell_ms":1500}'
  end
  local body = '{"events":[' .. table.concat(events, ",") .. ']}'
  return wrk.format("POST", "/v1/events", {["Authorization"] = "Bearer %(key)s", ["Content-Type"] = "application/json"}, body)
end
""" % {"users": users, "key": key, "tag": tag, "size": size})


class Setup:
    """One configuration: its servers (and nginx in front of several), started and stopped per measurement."""

    def __init__(self, name, veil, work, keys_dir, data_dirs, url=None):
        self.name, self.veil, self.work, self.keys_dir, self.data_dirs, self.url = name, veil, work, keys_dir, data_dirs, url
        self.processes, self.nginx, self.port, self.ports = [], None, None, []

    def start(self, cache_ttl):
        ports = []
        for i, data in enumerate(self.data_dirs):
            port = free_port()
            args = [self.veil, "serve", "--port", str(port), "--data-dir", data, "--keys", self.keys_dir, "--policies", POLICIES,
                    "--retrain-interval", "0", "--retention-interval", "0", "--cache-ttl", str(cache_ttl)]
            if self.url:
                args += ["--database-url", self.url]
            if len(self.data_dirs) > 1:
                config = "%s/gw%d.yaml" % (self.work, i)
                with open(config, "w") as f:
                    f.write("storage:\n  gateways: several\naudit:\n  log_name: gw%d\n" % i)
                args += ["--config", config]
            log = "%s/%s-%d.log" % (self.work, self.name, i)
            p = subprocess.Popen(args + ["--log-level", "warning"], stdout=open(log, "ab"), stderr=subprocess.STDOUT)
            self.processes.append(p)
            wait_live(port, p, log)
            ports.append(port)
        self.ports = ports
        if len(ports) == 1:
            self.port = ports[0]
        else:
            self.port = free_port()
            self.nginx = subprocess.Popen([NGINX, "-c", nginx_config(self.work, self.port, ports), "-p", self.work],
                                          stdout=subprocess.DEVNULL, stderr=open(self.work + "/nginx.out", "ab"))
            wait_live(self.port, self.nginx, self.work + "/nginx.out")

    def stop(self):
        if self.nginx:
            self.nginx.send_signal(signal.SIGQUIT)
            self.nginx.wait(timeout=10)
            self.nginx = None
        for p in self.processes:
            p.terminate()
            p.wait(timeout=60)
        self.processes = []


def wrk(port, path, script, duration, quiet=False, connections=64):
    out = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % duration, "--latency", "-s", script,
                          "http://127.0.0.1:%d%s" % (port, path)],
                         check=True, capture_output=True, text=True).stdout
    w = summary(out)
    if problems(w) and not quiet:
        print("   FLAGGED: %s on %s" % (problems(w), path), file=sys.stderr)
    return w


def misses(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith("veil_recommendation_cache_misses_total "):
            return float(line.split()[1])
    return 0.0


def fill(setup, script):
    """Asks each gateway for every subject until a pass of 3 s adds (almost) no miss: every list is then cached."""
    for port in setup.ports:
        for _ in range(20):
            before = misses(port)
            wrk(port, "/v1/recommendations/x", script, 3, quiet=True)
            if misses(port) - before < 10:
                break


def measure(setup, a, scripts):
    """requests/s and p99 of the three routes for one configuration."""
    row = {}
    setup.start(cache_ttl=3600)
    try:
        fill(setup, scripts["recs"])
        row["cached"] = wrk(setup.port, "/v1/recommendations/x", scripts["recs"], a.duration)
        row["events"] = wrk(setup.port, "/v1/events", scripts["events"][setup.name], a.duration)
        # A shop's server posts its batches over a few connections: 64 clients with a batch each would queue past wrk's
        # 2 s timeout behind the database's one writer, and count as errors what is only a queue.
        batched = wrk(setup.port, "/v1/events", scripts["batches"][setup.name], a.duration, connections=8)
        row["batched"] = {"rps": batched["rps"] * a.batch, "p99": batched["p99"]}
    finally:
        setup.stop()
    setup.start(cache_ttl=0)
    try:
        row["uncached"] = wrk(setup.port, "/v1/recommendations/x", scripts["recs"], a.duration)
    finally:
        setup.stop()
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", default=os.path.join(ROOT, ".build/release/veil"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50, help="events per request in the batched ingest measurement")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="veil-bench-backends-")
    os.chmod(work, 0o755)
    pgdir = work + "/pg"
    url = subprocess.run([SCRATCH, "start", pgdir, str(free_port())], check=True, capture_output=True, text=True).stdout.strip()
    setups = []
    try:
        keys = {}
        for name, extra in [("sqlite", []), ("postgres", ["--database-url", url])]:
            out = "%s/%s-keys.txt" % (work, name)
            subprocess.run([a.veil, "demo", "--dir", "%s/%s" % (work, name), "--users", str(a.users), "--items", str(a.items),
                            "--days", "60", "--api-keys-out", out] + extra, check=True, stdout=subprocess.DEVNULL)
            app, recs = open(out).read().split("\n")[:2]
            keys[name] = (app, recs)
        # The recommendation client of each store reads the same subjects; the scripts differ only in their key.
        scripts = {"recs": work + "/recs.lua", "events": {}, "batches": {}}
        recs_script(scripts["recs"], a.users, keys["sqlite"][1])
        sqlite = Setup("sqlite", a.veil, work, work + "/sqlite/Keys", [work + "/sqlite/data"])
        pg1 = Setup("postgres-1", a.veil, work, work + "/postgres/Keys", [work + "/postgres/data"], url)
        pg3 = Setup("postgres-3", a.veil, work, work + "/postgres/Keys", [work + "/postgres/gw%d" % i for i in range(3)], url)
        setups = [sqlite, pg1, pg3]
        for s in setups:
            events_script("%s/events-%s.lua" % (work, s.name), a.users, keys["sqlite" if s is sqlite else "postgres"][0], s.name)
            scripts["events"][s.name] = "%s/events-%s.lua" % (work, s.name)
            key = keys["sqlite" if s is sqlite else "postgres"][0]
            batch_script("%s/batches-%s.lua" % (work, s.name), a.users, key, s.name, a.batch)
            scripts["batches"][s.name] = "%s/batches-%s.lua" % (work, s.name)
        pg_recs = work + "/recs-pg.lua"
        recs_script(pg_recs, a.users, keys["postgres"][1])
        results = {s.name: [] for s in setups}
        for r in range(a.rounds):
            order = setups if r % 2 == 0 else list(reversed(setups))
            for s in order:
                row = measure(s, a, dict(scripts, recs=scripts["recs"] if s is sqlite else pg_recs))
                results[s.name].append(row)
                print(("round %d %-10s cached %8.0f/s p99 %6.2f ms | uncached %7.0f/s p99 %6.2f ms | events %7.0f/s p99 %6.2f ms"
                       " | batched events %7.0f/s p99 %6.2f ms") % (
                    r + 1, s.name, row["cached"]["rps"], row["cached"]["p99"], row["uncached"]["rps"], row["uncached"]["p99"],
                    row["events"]["rps"], row["events"]["p99"], row["batched"]["rps"], row["batched"]["p99"]), flush=True)
        print("\nmedians of %d rounds (%d s per route, wrk 2 threads, 64 connections, 8 for batches); ratio to SQLite with one gateway:" % (
            a.rounds, a.duration))
        print("| configuration | cached recommendations/s | uncached recommendations/s | events/s (one per request) |"
              " events/s (%d per request) |" % a.batch)
        print("|---|---|---|---|---|")
        base = {route: statistics.median(x[route]["rps"] for x in results["sqlite"]) for route in ["cached", "uncached", "events", "batched"]}
        labels = {"sqlite": "SQLite, 1 gateway", "postgres-1": "PostgreSQL, 1 gateway", "postgres-3": "PostgreSQL, 3 gateways + nginx"}
        for s in setups:
            cells = []
            for route in ["cached", "uncached", "events", "batched"]:
                rps = statistics.median(x[route]["rps"] for x in results[s.name])
                p99 = statistics.median(x[route]["p99"] for x in results[s.name])
                cells.append("%.0f (%.2f×), p99 %.1f ms" % (rps, rps / base[route], p99))
            print("| %s | %s |" % (labels[s.name], " | ".join(cells)))
    finally:
        for s in setups:
            s.stop()
        subprocess.run([SCRATCH, "stop", pgdir], capture_output=True)
    if os.environ.get("KEEP"):
        print("state kept in " + work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
