#!/usr/bin/env bash
# Rotates the master key and re-wraps every subject key while wrk drives uncached recommendation requests
# (each one unwraps its subject's data key). Reports requests served, non-2xx answers and wrk's socket errors
# (connect, read, write, timeout; any of them fails the run), and checks that every
# subject's data still reads afterwards. Usage: scripts/rotation-under-load.sh [DURATION_S]  (make release first)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15}
PORT=${PORT:-18383}
PREFIX=rotation RECS_PRINCIPAL=load-recs
source scripts/load-setup.sh
ADMIN=$("$VEIL" principals add load-admin --role admin "${common[@]}" | tail -1)
start_server --retention-interval 0 --cache-ttl 0
wrk -t2 -c64 -d"${DURATION}s" --latency -s "$DIR/recs.lua" "http://127.0.0.1:$PORT/" > "$DIR/wrk.txt" &
WRK=$!
sleep 3
START=$(date +%s.%N)
ROTATE=$(python3 - "$PORT" "$ADMIN" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:%s/v1/keys/rotate" % sys.argv[1], method="POST", headers={"Authorization": "Bearer " + sys.argv[2]})
print(json.loads(urllib.request.urlopen(req, timeout=120).read()))
PY
)
END=$(date +%s.%N)
wait $WRK
stop_server
echo "rotation: $ROTATE in $(python3 -c "print(round($END - $START, 2))") s, during wrk load"
grep -E "requests in|Requests/sec|Non-2xx|Socket errors" "$DIR/wrk.txt" || true
"$VEIL" keys status "${common[@]}"
python3 - "$DIR/wrk.txt" <<'PY'
import sys
sys.path.insert(0, "scripts")
from wrk_output import problems, summary
w = summary(open(sys.argv[1]).read())
print("requests served during the run: %d; failed: %d non-2xx, %d socket errors (connect %d, read %d, write %d, timeout %d)"
      % (w["total"], w["non2xx"], w["socket_errors"], w["connect"], w["read"], w["write"], w["timeout"]))
if problems(w):
    print("FAIL under load: " + problems(w))
sys.exit(1 if problems(w) else 0)
PY
# Every subject's data still reads: the export of each consenting demo subject has its interactions.
OFFICER=$("$VEIL" principals add load-dpo --role compliance-officer "${common[@]}" | tail -1)
start_server --retention-interval 0
python3 - "$PORT" "$OFFICER" "$USERS" <<'PY'
import json, sys, time, urllib.error, urllib.request
port, key, users = sys.argv[1], sys.argv[2], int(sys.argv[3])
ok = bad = 0
def fetch(req):
    # The compliance officer's rate limit (200/s) applies here too: wait as Retry-After says.
    while True:
        try:
            return urllib.request.urlopen(req, timeout=10).read()
        except urllib.error.HTTPError as e:
            if e.code != 429: raise
            time.sleep(float(e.headers.get("Retry-After", "1")))
for n in range(users):
    if n % 8 == 7 or n in (0, 1):  # opted out, or withdrawn / erased by the demo
        continue
    req = urllib.request.Request("http://127.0.0.1:%s/v1/subjects/user-%d%%40example.com/export" % (port, n), headers={"Authorization": "Bearer " + key})
    body = json.loads(fetch(req))
    if body.get("has_data"): ok += 1
    else: bad += 1
print("subjects whose data reads after rotation: %d; unreadable: %d" % (ok, bad))
sys.exit(1 if bad else 0)
PY
stop_server
