"""Presence under a reconnect storm and under churn (the "stays true under
load" issue's H-2 and H-3), on a real node and a real Redis.

usage: python bench/storm.py storm [--sessions 1000] [--channels 100] [--rounds 1]
       python bench/storm.py churn [--sessions 50] [--rate 90] [--duration 30]

``storm``: ``--sessions`` firepresence sessions each send ``--channels``
subscribes at once (what a reconnect storm does). Measured: the time until
every session has every ``subscribed`` answer, and until Redis lists every
member of every channel; the round trip of a ping on another session,
every 50 ms throughout (its maximum must stay under 200 ms); the node's
memory (VmRSS) before, at its peak, after, and once every session closed
(with ``--rounds N``, once after each of N storms on the same node: what it
keeps between storms); and its CPU.

``churn``: ``--sessions`` sessions alternate subscribe and unsubscribe on
random channels at ``--rate`` messages a second in all, for ``--duration``
seconds; then they close and the node is stopped (SIGTERM). Counted: the
member fields Redis still lists (each one a ghost: a closed session shown
as present), and online accounts. Redis is the benchmark's own, so that
what the node left behind can be looked at after it is gone.

The node runs pinned to CPU 0; the load here, and Redis (the benchmark's
own), on CPU 1; prints one JSON line.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from node_process import NodeProcess, RedisProcess  # noqa: E402

FIREPRESENCE = (b"OPTIONS / HTTP/1.1\r\nHost: bench\r\nUpgrade: firepresence\r\n"
                b"X-Auth-Token: %s\r\n\r\n")


class Session:
    """A firepresence client: counts what it receives by type."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.counts = {}
        self.pongs = {}
        self.task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, node, account):
        ticket = await node.ticket(account, ["room:*"])
        reader, writer = await asyncio.open_connection("127.0.0.1", node.client_port,
                                                       limit=1 << 22)
        writer.write(FIREPRESENCE % ticket.encode())
        await reader.readuntil(b"\r\n\r\n")
        await reader.readline()  # welcome
        return cls(reader, writer)

    async def _read(self):
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    return
                message = json.loads(line)
                kind = message.get("type")
                self.counts[kind] = self.counts.get(kind, 0) + 1
                if kind == "pong":
                    self.pongs[message.get("id")] = time.monotonic()
                elif kind == "ping":  # the server's heartbeat
                    self.send({"type": "pong", "id": message.get("id")})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    def send(self, *messages):
        self.writer.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    async def close(self):
        self.writer.close()
        await self.task


async def until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise SystemExit("%s not reached within %s s" % (what, timeout))
        await asyncio.sleep(0.05)


PINGER = r"""
import json, socket, sys, time
port, ticket, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(b"OPTIONS / HTTP/1.1\r\nHost: bench\r\nUpgrade: firepresence\r\n"
             b"X-Auth-Token: " + ticket.encode() + b"\r\n\r\n")
stream = sock.makefile("rb")
while stream.readline() != b"\r\n":
    pass
stream.readline()  # welcome
end = time.monotonic() + seconds
number = 0
while time.monotonic() < end:
    number += 1
    sent = time.monotonic()
    sock.sendall(json.dumps({"type": "ping", "id": number}).encode() + b"\n")
    while json.loads(stream.readline()).get("type") != "pong":
        pass
    print(time.monotonic() - sent, flush=True)
    time.sleep(0.05)
"""


async def pinger(node, seconds):
    """A ping every 50 ms on a session of its own, from a process of its own
    (so that the load's own loop does not delay reading the pongs): its
    round trips, in seconds."""
    ticket = await node.ticket("pinger", [])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PINGER, str(node.client_port), ticket, str(seconds),
        stdout=asyncio.subprocess.PIPE)
    output, _ = await process.communicate()
    return [float(line) for line in output.split()]


async def storm(args):
    # Redis of its own, beside the load (CPU 1), not beside the node: sharing
    # the node's core, Redis's busy moments would be counted as the node's.
    redis = RedisProcess()
    node = NodeProcess(["--max-channels-per-session", str(args.channels), "--heartbeat", "30"],
                       redis=redis)
    await node.start()
    try:
        result = None
        closed = []
        for _ in range(args.rounds):
            result = await storm_round(args, node, redis)
            closed.append(result["rss_mib"]["closed"])
        # What the node keeps once each round's sessions are gone: the
        # allocator's high-water mark, reused by the next round (L-10).
        result["rss_mib"]["closed"] = closed
        return result
    finally:
        node.stop()
        redis.stop()


async def storm_round(args, node, redis):
    sessions = [await Session.open(node, "user-%d" % n) for n in range(args.sessions)]
    rss_before, cpu_before = node.rss_kib(), node.cpu_seconds()
    stop, peak = asyncio.Event(), [rss_before]
    ping = asyncio.ensure_future(pinger(node, args.ping_seconds))

    async def sample():
        while not stop.is_set():
            peak.append(node.rss_kib())
            await asyncio.sleep(0.2)
    sampler = asyncio.ensure_future(sample())
    await asyncio.sleep(0.5)
    started = time.monotonic()
    for session in sessions:
        session.send(*({"type": "subscribe", "channel": "room:%d" % c}
                       for c in range(args.channels)))

    async def answered():
        return all(s.counts.get("subscribed", 0) >= args.channels for s in sessions)

    async def members():
        counts = [await redis.command("HLEN", "presence:members:room:%d" % c)
                  for c in range(args.channels)]
        return all(count == args.sessions for count in counts)
    await until(answered, 300, "every subscribed answer")
    subscribed = time.monotonic() - started
    await until(members, 300, "every member in Redis")
    in_redis = time.monotonic() - started
    rtts = await ping
    stop.set()
    await sampler
    result = {
        "scenario": "storm", "sessions": args.sessions, "channels": args.channels,
        "subscribed_s": round(subscribed, 2), "members_in_redis_s": round(in_redis, 2),
        "ping_rtt_ms": {"median": round(sorted(rtts)[len(rtts) // 2] * 1000, 1),
                        "slowest": [round(r * 1000) for r in sorted(rtts)[-8:]],
                        "max": round(max(rtts) * 1000, 1), "pings": len(rtts)},
        "rss_mib": {"before": round(rss_before / 1024, 1),
                    "peak": round(max(peak) / 1024, 1),
                    "after": round(node.rss_kib() / 1024, 1)},
        "server_cpu_s": round(node.cpu_seconds() - cpu_before, 1),
        "errors": sum(s.counts.get("error", 0) for s in sessions)}
    for session in sessions:
        await session.close()

    async def all_gone():
        return await redis.command("SCARD", "presence:online") == 0
    await until(all_gone, 120, "every session gone from presence")
    await asyncio.sleep(2)
    result["rss_mib"]["closed"] = round(node.rss_kib() / 1024, 1)
    return result


async def churn(args):
    redis = RedisProcess()
    node = NodeProcess(["--heartbeat", "30"], redis=redis)
    await node.start()
    try:
        sessions = [await Session.open(node, "user-%d" % n) for n in range(args.sessions)]
        joined = [None] * len(sessions)
        sent = 0
        started = time.monotonic()
        interval = 1.0 / args.rate
        while time.monotonic() - started < args.duration:
            number = random.randrange(len(sessions))
            if joined[number] is None:
                joined[number] = "room:%d" % random.randrange(20)
                sessions[number].send({"type": "subscribe", "channel": joined[number]})
            else:
                sessions[number].send({"type": "unsubscribe", "channel": joined[number]})
                joined[number] = None
            sent += 1
            await asyncio.sleep(interval)
        for session in sessions:
            await session.close()
        await asyncio.sleep(1)
        node.stop()  # SIGTERM, waited for
        members = 0
        for key in await redis.command("KEYS", "presence:members:*"):
            members += await redis.command("HLEN", key.decode())
        result = {"scenario": "churn", "sessions": args.sessions, "messages": sent,
                  "seconds": args.duration, "ghost_members": members,
                  "online_accounts": await redis.command("SCARD", "presence:online"),
                  "node_keys_left": len(await redis.command("KEYS", "presence:node:*"))}
        return result
    finally:
        node.stop()
        redis.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["storm", "churn"])
    parser.add_argument("--sessions", type=int)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1,
                        help="storms one after another on the same node")
    parser.add_argument("--rate", type=float, default=90)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--ping-seconds", type=float, default=20,
                        help="storm: how long the pinger pings (from before the storm)")
    args = parser.parse_args()
    if args.sessions is None:
        args.sessions = 1000 if args.scenario == "storm" else 50
    os.sched_setaffinity(0, {1})
    print(json.dumps(asyncio.run((storm if args.scenario == "storm" else churn)(args))))


if __name__ == "__main__":
    main()
