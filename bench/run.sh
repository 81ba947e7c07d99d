#!/usr/bin/env bash
# Benchmarks Presence (bench/echo_server.py) against Autobahn|Python on Twisted
# (the reference), twisted.web.websocket and websockets with the shared wsbench
# harness; prints the summary table and saves the results path. See bench/README.md.
#
# Usage: bench/run.sh
#   REPEAT=3            runs (each starts every server fresh)
#   SCENARIOS=S1,S4     subset of S3,S1,S1p,S2a,S2b,S4,S5a,S5b (default: all)
#   QUICK=1             short smoke-test variants
#   ONLY=autobahn,presence   only these servers
#   WSBENCH_SRC=DIR     the harness to copy (default: ../shared/wsbench from the repo root)
#   WSBENCH_HOME=DIR    writable work folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/presence-wsbench)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=${WSBENCH_SRC:-$repo/../shared/wsbench}
home=${WSBENCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/presence-wsbench}

# A writable copy of the harness (bin/, venvs/, results/ are kept between runs).
mkdir -p "$home"
cp -rp "$src/." "$home/"
chmod -R u+w "$home"
cd "$home"
[ bin/wsload -nt client/wsload.c ] || rm -f bin/wsload   # rebuild after a harness update
bash setup.sh

# A snapshot of the working tree (tracked files, uncommitted edits included), so
# one run measures one version even if the tree changes meanwhile; echo_server.py
# puts its repo first on sys.path. The venv gets Presence's dependencies + wsaccel.
commit=$(git -C "$repo" describe --always --dirty)
snap=$(git -C "$repo" stash create); snap=${snap:-HEAD}
rm -rf presence-src && mkdir presence-src && git -C "$repo" archive "$snap" | tar -x -C presence-src
[ -x venvs/presence/bin/python ] || python3 -m venv venvs/presence
venvs/presence/bin/pip install -q "./presence-src[speedups]"

conf=servers-presence.conf   # ports clear of the harness defaults (92xx)
cat > "$conf" <<EOF
autobahn|9401|venvs/autobahn/bin/python servers/autobahn_twisted.py {PORT}
twistedws|9402|venvs/twisted/bin/python servers/twisted_web_websocket.py {PORT}
websockets|9403|venvs/websockets/bin/python servers/websockets_asyncio.py {PORT}
presence|9411|venvs/presence/bin/python presence-src/bench/echo_server.py {PORT}
presence-pure|9412|env PRESENCE_PURE_PYTHON=1 venvs/presence/bin/python presence-src/bench/echo_server.py {PORT}
EOF
for port in $(cut -d'|' -f2 "$conf"); do   # run_all.sh would skip a busy port's server silently
  if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then echo "port $port is in use; free it first" >&2; exit 1; fi
done

out=$home/results/presence-$(date +%Y%m%d-%H%M%S)-$commit.jsonl
echo "measuring Presence at $commit"
SERVERS_CONF=$conf OUT=$out REF=autobahn bash run_all.sh   # passes REPEAT, SCENARIOS, QUICK, ONLY
echo "$out" > results/LATEST
echo "results: $out (path saved in $home/results/LATEST)"
