#!/usr/bin/env bash
# A throw-away PostgreSQL server on loopback for the tests and the demo: its own data directory and port, run as
# the `postgres` user (the server refuses root), trust authentication on 127.0.0.1 only.
#   scripts/pg-scratch.sh start DIR [PORT]   # prints the database URL on stdout
#   scripts/pg-scratch.sh stop DIR
# PG_SCRATCH_FAST=1 turns off fsync (the test suites create hundreds of databases and do not test PostgreSQL's own
# durability); leave it unset for anything that kills or restarts the server.
set -euo pipefail
cmd=${1:?usage: pg-scratch.sh start|stop DIR [PORT]}
dir=${2:?usage: pg-scratch.sh start|stop DIR [PORT]}
port=${3:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "PostgreSQL is not installed: apt-get install -y postgresql (Debian), then retry" >&2
  exit 1
fi
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_postgres "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    fi
    durability="-c fsync=on"
    [ "${PG_SCRATCH_FAST:-}" = 1 ] && durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    as_postgres "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' $durability -c max_connections=500" start >/dev/null
    as_postgres "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname = 'veil'" | grep -q 1 ||
      as_postgres "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE veil" >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/veil"
    ;;
  stop)
    [ -f "$dir/postmaster.pid" ] && as_postgres "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    ;;
  *) echo "usage: pg-scratch.sh start|stop DIR [PORT]" >&2; exit 2 ;;
esac
