"""Soak: thousands of sessions on one node for minutes, with publishes,
heartbeats and churn; does memory plateau, is anything lost or duplicated?

usage: python bench/soak.py [--sessions 10000] [--duration 600] [--channels 100]
                            [--publish-rate 20] [--churn 10] [--heartbeat 10]
                            [--firepresence 0.2] [--report docs/soak.md]

Starts ``twistd presence`` (its own embedded Redis, pinned to CPU 0), then,
from this process (CPU 1): issues a ticket per session through the HTTP API
(the backend's path), opens the sessions (WebSocket, and a share over
firepresence), subscribes each to one of ``--channels`` channels, and for
``--duration`` seconds publishes ``--publish-rate`` messages per second
straight into Redis (each to one channel, with a sequence number per
channel) while replacing ``--churn`` sessions per second with new ones.
The server pings every session every ``--heartbeat`` seconds; clients
answer (the websockets library and the firepresence clients here do).

Every ten seconds it samples the server's memory (VmRSS) and CPU. At the
end it checks every subscription's sequence numbers (a gap is a lost
message, a repeat a duplicate; a session open at the end must have the
last message of its channel), reads the heartbeat round-trip histogram from
/metrics, and writes a report (Markdown table and an SVG memory chart).
"""

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from node_process import HTTP, NodeProcess  # noqa: E402


class Subscription:
    __slots__ = ("channel", "seqs", "duplicates", "gaps", "closed_at")

    def __init__(self, channel):
        self.channel = channel
        self.seqs = []
        self.duplicates = 0
        self.gaps = 0
        self.closed_at = None

    def received(self, seq):
        if self.seqs:
            last = self.seqs[-1]
            if seq <= last:
                self.duplicates += 1
                return
            if seq != last + 1:
                self.gaps += seq - last - 1
        self.seqs.append(seq)


class Soak:
    def __init__(self, args):
        self.args = args
        self.subscriptions = []
        self.open = []
        self.published = {}
        self.samples = []
        self.errors = 0
        self.opened = 0
        self.closed = 0
        self.refused = 0

    async def start_server(self):
        args = self.args
        self.node = NodeProcess(["--heartbeat", str(args.heartbeat),
                                 "--heartbeat-timeout", str(args.heartbeat)])
        await self.node.start()
        self.server = self.node.process
        self.client_port, self.redis_path, self.http = (
            self.node.client_port, self.node.redis_path, self.node.http)
        self.admin_port = self.node.admin_port

    async def ticket(self, account, channel):
        return await self.node.ticket(account, [channel])

    async def session(self, number):
        channel = "soak-%d" % (number % self.args.channels)
        subscription = Subscription(channel)
        try:
            ticket = await self.ticket("user-%d" % number, channel)
            if random.random() < self.args.firepresence:
                client = await self.firepresence(ticket, channel, subscription)
            else:
                client = await self.websocket(ticket, channel, subscription)
        except Exception as error:
            self.refused += 1
            if self.refused <= 3:
                print("session %d refused: %r" % (number, error), flush=True)
            return
        self.subscriptions.append(subscription)
        self.open.append(client)
        self.opened += 1

    async def websocket(self, ticket, channel, subscription):
        ws = await websockets.connect("ws://127.0.0.1:%d/?ticket=%s" % (self.client_port, ticket),
                                      compression=None, max_queue=None, ping_interval=None)
        await ws.recv()  # welcome
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        while json.loads(await ws.recv()).get("type") != "subscribed":
            pass

        async def documents():
            async for text in ws:
                yield json.loads(text)

        task = asyncio.ensure_future(self.follow(documents(), subscription))
        return ("ws", ws, task, subscription)

    async def follow(self, documents, subscription, pong=None):
        """Count every channel message a client receives (``documents``, its
        decoded messages, until its connection ends), answering the
        server's pings with ``pong`` (firepresence; a WebSocket client's
        library answers them itself)."""
        try:
            async for message in documents:
                kind = message.get("type")
                if kind == "message":
                    subscription.received(message["data"]["seq"])
                elif kind == "ping" and pong is not None:
                    pong(message)
        except (websockets.ConnectionClosed, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            self.errors += 1
        subscription.closed_at = time.monotonic()

    async def firepresence(self, ticket, channel, subscription):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.client_port,
                                                       limit=1 << 20)
        writer.write(b"OPTIONS / HTTP/1.1\r\nHost: soak\r\nUpgrade: firepresence\r\n"
                     b"X-Auth-Token: " + ticket.encode() + b"\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        await reader.readline()  # welcome
        writer.write(json.dumps({"type": "subscribe", "channel": channel}).encode() + b"\n")
        while json.loads(await reader.readline()).get("type") != "subscribed":
            pass

        async def documents():
            while True:
                line = await reader.readline()
                if not line:
                    return
                yield json.loads(line)

        def pong(ping):
            writer.write(json.dumps({"type": "pong", "id": ping.get("id")}).encode() + b"\n")

        task = asyncio.ensure_future(self.follow(documents(), subscription, pong))
        return ("fp", writer, task, subscription)

    async def close(self, client):
        kind, handle, task, subscription = client
        if kind == "ws":
            await handle.close()
        else:
            handle.write(b'{"type":"close","code":1000}\n')
            handle.close()
        await asyncio.wait([task], timeout=10)
        self.closed += 1

    async def publisher(self, until):
        args = self.args
        reader, writer = await asyncio.open_unix_connection(self.redis_path)
        interval = 1.0 / args.publish_rate
        next_at = time.monotonic()
        sent = 0
        while time.monotonic() < until:
            channel = "soak-%d" % random.randrange(args.channels)
            seq = self.published.get(channel, 0) + 1
            self.published[channel] = seq
            payload = json.dumps({"type": "message", "channel": channel,
                                  "data": {"seq": seq, "at": time.time()}})
            command = [b"PUBLISH", ("presence:channel:" + channel).encode(), payload.encode()]
            writer.write(b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in command))
            await reader.readline()
            sent += 1
            next_at += interval
            await asyncio.sleep(max(0, next_at - time.monotonic()))
        writer.close()
        return sent

    async def churner(self, until, numbers):
        while time.monotonic() < until:
            for _ in range(self.args.churn):
                if self.open:
                    client = self.open.pop(random.randrange(len(self.open)))
                    asyncio.ensure_future(self.close(client))
                asyncio.ensure_future(self.session(next(numbers)))
            await asyncio.sleep(1)

    def sample(self, started):
        rss, cpu = self.node.rss_kib(), self.node.cpu_seconds()
        self.samples.append({"t": round(time.monotonic() - started, 1), "rss_kib": rss,
                             "cpu_s": cpu, "sessions": len(self.open)})

    async def sampler(self, started, until):
        while time.monotonic() < until:
            self.sample(started)
            await asyncio.sleep(10)

    async def run(self):
        args = self.args
        await self.start_server()
        counter = iter(range(10 ** 9))
        print("opening %d sessions..." % args.sessions, flush=True)
        opening = time.monotonic()
        semaphore = asyncio.Semaphore(100)

        async def one():
            async with semaphore:
                await self.session(next(counter))
        await asyncio.gather(*(one() for _ in range(args.sessions)))
        print("opened %d in %.0f s (%d refused)" % (self.opened, time.monotonic() - opening,
                                                   self.refused), flush=True)
        started = time.monotonic()
        until = started + args.duration
        self.sample(started)
        sampler = asyncio.ensure_future(self.sampler(started, until))
        churn = asyncio.ensure_future(self.churner(until, counter))
        sent = await self.publisher(until)
        await churn
        await sampler
        await asyncio.sleep(5)  # let the last deliveries arrive
        self.sample(started)
        metrics = await HTTP(self.admin_port).get("/metrics")
        for client in list(self.open):
            await self.close(client)
        self.server.terminate()
        self.server.wait(timeout=60)
        return self.report(sent, metrics)

    def report(self, sent, metrics):
        args = self.args
        lost = sum(s.gaps for s in self.subscriptions)
        duplicated = sum(s.duplicates for s in self.subscriptions)
        delivered = sum(len(s.seqs) for s in self.subscriptions)
        # A session still open at the end must have its channel's last message.
        missing_tail = sum(1 for s in self.subscriptions
                           if s.closed_at is None and s.seqs
                           and s.seqs[-1] != self.published.get(s.channel))
        buckets = [(float(b), int(c)) for b, c in re.findall(
            r'presence_heartbeat_rtt_seconds_bucket\{le="([0-9.]+)"\} (\d+)', metrics)]
        count = int(re.search(r"presence_heartbeat_rtt_seconds_count (\d+)", metrics).group(1))
        total = float(re.search(r"presence_heartbeat_rtt_seconds_sum (\S+)", metrics).group(1))

        def percentile(p):
            for bound, cumulative in buckets:
                if cumulative >= p * count:
                    return bound
            return float("inf")
        rss = [s["rss_kib"] for s in self.samples]
        cpu = self.samples[-1]["cpu_s"] - self.samples[0]["cpu_s"]
        elapsed = self.samples[-1]["t"] - self.samples[0]["t"]
        half = len(rss) // 2
        result = {
            "sessions": args.sessions, "duration_s": args.duration, "channels": args.channels,
            "publish_rate": args.publish_rate, "churn_per_s": args.churn,
            "firepresence_share": args.firepresence, "heartbeat_s": args.heartbeat,
            "sessions_opened": self.opened, "sessions_closed": self.closed,
            "refused": self.refused, "client_errors": self.errors,
            "published": sent, "delivered": delivered, "lost": lost, "duplicated": duplicated,
            "open_sessions_missing_the_last_message": missing_tail,
            "heartbeats_answered": count, "rtt_mean_ms": round(1000 * total / count, 2)
            if count else None,
            "rtt_p50_ms_at_most": 1000 * percentile(0.5),
            "rtt_p99_ms_at_most": 1000 * percentile(0.99),
            "rss_start_mib": round(rss[0] / 1024, 1), "rss_end_mib": round(rss[-1] / 1024, 1),
            "rss_max_mib": round(max(rss) / 1024, 1),
            "rss_second_half_growth_mib": round((rss[-1] - rss[half]) / 1024, 1),
            "server_cpu_percent": round(100 * cpu / elapsed, 1) if elapsed else None,
            "samples": self.samples,
        }
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
        if args.report:
            write_report(args.report, result)
        return result


def svg_chart(samples, width=640, height=240):
    """Memory (VmRSS) over time, as an SVG file's text."""
    top = max(s["rss_kib"] for s in samples) / 1024 * 1.1
    end = max(s["t"] for s in samples) or 1
    points = " ".join("%.1f,%.1f" % (40 + (width - 50) * s["t"] / end,
                                     height - 30 - (height - 50) * (s["rss_kib"] / 1024) / top)
                      for s in samples)
    return ("""<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d"
 font-family="sans-serif" font-size="11">
<rect width="100%%" height="100%%" fill="white"/>
<line x1="40" y1="%d" x2="%d" y2="%d" stroke="#888"/>
<line x1="40" y1="20" x2="40" y2="%d" stroke="#888"/>
<text x="42" y="16">server memory (VmRSS, MiB); top = %.0f</text>
<text x="%d" y="%d" text-anchor="end">%.0f s</text><text x="40" y="%d">0</text>
<polyline fill="none" stroke="#2459d6" stroke-width="2" points="%s"/>
</svg>
""" % (width, height, height - 30, width - 10, height - 30, height - 30, top, width - 10,
           height - 12, end, height - 12, points))


def write_report(path, result):
    chart = os.path.splitext(path)[0] + "-memory.svg"
    with open(chart, "w") as f:
        f.write(svg_chart(result["samples"]))
    rows = "\n".join("| %s | %s |" % (k.replace("_", " "), v) for k, v in result.items()
                     if k != "samples")
    samples = "\n".join("| %s | %.1f | %d |" % (s["t"], s["rss_kib"] / 1024, s["sessions"])
                        for s in result["samples"])
    with open(path, "w") as f:
        f.write("""# Soak

`%s` on %s (2 cores: the node on CPU 0, the clients and the publisher on
CPU 1), commit `%s`.

| measure | value |
| --- | --- |
%s

![memory over time](%s)

| t (s) | VmRSS (MiB) | open sessions |
| --- | --- | --- |
%s
""" % (" ".join(["python", "bench/soak.py"] + sys.argv[1:]), time.strftime("%Y-%m-%d"),
           subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip(),
           rows, os.path.basename(chart), samples))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--publish-rate", type=float, default=20)
    parser.add_argument("--churn", type=int, default=10)
    parser.add_argument("--heartbeat", type=float, default=10)
    parser.add_argument("--firepresence", type=float, default=0.2)
    parser.add_argument("--report", default=None)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    asyncio.run(Soak(args).run())


if __name__ == "__main__":
    main()
