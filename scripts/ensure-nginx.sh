#!/usr/bin/env bash
# Installs nginx (the load balancer of `make cluster-demo`), or says exactly how to.
set -euo pipefail
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing nginx-light for the cluster demo" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nginx-light >/dev/null
  # Debian may start its own nginx on install; the demo runs one of its own on a free port.
  command -v systemctl >/dev/null 2>&1 && systemctl stop nginx 2>/dev/null || true
  pkill -f "nginx: master process /usr/sbin/nginx" 2>/dev/null || true
else
  echo "the cluster demo needs nginx; run: sudo apt-get install -y nginx-light" >&2
  exit 1
fi
