#!/usr/bin/env bash
# The hub's delivery through Redis: one publish reaching 1,000 / 10,000
# subscribers on one node (wsbench S5a, S5b: the BCAST trigger is published
# through Redis by bench/hub_server.py and delivered by the node's
# subscription), beside Autobahn|Python's direct broadcast (the reference)
# and Presence's direct broadcast, in one run; then publishes per second
# sustained to 1,000 subscribers over 10 channels, channel history off and on
# (bench/hub_rate.py).
# See bench/README.md.
#
# Usage: bench/hub.sh        REPEAT=3 SCENARIOS=S5a,S5b  as for bench/run.sh
source "$(dirname "$0")/common.sh"

conf=servers-hub.conf
cat > "$conf" <<EOF2
autobahn|9441|venvs/autobahn/bin/python servers/autobahn_twisted.py {PORT}
presence|9442|venvs/presence/bin/python presence-src/bench/echo_server.py {PORT}
presence-hub|9443|venvs/presence/bin/python presence-src/bench/hub_server.py {PORT}
EOF2
check_ports "$conf"

out=$home/results/hub-$(date +%Y%m%d-%H%M%S)-$commit.jsonl
echo "measuring Presence at $commit"
SCENARIOS=${SCENARIOS:-S5a,S5b} SERVERS_CONF=$conf OUT=$out REF=autobahn bash run_all.sh
echo "results: $out"
echo
echo "== publishes per second to 1,000 subscribers over 10 channels, history off and on"
taskset -c 0 true && venvs/presence/bin/python presence-src/bench/hub_rate.py --wsload bin/wsload
