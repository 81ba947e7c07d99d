"""Webhooks (issue 17): how fast a node delivers the event log to a local
receiver, and what webhooks cost the sessions' open and close rate.

usage: python bench/webhooks.py [--events 50000] [--sessions 2000] [--rounds 2]

1. **Delivery.** A node with ``--webhook`` to a receiver in this process
   (asyncio, keep-alive, answering 200 to each batch after parsing it and
   counting its events by id); ``--events`` entries are added to the event
   log as the scripts write them (a Lua loop, 5,000 a script), and the time
   from the first to the last event received gives events delivered per
   second.
2. **Sessions, webhooks on against off, in one run.** A node without
   webhooks and one with ``--webhook`` to the receiver, each on its own
   Redis; ``--sessions`` firepresence sessions
   (tickets issued beforehand, not timed) open (welcome) and close, 200 at
   a time, and the time until the event log holds their 2 x N online and
   offline events gives sessions per second; ``--rounds`` alternations (off,
   on, off, on, ...), the best of each kept. With webhooks on, the node
   also delivers those events meanwhile (the receiver's count is checked).

The nodes run pinned to CPU 0 (bench/node_process.py); the load, the
receiver and Redis on CPU 1. Prints one JSON line.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from node_process import NodeProcess, RedisClient, RedisProcess, free_port  # noqa: E402

SECRET = "bench-secret"
LOG = "presence:event-log"
FIREPRESENCE = (b"OPTIONS / HTTP/1.1\r\nHost: bench\r\nUpgrade: firepresence\r\n"
                b"X-Auth-Token: %s\r\n\r\n")
FILL = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 'name', 'online', 'data',
    '{"name":"online","account":"user-' .. i .. '","session":"s' .. i .. '","node":"bench"}')
end
return 1
"""


class Receiver:
    """A webhook receiver: every event's id, and the time each came."""

    def __init__(self):
        self.ids = set()
        self.received = 0
        self.requests = 0
        self.last_at = None

    async def serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = json.loads(await reader.readexactly(length))
                for event in body["events"]:
                    self.ids.add(event["id"])
                self.received += len(body["events"])
                self.requests += 1
                self.last_at = time.monotonic()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


async def xlen(redis):
    return int(await redis.command("XLEN", LOG))


async def until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise SystemExit("%s not reached within %s s" % (what, timeout))
        await asyncio.sleep(0.01)


async def delivery(receiver, url, events):
    redis = RedisProcess()
    node = NodeProcess(["--webhook", url, "--webhook-secret", SECRET], redis=redis)
    try:
        await node.start()
        client = RedisClient(redis.path)
        await until(lambda: _has_group(client), 30, "the webhook's group")
        before = receiver.received
        started = time.monotonic()
        for _ in range(events // 5000):
            await client.command("EVAL", FILL, 1, LOG, 5000)
        filled = time.monotonic() - started

        async def all_in():
            return receiver.received - before >= events
        await until(all_in, 300, "every event delivered")
        elapsed = receiver.last_at - started
        cpu = node.cpu_seconds()
        return {"events": events, "seconds": round(elapsed, 3),
                "events_per_second": round(events / elapsed),
                "log_filled_in_seconds": round(filled, 3), "node_cpu_seconds": round(cpu, 2),
                "requests": receiver.requests}
    finally:
        node.stop()
        redis.stop()


async def _has_group(client):
    try:
        return bool(await client.command("XINFO", "GROUPS", LOG))
    except Exception:
        return False


async def session(port, ticket):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(FIREPRESENCE % ticket.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        raise SystemExit("refused: %r" % head)
    await reader.readline()  # the welcome
    writer.close()


async def churn(options, sessions, receiver=None):
    """Sessions per second of a node with ``options``: open and close
    ``sessions``, until their events are all in the log."""
    redis = RedisProcess()
    # No --leave-delay: every offline at once (with it, the last ones wait
    # its 3 s, and the rate would be the delay's).
    node = NodeProcess(list(options) + ["--leave-delay", "0"], redis=redis)
    try:
        await node.start()
        client = RedisClient(redis.path)
        tickets = [await node.ticket("user-%d" % n, []) for n in range(sessions)]
        before = await xlen(client)
        delivered = receiver.received if receiver else 0
        cpu = node.cpu_seconds()
        started = time.monotonic()
        for at in range(0, sessions, 200):
            await asyncio.gather(*(session(node.client_port, ticket)
                                   for ticket in tickets[at:at + 200]))

        async def logged():
            return await xlen(client) - before >= 2 * sessions
        await until(logged, 120, "every online and offline in the log")
        elapsed = time.monotonic() - started
        result = {"sessions_per_second": round(sessions / elapsed),
                  "seconds": round(elapsed, 3),
                  "node_cpu_seconds": round(node.cpu_seconds() - cpu, 2)}
        if receiver is not None:
            async def sent():
                return receiver.received - delivered >= 2 * sessions
            await until(sent, 120, "every event delivered")
            result["delivered_within_seconds"] = round(time.monotonic() - started, 3)
        return result
    finally:
        node.stop()
        redis.stop()


async def main(arguments):
    receiver = Receiver()
    port = free_port()
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", port)
    url = "http://127.0.0.1:%d/hook" % port
    result = {"delivery": await delivery(receiver, url, arguments.events)}
    runs = {"off": [], "on": []}
    for _ in range(arguments.rounds):
        runs["off"].append(await churn([], arguments.sessions))
        runs["on"].append(await churn(["--webhook", url, "--webhook-secret", SECRET],
                                      arguments.sessions, receiver))
    best = {mode: max(found, key=lambda r: r["sessions_per_second"])
            for mode, found in runs.items()}
    result["sessions"] = {"count": arguments.sessions, "runs": runs, "best": best,
                          "on_over_off": round(best["on"]["sessions_per_second"]
                                               / best["off"]["sessions_per_second"], 3)}
    server.close()
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    os.sched_setaffinity(0, {1})
    asyncio.run(main(parser.parse_args()))
