#!/usr/bin/env bash
# Installs PostgreSQL (the server the PostgreSQL backend's tests run against), or says exactly how to.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ]; then
  echo "installing postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  # Debian starts a cluster of its own on install; the tests use a scratch server of their own instead.
  command -v pg_ctlcluster >/dev/null 2>&1 && pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | while read -r v c; do pg_ctlcluster "$v" "$c" stop || true; done
else
  echo "PostgreSQL is missing; run: sudo apt-get install -y postgresql" >&2
  exit 1
fi
