#!/usr/bin/env bash
# Serving benchmark: the release server on loopback, driven by wrk (64 connections, 10 s per route).
# Usage: scripts/bench-serve.sh [DURATION_S]   (build first: make release; needs wrk: apt-get install -y wrk)
#        ROUTES=cached scripts/bench-serve.sh 30   (only the bare route and the cached recommendations)
#        RUNS=7 scripts/bench-serve.sh 10           (seven runs back to back: each run's table, then the medians)
# Beside wrk's view, each run prints the server's own (/metrics scraped before and after each route): how much of a
# request's latency it spent inside the gateway, how much of that waiting on its audit entry, how much of the wait
# the log took to make the entry durable (the rest is waiting for a free thread to resume on), and how many audit
# entries shared a commit and an fsync.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
PORT=${PORT:-18181}
PREFIX=bench-serve RECS_PRINCIPAL=bench-recs
source scripts/load-setup.sh
write_events_script

scrape() { curl -sf "http://127.0.0.1:$PORT/metrics" > "$1"; }

run() { # name, url, [script]: prints a row: route, requests/s, p50, p99, non-2xx %, socket errors (wrk's connect, read,
  # write and timeout errors; a run with any, or with non-2xx answers, is also flagged on stderr), then what the server's
  # /metrics saw over the same seconds: mean time in the gateway, mean audit wait, its part until durable (ms), entries per commit and per fsync
  local out
  scrape "$DIR/before.prom"
  if [ -n "${3:-}" ]; then out=$(wrk -t2 -c64 -d"${DURATION}s" --latency -s "$3" "http://127.0.0.1:$PORT$2")
  else out=$(wrk -t2 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT$2"); fi
  scrape "$DIR/after.prom"
  echo "$out" > "$DIR/$1.wrk"
  python3 - "$1" "$DIR/$1.wrk" "$DIR/before.prom" "$DIR/after.prom" <<'PY'
import sys
sys.path.insert(0, "scripts")
from wrk_output import problems, summary
name, path = sys.argv[1], sys.argv[2]
w = summary(open(path).read())
if problems(w):
    print(f"FLAGGED {name}: {problems(w)}", file=sys.stderr)
def samples(path):
    values = {}
    for line in open(path):
        if not line.startswith("#") and " " in line.strip():
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values
before, after = samples(sys.argv[3]), samples(sys.argv[4])
delta = lambda key: after.get(key, 0.0) - before.get(key, 0.0)
route = {"bare": 'method="GET",route="/health/live"', "events": 'method="POST",route="/v1/events"'}.get(
    name, 'method="GET",route="/v1/recommendations/{subject}"')
timed = delta("veil_request_duration_seconds_count{%s}" % route)
inside = 1000 * delta("veil_request_duration_seconds_sum{%s}" % route) / timed if timed else float("nan")
waits = delta("veil_audit_wait_seconds_count")
wait = 1000 * delta("veil_audit_wait_seconds_sum") / waits if waits else float("nan")
entries, commits, syncs = delta("veil_audit_entries_total"), delta("veil_audit_batches_total"), delta("veil_audit_syncs_total")
durable = 1000 * delta("veil_audit_durable_wait_seconds_total") / entries if entries else float("nan")
per_commit = entries / commits if commits else float("nan")
per_sync = entries / syncs if syncs else float("nan")
print(f"{name}\t{w['rps']:.0f}\t{w['p50']:.2f}\t{w['p99']:.2f}\t{100.0 * w['non2xx'] / max(w['total'], 1):.2f}\t{w['socket_errors']}\t{inside:.2f}\t{wait:.2f}\t{durable:.2f}\t{per_commit:.1f}\t{per_sync:.1f}")
PY
}

# Steady state of the cached route: `warm` (load-setup.sh) fills the cache first; the uncached route below shows
# the cost of a miss.

one_run() { # appends one run's rows (route, requests/s, p50, p99, non-2xx %, socket errors, then the server's view) to $1
  start_server
  {
    run bare /health/live
    warm
    run recommendations /v1/recommendations/x "$DIR/recs.lua"
    [ "${ROUTES:-all}" = cached ] || run events /v1/events "$DIR/events.lua"
  } >> "$1"
  stop_server
  if [ "${ROUTES:-all}" != cached ]; then
    start_server --cache-ttl 0
    run recommendations-uncached /v1/recommendations/x "$DIR/recs.lua" >> "$1"
    stop_server
    # The same cached route with the audit log at synchronous=NORMAL (survives kill -9, not a power cut).
    printf 'audit:\n  sync: normal\n' > "$DIR/normal.yaml"
    start_server --config "$DIR/normal.yaml"
    warm
    run recommendations-audit-normal /v1/recommendations/x "$DIR/recs.lua" >> "$1"
    stop_server
  fi
}

RUNS=${RUNS:-1}
for r in $(seq "$RUNS"); do one_run "$DIR/run-$r.tsv"; done
python3 - "$DIR" "$RUNS" <<'PY'
import statistics, sys
directory, runs = sys.argv[1], int(sys.argv[2])
tables, insides = [], []
for r in range(1, runs + 1):
    rows = [l.split("\t") for l in open(f"{directory}/run-{r}.tsv").read().split("\n") if l]
    bare = float(rows[0][1])
    tables.append([(name, float(rps), float(p50), float(p99), float(bad), float(sock), float(rps) / bare)
                   for name, rps, p50, p99, bad, sock, *_ in rows])
    # Little's law: 64 connections always waiting means a mean latency of 64 / throughput as wrk sees it.
    insides.append([(name, 64000 / float(rps)) + tuple(float(v) for v in rest) for name, rps, _, _, _, _, *rest in rows])

def table(rows, title):
    if title:
        print(title)
    print("| route | requests/s | p50 ms | p99 ms | non-2xx % | socket errors | vs bare route |")
    print("|---|---|---|---|---|---|---|")
    for name, rps, p50, p99, bad, sock, ratio in rows:
        print(f"| {name} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {bad:.2f} | {sock:.0f} | {ratio:.2f} |")
    print()

def inside_table(rows, title):
    print(title)
    print("| route | mean latency ms (64 / requests/s) | of it in the gateway ms | of that, audit wait ms | of that, until durable ms | entries per commit | entries per fsync |")
    print("|---|---|---|---|---|---|---|")
    show = lambda v, f: "-" if v != v else format(v, f)  # nan: nothing audited, or no fsync at sync: normal
    for name, latency, inside, wait, durable, per_commit, per_sync in rows:
        if name == "bare":
            wait = durable = per_commit = per_sync = float("nan")
        print(f"| {name} | {latency:.2f} | {show(inside, '.2f')} | {show(wait, '.2f')} | {show(durable, '.2f')} | {show(per_commit, '.1f')} | {show(per_sync, '.1f')} |")
    print()

def median_rows(runs_of_rows, columns):
    # Each column's median on its own (a route's median requests/s and median p99 may come from different runs).
    return [(per_route[0][0],) + tuple(statistics.median(row[k] for row in per_route) for k in range(1, columns))
            for per_route in zip(*runs_of_rows)]

for r, (rows, inner) in enumerate(zip(tables, insides), 1):
    table(rows, f"run {r} of {runs}" if runs > 1 else "")
    inside_table(inner, "inside the server, from its /metrics over the same seconds:")
if runs > 1:
    table(median_rows(tables, 7), f"median of {runs} runs, column by column")
    inside_table(median_rows(insides, 7), f"inside the server, median of {runs} runs, column by column")
cached = [next(row for row in rows if row[0] == "recommendations") for rows in tables]
print(f"targets for the cached recommendations: at least half the bare route's requests/s in "
      f"{sum(row[6] >= 0.5 for row in cached)} of {runs} runs; p99 under 10 ms in {sum(row[3] < 10 for row in cached)} "
      f"of {runs}; no non-2xx and no socket errors in {sum(row[4] == 0 and row[5] == 0 for row in cached)} of {runs}")
flagged = [f"run {r} {row[0]}" for r, rows in enumerate(tables, 1) for row in rows if row[4] or row[5]]
if flagged:
    print("FLAGGED: non-2xx answers or socket errors in " + ", ".join(flagged))
PY
