#!/usr/bin/env bash
# Installs Presence into .venv (once) and runs it in the foreground.
# Usage: scripts/run.sh [twistd presence options]   (default: --listen tcp:8080)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/twistd ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check \
    -e ".[speedups]" --config-settings editable_mode=compat
fi
exec .venv/bin/twistd -n --pidfile= presence "$@"
