#!/usr/bin/env bash
# Installs the system libraries Veil builds against, or says exactly how to.
set -euo pipefail
packages="libsodium-dev libsqlite3-dev libssl-dev libopenblas-dev pkg-config"
missing=0
command -v pkg-config >/dev/null 2>&1 || missing=1
if [ "$missing" = 0 ]; then
  pkg-config --exists libsodium sqlite3 openssl openblas || missing=1
fi
if [ "$missing" = 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing $packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $packages >/dev/null
  else
    echo "missing system packages; run: sudo apt-get install -y $packages" >&2
    exit 1
  fi
fi
command -v swift >/dev/null 2>&1 || { echo "swift is not on PATH; install Swift 6.3 (swift.org) first" >&2; exit 1; }
