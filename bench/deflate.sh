#!/usr/bin/env bash
# permessage-deflate benchmark: idle memory per connection with compression
# negotiated and not (S3), and broadcast to 1,000 / 10,000 compressed
# connections (S5a, S5b), Presence with and without server context takeover
# against Autobahn|Python with compression on (the reference). Uses the wsbench
# harness as bench/run.sh does, with its load client patched to offer an
# extension (bench/wsload-extensions.patch, option -x). See bench/README.md.
#
# Usage: bench/deflate.sh
#   REPEAT=3  SCENARIOS=S3,S5a,S5b  ONLY=...  QUICK=1   as for bench/run.sh
#   OFFER="permessage-deflate; client_max_window_bits"  the offer every client makes
#                                                       (what Chromium sends)
source "$(dirname "$0")/common.sh"
offer=${OFFER:-permessage-deflate; client_max_window_bits}

# The harness's runner, scenarios and summary, in a folder of their own whose
# bin/wsload is the patched client, always making the offer.
work=$home/deflate
rm -rf "$work" && mkdir -p "$work/bin" "$work/results" "$work/logs"
cp run_all.sh bench.py summarize.py "$work/"
cp client/wsload.c "$work/wsload.c"
patch -s "$work/wsload.c" < "$repo/bench/wsload-extensions.patch"
gcc -O2 -o "$work/bin/wsload-x" "$work/wsload.c"
cat > "$work/bin/wsload" <<WRAPPER
#!/bin/sh
exec "$work/bin/wsload-x" "\$@" -x "$offer"
WRAPPER
chmod +x "$work/bin/wsload"
cp "$home/bin/wsnull" "$work/bin/"   # run_all.sh checks for it
ln -sfn "$home/client" "$work/client"
ln -sfn "$home/venvs" "$work/venvs"
ln -sfn "$home/presence-src" "$work/presence-src"

conf=$work/servers-deflate.conf
cat > "$conf" <<EOF2
autobahn-deflate|9421|venvs/autobahn/bin/python presence-src/bench/peers/autobahn_deflate.py {PORT}
autobahn|9422|venvs/autobahn/bin/python $home/servers/autobahn_twisted.py {PORT}
presence|9423|venvs/presence/bin/python presence-src/bench/echo_server.py {PORT}
presence-deflate|9424|venvs/presence/bin/python presence-src/bench/echo_server.py {PORT} --deflate
presence-deflate-ctx|9425|venvs/presence/bin/python presence-src/bench/echo_server.py {PORT} --deflate-context-takeover
EOF2
check_ports "$conf"

out=$work/results/deflate-$(date +%Y%m%d-%H%M%S)-$commit.jsonl
echo "measuring Presence at $commit, every client offering: $offer"
cd "$work"
SCENARIOS=${SCENARIOS:-S3,S5a,S5b} SERVERS_CONF=$conf OUT=$out REF=autobahn-deflate bash run_all.sh
echo "results: $out"
