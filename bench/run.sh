#!/usr/bin/env bash
# Benchmarks Presence (bench/echo_server.py) against Autobahn|Python on Twisted
# (the reference), twisted.web.websocket, websockets, picows and Node's ws with
# the shared wsbench harness; prints the summary table and saves the results path. See bench/README.md.
#
# Usage: bench/run.sh
#   REPEAT=3            runs (each starts every server fresh)
#   SCENARIOS=S1,S4     subset of S3,S1,S1p,S2a,S2b,S4,S5a,S5b (default: all)
#   QUICK=1             short smoke-test variants
#   ONLY=autobahn,presence   only these servers
#   WSBENCH_SRC=DIR     the harness to copy (default: ../shared/wsbench from the repo root)
#   WSBENCH_HOME=DIR    writable work folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/presence-wsbench)
#   BASELINE=COMMIT     also measure that commit, as presence-base, in the same run
#                       (before and after a change, side by side)
source "$(dirname "$0")/common.sh"

conf=servers-presence.conf   # ports clear of the harness defaults (92xx)
cat > "$conf" <<EOF
autobahn|9401|venvs/autobahn/bin/python servers/autobahn_twisted.py {PORT}
twistedws|9402|venvs/twisted/bin/python servers/twisted_web_websocket.py {PORT}
websockets|9403|venvs/websockets/bin/python servers/websockets_asyncio.py {PORT}
picows|9404|venvs/picows/bin/python servers/picows_server.py {PORT}
node-ws|9405|node servers/ws_server.js {PORT}
presence|9411|venvs/presence/bin/python presence-src/bench/echo_server.py {PORT}
presence-pure|9412|env PRESENCE_UNMASK=pure venvs/presence/bin/python presence-src/bench/echo_server.py {PORT}
presence-wsaccel|9413|env PRESENCE_UNMASK=wsaccel venvs/presence/bin/python presence-src/bench/echo_server.py {PORT}
EOF
if [ -n "${BASELINE:-}" ]; then
  # The baseline's own tree and venv: its echo server puts its tree first on sys.path.
  rm -rf presence-base-src && mkdir presence-base-src
  git -C "$repo" archive "$BASELINE" | tar -x -C presence-base-src
  [ -x venvs/presence-base/bin/python ] || python3 -m venv venvs/presence-base
  venvs/presence-base/bin/pip install -q "./presence-base-src[speedups]"
  echo "presence-base|9414|venvs/presence-base/bin/python presence-base-src/bench/echo_server.py {PORT}" >> "$conf"
  commit="$commit-vs-$(git -C "$repo" rev-parse --short "$BASELINE")"
fi
check_ports "$conf"

out=$home/results/presence-$(date +%Y%m%d-%H%M%S)-$commit.jsonl
echo "measuring Presence at $commit"
SERVERS_CONF=$conf OUT=$out REF=autobahn bash run_all.sh   # passes REPEAT, SCENARIOS, QUICK, ONLY
echo "$out" > results/LATEST
echo "results: $out (path saved in $home/results/LATEST)"
