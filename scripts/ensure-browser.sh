#!/usr/bin/env bash
# Installs headless Chromium for the browser tests (scripts/browser_test.py), or says exactly how to.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the browser tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
else
  echo "the browser tests need Chromium; run: sudo apt-get install -y chromium" >&2
  exit 1
fi
