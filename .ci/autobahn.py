#!/usr/bin/env python3
"""Run the Autobahn TestSuite against bench/echo_server.py and fail unless
every case is OK or INFORMATIONAL and every closing handshake is OK.

Runs every case (permessage-deflate's sections 12 and 13 included) against
the echo server with --deflate and the fastest unmasking path (websockets'
C apply_mask), then the framing sections (1-10) once with each other path
the server can choose (PRESENCE_UNMASK=wsaccel, PRESENCE_UNMASK=pure), so
that none of them can regress unnoticed; the pure pass reads through
Twisted's own dispatch (PRESENCE_LEAN_READS=0), the others through the lean
reads.

usage: .ci/autobahn.py [--shared ../shared] [--cases '*'] [--framing-cases '1.*,2.*,...']
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMING_CASES = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"
ACCEPTED = {"OK", "INFORMATIONAL"}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("echo server exited with %s" % process.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("echo server did not listen on %d" % port)


def run(shared, cases, label, env_extra, flags=()):
    python = os.path.join(ROOT, ".venv", "bin", "python")
    port = free_port()
    env = dict(os.environ, **env_extra)
    server = subprocess.Popen(
        [python, os.path.join(ROOT, "bench", "echo_server.py"), str(port)] + list(flags), env=env)
    try:
        wait_for_port(port, server)
        outdir = tempfile.mkdtemp(prefix="autobahn-%s-" % label)
        runner = os.path.join(shared, "autobahn", "run-fuzzingclient.sh")
        status = subprocess.call([runner, "ws://127.0.0.1:%d/" % port, cases, outdir])
    finally:
        server.terminate()
        server.wait(timeout=30)
    with open(os.path.join(outdir, "index.json")) as f:
        report = json.load(f)
    bad = []
    total = 0
    for agent_cases in report.values():
        for case, result in sorted(agent_cases.items()):
            total += 1
            if result["behavior"] not in ACCEPTED or result["behaviorClose"] not in ACCEPTED:
                bad.append("%s: %s (close %s)"
                           % (case, result["behavior"], result["behaviorClose"]))
    print("[%s] %d cases, %d not OK/INFORMATIONAL" % (label, total, len(bad)))
    for line in bad:
        print("  " + line)
    return status == 0 and not bad and total > 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    parser.add_argument("--cases", default="*")
    parser.add_argument("--framing-cases", default=FRAMING_CASES)
    args = parser.parse_args()
    ok = run(args.shared, args.cases, "deflate-websockets", {"PRESENCE_UNMASK": "websockets"},
             ["--deflate"])
    # The pure pass also takes Twisted's own read dispatch instead of the
    # lean reads the others use (presence/net/twisted_internals.py), so that
    # both paths meet every framing case.
    for path, lean in (("wsaccel", "1"), ("pure", "0")):
        ok = run(args.shared, args.framing_cases, path,
                 {"PRESENCE_UNMASK": path, "PRESENCE_LEAN_READS": lean}) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
