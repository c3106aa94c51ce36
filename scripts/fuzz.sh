#!/usr/bin/env bash
# Fuzzes the running gateway with schemathesis (from PyPI, in a virtualenv this script creates) against
# Sources/Gateway/openapi.yaml: no 5xx, and every 4xx carries the error shape. Bounded: N examples per route.
# Usage: scripts/fuzz.sh [EXAMPLES_PER_ROUTE]   (VEIL=path/to/veil; default .build/debug/veil)
# One run with seed 1, unless MIN_CASES asks for more: then runs with seeds 1, 2, ... against the same server until
# their generated cases add up to MIN_CASES (at most MAX_SEEDS=100 runs; falling short fails), as `make soak` does:
#   MIN_CASES=10000 scripts/fuzz.sh 200
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${1:-25}
MIN_CASES=${MIN_CASES:-0}
MAX_SEEDS=${MAX_SEEDS:-100}
VEIL=${VEIL:-.build/debug/veil}
[ -x "$VEIL" ] || { echo "build first: swift build" >&2; exit 1; }
VENV=.venv-fuzz
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis==4.32.5
fi
DIR=$(mktemp -d /tmp/veil-fuzz.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
common=(--data-dir "$DIR/data" --keys "$DIR/Keys" --policies ./Policies)
"$VEIL" keys init "${common[@]}" > /dev/null
KEY=$("$VEIL" principals add fuzzer --role admin "${common[@]}" | tail -1)
# The fuzzer sends mostly invalid events on purpose: a 100% reject rate from it is expected, not a data-quality
# incident, so readiness must not turn red (503) because of it. Quality thresholds are tested in GatewayTests.
printf 'quality:\n  max_reject_rate: 1\n  max_duplicate_rate: 1\n  min_completeness: 0\n' > "$DIR/fuzz.yaml"
"$VEIL" serve "${common[@]}" --config "$DIR/fuzz.yaml" --port "$PORT" --retrain-interval 0 --retention-interval 0 --log-level error > "$DIR/serve.log" 2>&1 &
alive() { python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/health/live', timeout=2)" 2>/dev/null; }
for _ in $(seq 100); do alive && break; sleep 0.1; done
status=0 cases=0 seed=0
while :; do
  seed=$((seed + 1))
  PYTHONPATH=scripts SCHEMATHESIS_HOOKS=fuzz_hooks "$VENV/bin/schemathesis" run Sources/Gateway/openapi.yaml \
    --url "http://127.0.0.1:$PORT" -H "Authorization: Bearer $KEY" \
    --checks all --max-examples "$EXAMPLES" --seed "$seed" --workers 2 \
    --phases examples,fuzzing --request-timeout 10 --no-color > "$DIR/fuzz.log" 2>&1 || status=$?
  # The summary says "Test cases:" then "  N generated, N passed" (or "... found K unique failures").
  n=$(grep -oE '^ *[0-9]+ generated' "$DIR/fuzz.log" | tail -n 1 | tr -dc 0-9 || true)
  cases=$((cases + ${n:-0}))
  [ "$MIN_CASES" -gt 0 ] && echo "seed $seed: ${n:-0} cases (schemathesis exit $status); $cases so far of the $MIN_CASES asked"
  [ "$status" -eq 0 ] && [ "$cases" -lt "$MIN_CASES" ] && [ "$seed" -lt "$MAX_SEEDS" ] || break
done
tail -n 25 "$DIR/fuzz.log"
echo "schemathesis: $cases cases generated over $seed run(s), seeds 1 to $seed, $EXAMPLES examples per operation asked"
if [ "$cases" -lt "$MIN_CASES" ]; then echo "fewer cases than the $MIN_CASES asked" >&2; status=1; fi
if grep -qiE "panic|fatal error" "$DIR/serve.log"; then echo "server crashed during fuzzing" >&2; status=1; fi
if ! alive; then echo "server is down after fuzzing" >&2; status=1; fi
"$VEIL" audit verify "${common[@]}" || status=1
exit $status
