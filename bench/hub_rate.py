"""Publishes per second a node sustains to 1,000 subscribers over 10 channels.

usage: python bench/hub_rate.py [--wsload PATH] [--count 20000] [--clients 1000]

Starts bench/hub_server.py with ``--channels 10`` (its own embedded Redis)
pinned to CPU 0, holds 1,000 idle WebSocket connections open with wsload
(CPU 1; each session is subscribed to one of 10 channels, 100 per channel),
publishes ``--count`` messages round-robin to the 10 channels straight into
Redis (PUBLISH, as a backend would, pipelined), and measures the time until
the node has delivered every one of them to its 100 subscribers. Prints one
JSON line: publishes per second and deliveries per second.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def resp(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wsload", default=os.path.join(HERE, "..", "..", "wsbench", "bin",
                                                         "wsload"))
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--port", type=int, default=9451)
    args = parser.parse_args()
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, os.path.join(HERE, "hub_server.py"),
         str(args.port), "--channels", "10", "--report", "0.05"],
        stdout=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        redis_path = first.split("redis: unix://")[1].split(")")[0]
        load = subprocess.Popen(
            ["taskset", "-c", "1", args.wsload, "idle", "ws://127.0.0.1:%d/" % args.port,
             "-c", str(args.clients), "-C", "200", "-H", "120", "-q", "-T", "150"],
            stdout=subprocess.PIPE, text=True)
        for line in load.stdout:
            if line.startswith("READY"):
                break
        delivered = 0
        # Wait until the joins have settled.
        while True:
            line = server.stdout.readline()
            if "sessions %d" % args.clients in line:
                break
        base = int(server.stdout.readline().split()[1])
        redis = socket.socket(socket.AF_UNIX)
        redis.connect(redis_path)
        payload = json.dumps({"type": "message", "channel": "bench-0",
                              "data": {"text": "x" * 40}})
        started = time.monotonic()
        for offset in range(0, args.count, 100):
            batch = b"".join(
                resp("PUBLISH", "presence:channel:bench-%d" % (n % 10),
                     payload.replace("bench-0", "bench-%d" % (n % 10)))
                for n in range(offset, min(offset + 100, args.count)))
            redis.sendall(batch)
        target = base + args.count * (args.clients // 10)
        published = time.monotonic()
        while delivered < target:
            line = server.stdout.readline()
            if not line:
                raise SystemExit("the server stopped")
            delivered = int(line.split()[1])
        elapsed = time.monotonic() - started
        print(json.dumps({
            "publishes": args.count, "subscribers": args.clients, "channels": 10,
            "seconds": round(elapsed, 3), "publish_seconds": round(published - started, 3),
            "publishes_per_s": round(args.count / elapsed),
            "deliveries_per_s": round(args.count * (args.clients // 10) / elapsed)}))
        load.kill()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
