#!/usr/bin/env bash
# Compares two server builds under the same host conditions: both run at once, on copies of one data directory,
# each driven by its own wrk (1 thread, 32 connections, 6 s per round), so the host's speed drift (a third
# within the hour here) hits both alike. Prints, per round, requests/s, p99 and server CPU µs per request.
# Run it twice with the binaries swapped: the first port tends to get a few percent more.
# Usage: scripts/compare-serve.sh BIN_A BIN_B [ROUNDS] [recs|bare|events]
#   e.g. cp .build/release/veil /tmp/veil-before; (change, make release); scripts/compare-serve.sh /tmp/veil-before .build/release/veil
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1; B=$2; ROUNDS=${3:-4}; ROUTE=${4:-recs}
PREFIX=compare-serve RECS_PRINCIPAL=compare-recs
VEIL=$A
source scripts/load-setup.sh
write_events_script
cp -r "$DIR/data" "$DIR/data-b"
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
start() { "$1" serve --data-dir "$2" --keys "$DIR/Keys" --policies ./Policies --port "$3" --log-level error --retrain-interval 0 > /dev/null 2>&1 & }
start "$A" "$DIR/data" 18301; SA=$!
start "$B" "$DIR/data-b" 18302; SB=$!
for port in 18301 18302; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/live" > /dev/null && break; sleep 0.1; done
done
load() { # port, seconds
  case $ROUTE in
    bare) wrk -t1 -c32 -d"$2s" --latency "http://127.0.0.1:$1/health/live" ;;
    events) wrk -t1 -c32 -d"$2s" --latency -s "$DIR/events.lua" "http://127.0.0.1:$1/v1/events" ;;
    *) wrk -t1 -c32 -d"$2s" --latency -s "$DIR/recs.lua" "http://127.0.0.1:$1/x" ;;
  esac
}
summary() { # wrk output, cpu ticks
  local n; n=$(awk '/requests in/{print $1}' "$1")
  echo "$(awk '/Requests\/sec/{printf "%.0f", $2}' "$1") req/s, p99 $(awk '$1=="99%"{print $2}' "$1"), $(( $2 * 10000 / n )) µs CPU/request"
}
load 18301 2 > /dev/null & P=$!; load 18302 2 > /dev/null; wait $P  # fill both caches
echo "A = $A; B = $B; route $ROUTE"
for r in $(seq "$ROUNDS"); do
  a0=$(ticks $SA); b0=$(ticks $SB)
  load 18301 6 > "$DIR/a.txt" & P=$!; load 18302 6 > "$DIR/b.txt"; wait $P
  a1=$(ticks $SA); b1=$(ticks $SB)
  echo "round $r  A: $(summary "$DIR/a.txt" $((a1 - a0)))  |  B: $(summary "$DIR/b.txt" $((b1 - b0)))"
done
kill -TERM $SA $SB 2>/dev/null || true
wait $SA $SB 2>/dev/null || true
