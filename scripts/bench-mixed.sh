#!/usr/bin/env bash
# Reads beside writes: the cached recommendation route (32 connections) alone, then beside single-event posts
# (32 more connections), alternated ROUNDS times on one release server. Shows whether writes waiting for the
# database hold up reads. Usage: scripts/bench-mixed.sh [ROUNDS] [DURATION_S]   (build first: make release)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}; DURATION=${2:-8}
PORT=${PORT:-18191}
PREFIX=bench-mixed RECS_PRINCIPAL=bench-mixed-recs
source scripts/load-setup.sh
write_events_script
start_server
recs() { wrk -t1 -c32 -d"${DURATION}s" --latency -s "$DIR/recs.lua" "http://127.0.0.1:$PORT/v1/recommendations/x"; }
events() { wrk -t1 -c32 -d"${DURATION}s" --latency -s "$DIR/events.lua" "http://127.0.0.1:$PORT/v1/events"; }
row() { # label, recs output, [events output]
  local line
  line="| $1 | $(awk '/Requests\/sec/{printf "%.0f", $2}' "$2") | $(awk '$1=="50%"{print $2}' "$2") | $(awk '$1=="99%"{print $2}' "$2")"
  if [ -n "${3:-}" ]; then line+=" | $(awk '/Requests\/sec/{printf "%.0f", $2}' "$3") | $(awk '$1=="99%"{print $2}' "$3") |"
  else line+=" | - | - |"; fi
  echo "$line"
}
wrk -t1 -c32 -d2s -s "$DIR/recs.lua" "http://127.0.0.1:$PORT/v1/recommendations/x" > /dev/null  # fill the cache
echo "| round | cached recommendations/s | p50 | p99 | events/s beside | events p99 |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  recs > "$DIR/alone.txt"
  row "$r: alone" "$DIR/alone.txt"
  events > "$DIR/events.txt" & EVENTS=$!
  recs > "$DIR/beside.txt"
  wait $EVENTS
  row "$r: beside events" "$DIR/beside.txt" "$DIR/events.txt"
done
stop_server
