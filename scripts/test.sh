#!/usr/bin/env bash
# Installs everything the tests need into .venv, then runs every test.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# editable_mode=compat: a .pth file puts the repository on sys.path, so
# twistd finds twisted/plugins/presence_plugin.py (the default editable
# finder is an import hook that Twisted's plugin discovery does not see).
.venv/bin/pip install --quiet --disable-pip-version-check \
  -e ".[test,speedups]" --config-settings editable_mode=compat
exec .venv/bin/python -m pytest "$@"
