"""A reconnect storm after a node's restart, with resume tokens and with
tickets (issue 15, item 4): what coming back costs the backend, and how long
it takes.

usage: python bench/resume_storm.py [--sessions 1000] [--api-connections 8]

``--sessions`` firepresence sessions open with tickets and keep their
welcome's resume token; the node is stopped (SIGTERM: every session closed
with 1001) and started again on the same Redis; every session comes back at
once with ``X-Auth-Token: resume:TOKEN``. Then the node restarts again and
every session comes back the old way: a ticket from ``POST /tickets`` (the
backend's call, over ``--api-connections`` kept-alive connections), then its
connection. Measured for each storm: the time until every session has its
welcome, the backend's calls, and the node's CPU. The node runs pinned to
CPU 0; the load and the benchmark's own Redis on CPU 1; prints one JSON line.
"""

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from node_process import HTTP, NodeProcess, RedisProcess  # noqa: E402

FIREPRESENCE = (b"OPTIONS / HTTP/1.1\r\nHost: bench\r\nUpgrade: firepresence\r\n"
                b"X-Auth-Token: %s\r\n\r\n")


async def welcome(port, credential):
    """A firepresence session opened with ``credential`` (a ticket, or
    ``resume:TOKEN``): its writer and its welcome."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(FIREPRESENCE % credential.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        raise SystemExit("refused: %r" % head)
    return writer, json.loads(await reader.readline())


async def storm(node, credentials):
    """Every session at once; the seconds until every welcome, the welcomes."""
    started = time.perf_counter()
    opened = await asyncio.gather(*[credential(node) for credential in credentials])
    elapsed = time.perf_counter() - started
    for writer, _ in opened:
        writer.close()
    return elapsed, [answer for _, answer in opened]


#: The node's options: tickets issued one by one for thousands of sessions
#: must still be valid when the first storm uses them.
OPTIONS = ("--ticket-ttl", "600")


async def main(arguments):
    redis = RedisProcess()
    node = NodeProcess(OPTIONS, redis=redis)
    try:
        await node.start()
        tickets = [await node.ticket("user-%d" % n, ["room:*"]) for n in range(arguments.sessions)]
        _, welcomes = await storm(node, [
            (lambda node, ticket=ticket: welcome(node.client_port, ticket)) for ticket in tickets])
        result = {"sessions": arguments.sessions}

        node.stop()
        node = NodeProcess(OPTIONS, redis=redis)
        await node.start()
        cpu = node.cpu_seconds()
        elapsed, welcomes = await storm(node, [
            (lambda node, token=answer["resume"]: welcome(node.client_port, "resume:" + token))
            for answer in welcomes])
        result["resume"] = {"seconds": round(elapsed, 3), "backend_calls": 0,
                            "node_cpu_seconds": round(node.cpu_seconds() - cpu, 2),
                            "welcomed": len(welcomes)}

        node.stop()
        node = NodeProcess(OPTIONS, redis=redis)
        await node.start()
        apis = [HTTP(node.api_port) for _ in range(arguments.api_connections)]
        calls = []

        async def with_ticket(node, n):
            answer = await apis[n % len(apis)].post(
                "/tickets", {"account": "user-%d" % n, "channels": ["room:*"]})
            calls.append(n)
            return await welcome(node.client_port, answer["ticket"])
        cpu = node.cpu_seconds()
        elapsed, welcomes = await storm(node, [
            (lambda node, n=n: with_ticket(node, n)) for n in range(arguments.sessions)])
        result["tickets"] = {"seconds": round(elapsed, 3), "backend_calls": len(calls),
                             "node_cpu_seconds": round(node.cpu_seconds() - cpu, 2),
                             "welcomed": len(welcomes)}
        print(json.dumps(result))
    finally:
        node.stop()
        redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--api-connections", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
