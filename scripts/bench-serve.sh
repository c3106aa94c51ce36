#!/usr/bin/env bash
# Serving benchmark: the release server on loopback, driven by wrk (64 connections, 10 s per route).
# Usage: scripts/bench-serve.sh [DURATION_S]   (build first: make release; needs wrk: apt-get install -y wrk)
#        RUNS=7 scripts/bench-serve.sh 10           (seven runs back to back: each run's table, then the medians)
#        ROUTES=cached RUNS=5 scripts/bench-serve.sh 10
#            (the serving targets: one server, RUNS alternated rounds (default 5, at least 5 for a verdict) of the bare
#            route and the cached recommendations, in the order bare-cached, cached-bare, ...; prints each round and
#            the medians of requests/s, p99 and the two ratios cached / bare, and PASS or FAIL for each target:
#            requests/s ratio >= 0.5, p99 ratio <= 2.0, no non-2xx)
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
  # /metrics saw over the same seconds: mean time in the gateway, mean audit wait, its part until durable (ms), entries per
  # commit and per fsync; last, the number of non-2xx answers
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
print(f"{name}\t{w['rps']:.0f}\t{w['p50']:.2f}\t{w['p99']:.2f}\t{100.0 * w['non2xx'] / max(w['total'], 1):.2f}\t{w['socket_errors']}\t{inside:.2f}\t{wait:.2f}\t{durable:.2f}\t{per_commit:.1f}\t{per_sync:.1f}\t{w['non2xx']}")
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
    run events /v1/events "$DIR/events.lua"
  } >> "$1"
  stop_server
  start_server --cache-ttl 0
  run recommendations-uncached /v1/recommendations/x "$DIR/recs.lua" >> "$1"
  stop_server
  # The same cached route with the audit log at synchronous=NORMAL (survives kill -9, not a power cut).
  printf 'audit:\n  sync: normal\n' > "$DIR/normal.yaml"
  start_server --config "$DIR/normal.yaml"
  warm
  run recommendations-audit-normal /v1/recommendations/x "$DIR/recs.lua" >> "$1"
  stop_server
}

if [ "${ROUTES:-all}" = cached ]; then
  # The serving targets, relative to the same server in the same sitting (this host's speed drifts by a third within
  # an hour and wrk shares its cores, so only side-by-side rounds compare): one server, RUNS rounds, each measuring
  # the bare route and the cached recommendations (after a 2 s pass, not counted, that fills the cache), the order
  # swapped every round so that a drift within a round favours neither.
  RUNS=${RUNS:-5}
  start_server
  for r in $(seq "$RUNS"); do
    echo "round $r of $RUNS" >&2
    if [ $((r % 2)) = 1 ]; then
      { run bare /health/live; warm; run recommendations /v1/recommendations/x "$DIR/recs.lua"; } > "$DIR/round-$r.tsv"
    else
      { warm; run recommendations /v1/recommendations/x "$DIR/recs.lua"; run bare /health/live; } > "$DIR/round-$r.tsv"
    fi
  done
  stop_server
  python3 - "$DIR" "$RUNS" "$DURATION" <<'PY'
import statistics, sys
directory, runs, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rounds = []
for r in range(1, runs + 1):
    rows = {}
    for line in open(f"{directory}/round-{r}.tsv").read().splitlines():
        f = line.split("\t")
        rows[f[0]] = {"rps": float(f[1]), "p99": float(f[3]), "sock": int(f[5]), "non2xx": int(f[11]),
                      "wait": float(f[7])}
    b, c = rows["bare"], rows["recommendations"]
    rounds.append({"order": "bare, cached" if r % 2 else "cached, bare", "bare_rps": b["rps"], "cached_rps": c["rps"],
                   "ratio": c["rps"] / b["rps"], "bare_p99": b["p99"], "cached_p99": c["p99"],
                   "p99_ratio": c["p99"] / b["p99"], "non2xx": b["non2xx"] + c["non2xx"], "sock": b["sock"] + c["sock"],
                   "wait": c["wait"]})
print(f"one server, {runs} alternated rounds of {duration} s per route (wrk: 2 threads, 64 connections)")
print("| round | order | bare requests/s | cached requests/s | cached / bare | bare p99 ms | cached p99 ms | "
      "p99 cached / bare | non-2xx | socket errors | cached audit wait ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r, x in enumerate(rounds, 1):
    print(f"| {r} | {x['order']} | {x['bare_rps']:.0f} | {x['cached_rps']:.0f} | {x['ratio']:.2f} | {x['bare_p99']:.2f} | "
          f"{x['cached_p99']:.2f} | {x['p99_ratio']:.2f} | {x['non2xx']} | {x['sock']} | {x['wait']:.2f} |")
med = {k: statistics.median(x[k] for x in rounds) for k in ("bare_rps", "cached_rps", "ratio", "bare_p99",
                                                          "cached_p99", "p99_ratio", "wait")}
non2xx, sock = sum(x["non2xx"] for x in rounds), sum(x["sock"] for x in rounds)
print(f"| median | | {med['bare_rps']:.0f} | {med['cached_rps']:.0f} | {med['ratio']:.2f} | {med['bare_p99']:.2f} | "
      f"{med['cached_p99']:.2f} | {med['p99_ratio']:.2f} | {non2xx} (sum) | {sock} (sum) | {med['wait']:.2f} |")
print("(each column's median on its own; the ratios are the medians of the rounds' ratios)\n")
verdict = lambda ok: "PASS" if ok else "FAIL"
print(f"{verdict(med['ratio'] >= 0.5)} requests/s: cached / bare, median {med['ratio']:.2f} (target >= 0.5; "
      f"met in {sum(x['ratio'] >= 0.5 for x in rounds)} of {runs} rounds)")
print(f"{verdict(med['p99_ratio'] <= 2.0)} p99: cached / bare, median {med['p99_ratio']:.2f} (target <= 2.0; "
      f"met in {sum(x['p99_ratio'] <= 2.0 for x in rounds)} of {runs} rounds)")
print(f"{verdict(non2xx == 0)} no non-2xx: {non2xx} non-2xx answers over both routes and {runs} rounds "
      f"({sock} socket errors)")
if runs < 5:
    print(f"note: {runs} rounds; the targets are medians of at least 5")
PY
  exit 0
fi

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
    insides.append([(name, 64000 / float(rps)) + tuple(float(v) for v in rest[:5]) for name, rps, _, _, _, _, *rest in rows])

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
bare_p99 = [rows[0][3] for rows in tables]
print(f"targets for the cached recommendations: at least half the bare route's requests/s in "
      f"{sum(row[6] >= 0.5 for row in cached)} of {runs} runs; p99 no more than 2x the bare route's in "
      f"{sum(row[3] <= 2 * b for row, b in zip(cached, bare_p99))} of {runs}; no non-2xx and no socket errors in "
      f"{sum(row[4] == 0 and row[5] == 0 for row in cached)} of {runs} (the verdict on the targets: ROUTES=cached RUNS=5)")
flagged = [f"run {r} {row[0]}" for r, rows in enumerate(tables, 1) for row in rows if row[4] or row[5]]
if flagged:
    print("FLAGGED: non-2xx answers or socket errors in " + ", ".join(flagged))
PY
