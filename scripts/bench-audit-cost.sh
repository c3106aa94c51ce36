#!/usr/bin/env bash
# What the per-request audit entry costs the cached recommendations route, measured in one sitting: the server is
# started afresh for each configuration and the configurations are alternated round after round (the host's speed
# drifts by a quarter within minutes here, so only rounds taken side by side compare). wrk as in bench-serve.sh:
# 2 threads, 64 connections, DURATION seconds per row after a 2 s pass that fills the cache.
#   bare     GET /health/live (the target's yardstick)
#   durable  the cached route as shipped: the response waits until its entry is committed and the WAL fsynced
#   normal   the same with `audit: {sync: normal}`: the response waits for the commit only (no fsync)
# and, when VARIANT names a build made with docs/audit-cost-experiment.patch (measurement only, never merged):
#   nowait   the entry is written and fsynced but the response does not wait for it
#   none     no audit entry at all
# Prints one row per configuration and round, then the medians and each one's share of the bare route.
# Usage: scripts/bench-audit-cost.sh [ROUNDS] [DURATION_S]
#   VARIANT=/tmp/veil-variant scripts/bench-audit-cost.sh 4 10
#   (git apply docs/audit-cost-experiment.patch && make release && cp .build/release/veil /tmp/veil-variant
#    && git checkout Sources/Gateway/Routes.swift && make release)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-10}
PORT=${PORT:-18191}
PREFIX=bench-audit-cost RECS_PRINCIPAL=bench-audit-cost-recs
source scripts/load-setup.sh
printf 'audit:\n  sync: normal\n' > "$DIR/normal.yaml"

row() { # configuration, round: one measured row "round configuration requests/s p50_ms p99_ms non2xx socket_errors";
  # a run with non-2xx answers or socket errors (connect, read, write, timeout) is also flagged on stderr
  if [ "$1" = bare ]; then
    wrk -t2 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/health/live" > "$DIR/wrk.txt"
  else
    warm
    wrk -t2 -c64 -d"${DURATION}s" --latency -s "$DIR/recs.lua" "http://127.0.0.1:$PORT/x" > "$DIR/wrk.txt"
  fi
  python3 - "$2" "$1" "$DIR/wrk.txt" <<'PY'
import sys
sys.path.insert(0, "scripts")
from wrk_output import problems, summary
w = summary(open(sys.argv[3]).read())
print(f"{sys.argv[1]}\t{sys.argv[2]}\t{w['rps']:.0f}\t{w['p50']:.2f}\t{w['p99']:.2f}\t{w['non2xx']}\t{w['socket_errors']}")
if problems(w):
    print(f"FLAGGED round {sys.argv[1]} {sys.argv[2]}: {problems(w)}", file=sys.stderr)
PY
}

start_variant() { # the experiment build, with the audit experiment named
  local shipped=$VEIL
  VEIL=$VARIANT VEIL_AUDIT_EXPERIMENT=$1 start_server
  VEIL=$shipped
}

measure() { # configuration, round, then how to start the server
  local name=$1 round=$2; shift 2
  "$@"
  row "$name" "$round" | tee -a "$DIR/rows.tsv"
  stop_server
}

configurations=(bare durable normal)
if [ -n "${VARIANT:-}" ]; then
  [ -x "$VARIANT" ] || { echo "VARIANT=$VARIANT is not an executable; build it as the header says" >&2; exit 1; }
  configurations+=(nowait none)
fi
for r in $(seq "$ROUNDS"); do
  for c in "${configurations[@]}"; do
    case $c in
      bare|durable) measure "$c" "$r" start_server ;;
      normal) measure "$c" "$r" start_server --config "$DIR/normal.yaml" ;;
      nowait|none) measure "$c" "$r" start_variant "$c" ;;
    esac
  done
done

python3 - "$DIR/rows.tsv" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines() if line]
names = list(dict.fromkeys(r[1] for r in rows))
rounds = sorted({r[0] for r in rows})
bare = {r[0]: float(r[2]) for r in rows if r[1] == "bare"}
print(f"\nmedians of {len(rounds)} rounds")
print("| configuration | requests/s | p50 ms | p99 ms | non-2xx | socket errors | vs bare route (per round, then median) | p99 under 10 ms |")
print("|---|---|---|---|---|---|---|---|")
for name in names:
    mine = [r for r in rows if r[1] == name]
    ratios = [float(r[2]) / bare[r[0]] for r in mine]
    med = lambda k: statistics.median(float(r[k]) for r in mine)
    print(f"| {name} | {med(2):.0f} | {med(3):.2f} | {med(4):.2f} | {sum(int(r[5]) for r in mine)} | {sum(int(r[6]) for r in mine)} | "
          f"{' / '.join(f'{x:.2f}' for x in ratios)}, {statistics.median(ratios):.2f} | "
          f"{sum(float(r[4]) < 10 for r in mine)} of {len(mine)} |")
flagged = [f"round {r[0]} {r[1]}" for r in rows if int(r[5]) or int(r[6])]
print("\nFLAGGED: non-2xx answers or socket errors in " + ", ".join(flagged) if flagged else "\nevery request answered 2xx, no socket errors")
PY
