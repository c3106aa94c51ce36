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

# With a PostgreSQL server (VEIL_TEST_POSTGRES_URL, as scripts/with-postgres.sh sets it): the same story with
# PostgreSQL as the operational database, then the same scan over a pg_dump of that database as well.
if [ -n "${VEIL_TEST_POSTGRES_URL:-}" ]; then
  db="veil_scan_$$"
  base="${VEIL_TEST_POSTGRES_URL%/*}"
  psql "$VEIL_TEST_POSTGRES_URL" -qc "CREATE DATABASE $db" >/dev/null
  "$VEIL" demo --dir "$DIR/pg" --users 300 --items 400 --days 60 --seed 7 --api-keys-out "$DIR/pg-api-keys.txt" \
    --database-url "$base/$db" > "$DIR/pg-demo.log" 2>&1
  pg_dump "$base/$db" > "$DIR/pg/data/pg-dump.sql"
  [ "$(wc -c < "$DIR/pg/data/pg-dump.sql")" -gt 10000 ] || { echo "pg_dump of $db is suspiciously small" >&2; exit 1; }
  grep -q "COPY public.interactions" "$DIR/pg/data/pg-dump.sql" || { echo "pg_dump of $db holds no interactions" >&2; exit 1; }
  "$VEIL" audit export --data-dir "$DIR/pg/data" --keys "$DIR/pg/Keys" > "$DIR/pg-audit-export.jsonl"
  python3 scripts/secrets_scan.py "$DIR/pg" --subjects "$DIR/subjects.txt" --keys "$DIR/pg-api-keys.txt" \
    --extra "$DIR/pg-demo.log" --extra "$DIR/pg-audit-export.jsonl"
  psql "$VEIL_TEST_POSTGRES_URL" -qc "DROP DATABASE $db" >/dev/null
fi
