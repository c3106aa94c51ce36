# Sourced by the load scripts (bench-serve, bench-mixed, bench-retrain, compare-serve, rotation-under-load): checks the
# release binary and wrk, populates a temporary data directory with `veil demo` (USERS users and ITEMS items, 1,000 each
# unless set) and writes a wrk script asking for recommendations of consenting demo subjects. Sets DIR, USERS, VEIL, common, RECS; defines
# start_server, stop_server and warm (on $PORT) and write_events_script (an app principal and a wrk script posting one
# page view per request to $DIR/events.lua).
# Usage: PREFIX=name RECS_PRINCIPAL=name; source scripts/load-setup.sh
VEIL=${VEIL:-.build/release/veil}
[ -x "$VEIL" ] || { echo "build first: make release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
DIR=$(mktemp -d "/tmp/veil-${PREFIX}.XXXXXX")
USERS=${USERS:-1000}
ITEMS=${ITEMS:-1000}
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
"$VEIL" demo --dir "$DIR" --users "$USERS" --items "$ITEMS" --days 60 > "$DIR/demo.log"
common=(--data-dir "$DIR/data" --keys "$DIR/Keys" --policies ./Policies)
RECS=$("$VEIL" principals add "$RECS_PRINCIPAL" --role recommendation-client "${common[@]}" | tail -1)
# Every eighth demo subject declined personalization: ask for the others. The requests are formatted once, when
# the script loads: formatting each one as it is sent took about 4% of a core from the server sharing the 2 cores
# with wrk (wrk's user time halved), a cost the bare route, sent without a script, does not pay.
cat > "$DIR/recs.lua" <<LUA
local requests = {}
for i = 1, $USERS do
  local n = (i * 7919) % $USERS
  if n % 8 == 7 then n = n - 1 end
  requests[i] = wrk.format("GET", "/v1/recommendations/user-" .. n .. "%40example.com?k=10", {["Authorization"] = "Bearer $RECS"})
end
local counter = 0
request = function()
  counter = counter % $USERS + 1
  return requests[counter]
end
LUA

# Starts `veil serve` on $PORT with the data directory (extra flags pass through) and waits until it answers (at most
# START_WAIT seconds, 10 unless set: the server trains before it listens).
start_server() {
  "$VEIL" serve "${common[@]}" --port "$PORT" --log-level error --retrain-interval 0 "$@" > "$DIR/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq $((${START_WAIT:-10} * 10))); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && return; sleep 0.1; done
  echo "server did not start" >&2; cat "$DIR/serve.log" >&2; exit 1
}
stop_server() { kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true; }
# One pass (2 s, not counted) that fills the recommendation cache for every subject before the cached route is measured.
warm() { wrk -t2 -c64 -d2s -s "$DIR/recs.lua" "http://127.0.0.1:$PORT/v1/recommendations/x" > /dev/null; }

write_events_script() {
  local app
  app=$("$VEIL" principals add "${PREFIX}-app" --role app "${common[@]}" | tail -1)
  cat > "$DIR/events.lua" <<LUA
counter = 0
local thread_id = math.random(1, 1000000000)
request = function()
  counter = counter + 1
  local n = (counter * 7919) % $USERS
  local body = '{"events":[{"id":"b-' .. thread_id .. '-' .. counter .. '","kind":"page_view","subject":"user-' .. n ..
    '@example.com","timestamp":"2026-11-20T10:00:00Z","source":"bench","item":"sku-000' .. (counter % 10) .. '","dwell_ms":' .. (1000 + counter % 5000) .. '}]}'
  return wrk.format("POST", "/v1/events", {["Authorization"] = "Bearer $app", ["Content-Type"] = "application/json"}, body)
end
LUA
}
