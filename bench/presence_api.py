"""Issue 16's costs, in one run on one node (bench/node_process.py: a twistd
node pinned to CPU 0 with its embedded Redis; this process on CPU 1):

1. ``GET /channels/C`` (the counts) and ``GET /channels/C/members?limit=100``
   (a page) on channels of 1,000 and of 100,000 members, sequential
   requests, each on a new connection: median and p99 latency; and the two
   HLENs the counts are, asked of Redis from this process. The members
   are written straight into Redis in the layout the node's scripts keep
   (``P members:C``, ``P accounts:C``, each account's session entry with its
   info, ``P channels``; docs/redis.md), pipelined: 100,000 real sessions
   are not needed for what is measured, two HLENs.
2. Whisper fan-out beside a publish of the same size: 1,000 firepresence
   sessions subscribed to one channel; one more session whispers ``--count``
   messages of 100 bytes of data (``--max-whisper-rate 0``), then the same
   number of messages of the same data are PUBLISHed into the channel's Redis
   channel (what ``POST /publish`` does), pipelined. Each variant: seconds
   until every subscriber got every message, deliveries per second, and the
   node's CPU seconds in that window.

usage: python bench/presence_api.py [--members 100000] [--clients 1000] [--count 500]
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from node_process import API_KEY, NodeProcess, RedisClient  # noqa: E402

FIREPRESENCE = (b"OPTIONS / HTTP/1.1\r\nHost: bench\r\nUpgrade: firepresence\r\n"
                b"X-Auth-Token: %s\r\n\r\n")
PREFIX = "presence:"


async def fill(redis, channel, members):
    """``members`` sessions of as many accounts in ``channel``, as the
    node's scripts would have written them, pipelined a thousand at a time."""
    reader, writer = redis.streams
    for start in range(0, members, 1000):
        words = []
        for n in range(start, min(members, start + 1000)):
            sid, account = "bench-%d" % n, "user-%d" % n
            entry = json.dumps({"node": "bench", "ip": "127.0.0.1", "protocol": "websocket",
                                "since": 0, "info": {"name": "User %d" % n}})
            words += [("HSET", PREFIX + "members:" + channel, sid, account),
                      ("HSET", PREFIX + "accounts:" + channel, account, 1),
                      ("HSET", PREFIX + "account:" + account, sid, entry)]
        writer.write(b"".join(
            b"*%d\r\n" % len(command) + b"".join(
                b"$%d\r\n%s\r\n" % (len(str(w).encode()), str(w).encode()) for w in command)
            for command in words))
        for _ in words:
            await redis._reply(reader)
    await redis.command("SADD", PREFIX + "channels", channel)


async def get(node, path):
    """A backend's GET (the API key), on a new connection: its body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.api_port)
    writer.write(b"GET %s HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                 % (path.encode(), API_KEY.encode()))
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n")[0]:
        raise SystemExit("GET %s: %r" % (path, answer[:300]))
    return body


async def latencies(node, path, requests):
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = await get(node, path)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
            "answer_bytes": len(answer)}


async def session(node, ticket, channel):
    reader, writer = await asyncio.open_connection("127.0.0.1", node.client_port, limit=2 ** 20)
    writer.write(FIREPRESENCE % ticket.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        raise SystemExit("refused: %r" % head)
    await reader.readline()  # the welcome
    writer.write(json.dumps({"type": "subscribe", "channel": channel}).encode() + b"\n")
    while b'"subscribed"' not in await reader.readline():
        pass
    return reader, writer


async def receive(reader, kind, count):
    got = 0
    while got < count:
        line = await reader.readline()
        if not line:
            raise SystemExit("a session was closed after %d of %d" % (got, count))
        if kind in line:
            got += 1


async def fan_out(node, redis, subscribers, sender, channel, count, variant):
    data = {"x": "y" * 92}  # 100 bytes of JSON
    cpu = node.cpu_seconds()
    started = time.perf_counter()
    waiting = [asyncio.ensure_future(receive(reader, b'"%s"' % variant.encode(), count))
               for reader, _ in subscribers]
    if variant == "whisper":
        line = json.dumps({"type": "whisper", "channel": channel, "data": data}).encode() + b"\n"
        sender[1].write(line * count)
    else:
        message = json.dumps({"type": "message", "channel": channel, "data": data})
        reader, writer = redis.streams
        command = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(PREFIX + "channel:" + channel), (PREFIX + "channel:" + channel).encode(),
            len(message), message.encode())
        writer.write(command * count)
        for _ in range(count):
            await redis._reply(reader)
    await asyncio.gather(*waiting)
    elapsed = time.perf_counter() - started
    return {"variant": variant, "messages": count, "subscribers": len(subscribers),
            "seconds": round(elapsed, 3),
            "deliveries_per_s": round(count * len(subscribers) / elapsed),
            "node_cpu_s": round(node.cpu_seconds() - cpu, 2)}


async def main(arguments):
    node = NodeProcess(["--max-whisper-rate", "0", "--max-message-rate", "0", "--ticket-ttl", "600",
                        "--max-outgoing-buffer", str(64 * 2 ** 20)])
    await node.start()
    try:
        redis = RedisClient(node.redis_path)
        await redis.command("PING")
        for members in (1000, arguments.members):
            channel = "bench:size-%d" % members
            await fill(redis, channel, members)
            counts = await latencies(node, "/channels/" + channel, arguments.requests)
            page = await latencies(node, "/channels/%s/members?limit=100" % channel,
                                   arguments.requests // 4)
            times = []
            for _ in range(2000):
                started = time.perf_counter()
                await redis.command("HLEN", PREFIX + "members:" + channel)
                await redis.command("HLEN", PREFIX + "accounts:" + channel)
                times.append((time.perf_counter() - started) * 1e6)
            hlen = round(statistics.median(times), 1)
            page_answer = json.loads(await get(node, "/channels/%s/members?limit=100" % channel))
            print(json.dumps({"members": members, "answer": json.loads(
                await get(node, "/channels/" + channel)),
                "page_members": len(page_answer["members"]),
                "two HLENs from this process, median us": hlen,
                "GET /channels/C": counts, "GET /channels/C/members?limit=100": page}),
                flush=True)
        channel = "bench:room"
        tickets = [(await node.http.post("/tickets", {
            "account": "bench-%d" % n, "channels": ["bench:*"], "whisper": ["bench:*"],
            "info": {"name": "Bench %d" % n}}))["ticket"] for n in range(arguments.clients + 1)]
        sessions = [await session(node, ticket, channel) for ticket in tickets]
        sender, subscribers = sessions[0], sessions[1:]
        # The sender does not hear its own whispers, but does the publishes:
        # read them away.
        drain = asyncio.ensure_future(receive(sender[0], b"\x00", 10 ** 12))
        drain.add_done_callback(lambda done: done.cancelled() or done.exception())
        for variant in arguments.variants.split(","):
            print(json.dumps(await fan_out(node, redis, subscribers, sender, channel,
                                           arguments.count, variant)), flush=True)
        drain.cancel()
    finally:
        node.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--variants", default="whisper,message,whisper,message")
    asyncio.run(main(parser.parse_args()))
