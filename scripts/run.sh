#!/usr/bin/env bash
# Installs Presence into .venv and runs it in the foreground, with a Redis
# of its own (a redis-server child process) unless --redis is given.
# Usage: scripts/run.sh [--no-demo] [twistd presence options]
#   (default: clients on tcp:8080, the HTTP API on 127.0.0.1:8081, the admin
#   dashboard at http://127.0.0.1:8082/, and the demo page at
#   http://127.0.0.1:8081/demo: --demo, unless --no-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check \
  -e ".[speedups,embedded-redis]" --config-settings editable_mode=compat
if [ -z "${PRESENCE_API_KEY:-}" ]; then
  # Backends need a key to ask for tickets: make one for this run.
  PRESENCE_API_KEY=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')
  export PRESENCE_API_KEY
  echo "API key for this run (set PRESENCE_API_KEY to choose your own): $PRESENCE_API_KEY"
fi
DEMO=--demo
ARGS=()
for arg in "$@"; do
  if [ "$arg" = "--no-demo" ]; then DEMO=""; else ARGS+=("$arg"); fi
done
exec .venv/bin/twistd -n --pidfile= presence $DEMO ${ARGS[@]+"${ARGS[@]}"}
