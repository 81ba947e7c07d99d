# Sourced by bench/run.sh and bench/deflate.sh: a writable, set-up copy of the
# wsbench harness, and a snapshot of this repository installed into it.
# Sets: repo, home (the work folder, current directory afterwards), commit.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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
# puts its repo first on sys.path. The venv gets Presence's dependencies, its
# speedups, and wsaccel (the other C unmasking path, measured as presence-wsaccel).
commit=$(git -C "$repo" describe --always --dirty)
snap=$(git -C "$repo" stash create); snap=${snap:-HEAD}
rm -rf presence-src && mkdir presence-src && git -C "$repo" archive "$snap" | tar -x -C presence-src
[ -x venvs/presence/bin/python ] || python3 -m venv venvs/presence
venvs/presence/bin/pip install -q "./presence-src[speedups,embedded-redis]" "wsaccel>=0.6.6"

# check_ports CONF: run_all.sh would skip a busy port's server silently.
check_ports() {
  local port
  for port in $(grep -v '^#' "$1" | cut -d'|' -f2); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
      echo "port $port is in use; free it first" >&2; exit 1
    fi
  done
}
