#!/usr/bin/env bash
# Serving beside a retrain: the cached recommendations route's throughput and p99 while `POST /v1/model/train` retrains
# the served model, against the same route on the same server with no training running. The old model serves until
# the new one is swapped in; the target is at least half the idle throughput.
# Usage: scripts/bench-retrain.sh [DURATION_S]   (build first: make release; needs wrk)
#        USERS=20000 ITEMS=100000 ROUNDS=3 scripts/bench-retrain.sh 10   (the defaults)
# Each round: fill the cache, wrk for DURATION_S seconds with no training, then start a retrain and run wrk for
# DURATION_S seconds beside it. The cache is filled for every subject first and its hits counted in each window (from
# /metrics); a round whose retrain ended before its window did (partly idle) or whose windows missed the cache is
# flagged and left out of the verdict. Prints each round, the medians, and PASS or FAIL for "during / idle >= 0.5".
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-18183}
export USERS=${USERS:-20000} ITEMS=${ITEMS:-100000}
START_WAIT=${START_WAIT:-900}
PREFIX=bench-retrain RECS_PRINCIPAL=bench-recs
echo "populating $USERS subjects and $ITEMS items with veil demo ..." >&2
source scripts/load-setup.sh
ADMIN=$("$VEIL" principals add bench-admin --role admin "${common[@]}" | tail -1)
echo "starting the server (it trains first) ..." >&2
# Entries live long enough to outlast a round (warm, idle window, the retrain's window); the swap clears them.
start_server --cache-ttl 3600
: > "$DIR/rounds.tsv"

misses() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^veil_recommendation_cache_misses_total/ {print $2}'; }
hits() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^veil_recommendation_cache_hits_total/ {print $2}'; }

# Fills the cache for every subject the wrk script asks for: passes of 2 s until one misses nothing (at most 60).
fill_cache() {
  local before after
  for _ in $(seq 60); do
    before=$(misses)
    [ -n "$before" ] || { echo "/metrics has no veil_recommendation_cache_misses_total" >&2; exit 1; }
    warm
    after=$(misses)
    [ "$before" = "$after" ] && return
  done
  echo "the cache did not fill in 60 passes" >&2; exit 1
}

measure() { # name: wrk on the cached route, one line: requests/s, p99 ms, non-2xx + socket errors, share of cache hits
  local h0 m0
  h0=$(hits); m0=$(misses)
  wrk -t2 -c64 -d"${DURATION}s" --latency -s "$DIR/recs.lua" "http://127.0.0.1:$PORT/v1/recommendations/x" > "$DIR/$1.wrk"
  python3 - "$DIR/$1.wrk" "$h0" "$m0" "$(hits)" "$(misses)" <<'PY'
import sys
sys.path.insert(0, "scripts")
from wrk_output import summary
w = summary(open(sys.argv[1]).read())
h0, m0, h1, m1 = (float(x or 0) for x in sys.argv[2:6])
share = (h1 - h0) / max(h1 - h0 + m1 - m0, 1)
print("%.0f\t%.2f\t%d\t%.3f" % (w["rps"], w["p99"], w["non2xx"] + w["socket_errors"], share))
PY
}

for round in $(seq "$ROUNDS"); do
  fill_cache
  idle=$(measure "idle-$round")
  started=$(date +%s.%N)
  curl -sS --fail-with-body -X POST -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PORT/v1/model/train" > "$DIR/train-$round.json" &
  TRAIN=$!
  during=$(measure "during-$round")
  covered=yes
  kill -0 "$TRAIN" 2>/dev/null || covered=no
  wait "$TRAIN" || { echo "the retrain of round $round failed: $(cat "$DIR/train-$round.json")" >&2; exit 1; }
  took=$(python3 -c "import time; print('%.1f' % (time.time() - $started))")
  printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$idle" "$during" "$took" "$covered" >> "$DIR/rounds.tsv"
  echo "round $round done (retrain $took s)" >&2
done
stop_server

python3 - "$DIR/rounds.tsv" "$USERS" "$ITEMS" "$DURATION" <<'PY'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
print("retrain beside serving: %s subjects, %s items, wrk -t2 -c64 %s s per window on the cached route" % tuple(sys.argv[2:5]))
print("| round | idle req/s | idle p99 ms | during req/s | during p99 ms | during / idle | cache hits idle, during | retrain s | errors | window inside the retrain |")
print("|---|---|---|---|---|---|---|---|---|---|")
ratios, errors = [], 0
for r, irps, ip99, ierr, ihit, drps, dp99, derr, dhit, took, covered in rows:
    ratio = float(drps) / float(irps)
    errors += int(ierr) + int(derr)
    # A window that missed the cache measured the uncached route: flagged, and left out like a partly idle one.
    valid = covered == "yes" and float(ihit) >= 0.99 and float(dhit) >= 0.99
    if valid:
        ratios.append(ratio)
    print("| %s | %s | %s | %s | %s | %.2f | %s, %s | %s | %d | %s |" % (r, irps, ip99, drps, dp99, ratio, ihit, dhit, took,
                                                                    int(ierr) + int(derr), covered if valid or covered == "no" else "yes, but the cache missed"))
if not ratios:
    print("no round measured the cached route inside its retrain: give a shorter DURATION_S or more data")
    sys.exit(1)
median = statistics.median(ratios)
verdict = "PASS" if median >= 0.5 and errors == 0 else "FAIL"
print("median during / idle over %d rounds: %.2f (target >= 0.5, no errors): %s" % (len(ratios), median, verdict))
sys.exit(0 if verdict == "PASS" else 1)
PY
