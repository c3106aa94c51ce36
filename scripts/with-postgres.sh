#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL server (fsync off: tests only) and VEIL_TEST_POSTGRES_URL naming it;
# the server and its files are gone afterwards, whatever the command's outcome.
#   scripts/with-postgres.sh swift test --skip-build
set -euo pipefail
dir=$(mktemp -d /tmp/veil-pg.XXXXXX)
chmod 755 "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
here="$(cd "$(dirname "$0")" && pwd)"
cleanup() { "$here/pg-scratch.sh" stop "$dir/data" || true; rm -rf "$dir"; }
trap cleanup EXIT
url=$(PG_SCRATCH_FAST=1 "$here/pg-scratch.sh" start "$dir/data" "$port")
export VEIL_TEST_POSTGRES_URL="$url"
"$@"
