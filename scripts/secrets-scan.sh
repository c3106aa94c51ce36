#!/usr/bin/env bash
# Runs the demo, exports the audit log, then scans every database file, the WAL/SHM files, the demo's output and
# the audit export for the raw subject ids used, e-mail addresses, API keys and key bytes. Exit 1 on any hit.
set -euo pipefail
cd "$(dirname "$0")/.."
VEIL=${VEIL:-.build/release/veil}
[ -x "$VEIL" ] || { echo "build first: make release (or set VEIL=.build/debug/veil)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/veil-scan.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
"$VEIL" demo --dir "$DIR/state" --users 300 --items 400 --days 60 --seed 7 --api-keys-out "$DIR/api-keys.txt" > "$DIR/demo.log" 2>&1
"$VEIL" sample --users 300 --items 400 --days 60 --seed 7 --out "$DIR/sample" > /dev/null
python3 - "$DIR/sample/events.jsonl" > "$DIR/subjects.txt" <<'PY'
import json, sys
print("\n".join(sorted({json.loads(l)["subject"] for l in open(sys.argv[1]) if l.strip()})))
PY
"$VEIL" audit export --data-dir "$DIR/state/data" --keys "$DIR/state/Keys" > "$DIR/audit-export.jsonl"
python3 scripts/secrets_scan.py "$DIR/state" --subjects "$DIR/subjects.txt" --keys "$DIR/api-keys.txt" \
  --extra "$DIR/demo.log" --extra "$DIR/audit-export.jsonl"
