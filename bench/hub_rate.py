"""Publishes per second a node sustains to 1,000 subscribers over 10 channels,
with channel history off and on, in one run.

usage: python bench/hub_rate.py [--wsload PATH] [--count 20000] [--clients 1000]
                                [--variants off,on] [--repeat 1] [--history 1000,300]

Starts bench/hub_server.py with ``--channels 10`` (its own embedded Redis)
pinned to CPU 0, holds 1,000 idle WebSocket connections open with wsload
(CPU 1; each session is subscribed to one of 10 channels, 100 per channel),
publishes ``--count`` messages round-robin to the 10 channels straight into
Redis (PUBLISH, as a backend would, pipelined), and measures the time until
the node has delivered every one of them to its 100 subscribers. Prints one
JSON line a run: publishes per second and deliveries per second.

The variant ``on`` starts the node with ``--history SIZE,TTL`` on the bench
channels and publishes as the node does for a history channel: through
scripts.PUBLISH_RECORDED (EVALSHA, pipelined the same way), which takes the
offset, stores the data (XADD, capped) and PUBLISHes the message with its
offset. The variants alternate, each run on a fresh node and Redis. After
the last ``on`` run, 1,000 publications of 100 bytes of data are stored in
one more channel and its keys' MEMORY USAGE printed: Redis's memory per
1,000 kept publications.
"""

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from presence.redis import scripts  # noqa: E402


def resp(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def reply(sock):
    """One RESP reply, read whole (enough for the few this script reads)."""
    data = b""
    while not data.endswith(b"\r\n"):
        data += sock.recv(65536)
    return data


def cpu_seconds(pids):
    """User and system CPU seconds the processes ``pids`` used so far."""
    total = 0
    for pid in pids:
        with open("/proc/%d/stat" % pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid):
    found = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as listed:
            found += [int(child) for child in listed.read().split()]
    return found


def publishes(count, history):
    """The commands publishing ``count`` messages round-robin to bench-0..9:
    PUBLISH, or (``history``: (size, ttl, script sha)) the history script."""
    data = json.dumps({"text": "x" * 40})
    epoch = secrets.token_hex(6)
    for n in range(count):
        channel = "bench-%d" % (n % 10)
        if history is None:
            yield resp("PUBLISH", "presence:channel:" + channel, json.dumps(
                {"type": "message", "channel": channel, "data": {"text": "x" * 40}}))
        else:
            size, ttl, sha = history
            yield resp("EVALSHA", sha, 0, 300, "presence:channel:" + channel,
                       '{"type":"message","channel":"%s","offset":' % channel, "}",
                       "presence:history:" + channel, "presence:history-epoch:" + channel,
                       size, ttl, epoch, data)


def memory_per_thousand(redis, size, ttl, sha):
    """Redis's bytes for 1,000 kept publications of 100 bytes of data (the
    stream and the epoch key of one channel, MEMORY USAGE counting every
    node of the stream)."""
    data = json.dumps({"text": "y" * 88})
    assert len(data) == 100
    redis.sendall(b"".join(resp(
        "EVALSHA", sha, 0, 300, "presence:channel:bench-mem",
        '{"type":"message","channel":"bench-mem","offset":', "}",
        "presence:history:bench-mem", "presence:history-epoch:bench-mem", max(size, 1000), ttl,
        "e", data) for _ in range(1000)))
    total = 0
    redis.settimeout(10)
    buffered = b""
    while buffered.count(b"\r\n") < 1000 * 6:  # each answer: *4 :1 :N $1 e :OFFSET
        buffered += redis.recv(1 << 20)
    for key in ("presence:history:bench-mem", "presence:history-epoch:bench-mem"):
        redis.sendall(resp("MEMORY", "USAGE", key, "SAMPLES", "0"))
        total += int(reply(redis)[1:])
    return total


def measure(args, history):
    """One run: a fresh node (and Redis), ``args.count`` publishes; with
    ``history``, on history channels."""
    command = ["taskset", "-c", "0", sys.executable, os.path.join(HERE, "hub_server.py"),
               str(args.port), "--channels", "10", "--report", "0.05"]
    if history:
        command += ["--history", args.history]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    load = None
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
            if not line:
                raise SystemExit("the server stopped")
            if "sessions %d" % args.clients in line:
                break
        base = int(server.stdout.readline().split()[1])
        redis = socket.socket(socket.AF_UNIX)
        redis.connect(redis_path)
        sha = None
        size, ttl = (int(part) for part in args.history.split(","))
        if history:
            redis.sendall(resp("SCRIPT", "LOAD", scripts.PUBLISH_RECORDED))
            sha = reply(redis).split(b"\r\n")[1].decode()
        commands = list(publishes(args.count, (size, ttl, sha) if history else None))
        # The node and its Redis share CPU 0: their CPU time is what a
        # publish costs, whatever else the machine is doing.
        redis_pids = children(server.pid)
        cpu_before = cpu_seconds([server.pid]), cpu_seconds(redis_pids)
        started = time.monotonic()
        for offset in range(0, args.count, 100):
            redis.sendall(b"".join(commands[offset:offset + 100]))
        target = base + args.count * (args.clients // 10)
        published = time.monotonic()
        while delivered < target:
            line = server.stdout.readline()
            if not line:
                raise SystemExit("the server stopped")
            delivered = int(line.split()[1])
        elapsed = time.monotonic() - started
        node_cpu = cpu_seconds([server.pid]) - cpu_before[0]
        redis_cpu = cpu_seconds(redis_pids) - cpu_before[1]
        result = {
            "history": args.history if history else "off",
            "publishes": args.count, "subscribers": args.clients, "channels": 10,
            "seconds": round(elapsed, 3), "publish_seconds": round(published - started, 3),
            "publishes_per_s": round(args.count / elapsed),
            "deliveries_per_s": round(args.count * (args.clients // 10) / elapsed),
            "node_cpu_s": round(node_cpu, 2), "redis_cpu_s": round(redis_cpu, 2),
            "publishes_per_cpu_s": round(args.count / (node_cpu + redis_cpu))}
        if history:
            # Drain the script's answers first, then measure on a quiet Redis.
            redis.close()
            redis = socket.socket(socket.AF_UNIX)
            redis.connect(redis_path)
            result["bytes_per_1000_publications_of_100_bytes"] = memory_per_thousand(
                redis, size, ttl, sha)
        redis.close()
        return result
    finally:
        if load is not None:
            load.kill()
            load.wait()
        server.terminate()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wsload", default=os.path.join(HERE, "..", "..", "wsbench", "bin",
                                                         "wsload"))
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--port", type=int, default=9451)
    parser.add_argument("--variants", default="off,on")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--history", default="1000,300",
                        help="SIZE,TTL of the bench channels' history in the variant on")
    args = parser.parse_args()
    for _ in range(args.repeat):
        for variant in args.variants.split(","):
            print(json.dumps(measure(args, variant == "on")), flush=True)


if __name__ == "__main__":
    main()
