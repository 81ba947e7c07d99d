#!/usr/bin/env bash
# Installs everything the tests need (Debian's Chromium and nginx, a venv with
# Presence and its test dependencies), then runs every test.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
# Browser tests drive a real Chromium (PRESENCE_CHROMIUM overrides the path).
if [ ! -x "${PRESENCE_CHROMIUM:-/usr/bin/chromium}" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium > /dev/null
fi
# The SSE fallback is tested through a stock nginx (tests/helpers/nginx.py;
# PRESENCE_NGINX overrides the path).
if [ ! -x "${PRESENCE_NGINX:-/usr/sbin/nginx}" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx > /dev/null
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# editable_mode=compat: a .pth file puts the repository on sys.path, so
# twistd finds twisted/plugins/presence_plugin.py (the default editable
# finder is an import hook that Twisted's plugin discovery does not see).
.venv/bin/pip install --quiet --disable-pip-version-check \
  -e ".[test,speedups,embedded-redis]" --config-settings editable_mode=compat
exec .venv/bin/python -m pytest "$@"
