"""A real balancer in front of two nodes: Debian's HAProxy running the
configuration docs/cluster.md gives (tests/helpers/haproxy.py reads it from
the page; only its ``"${...}"`` placeholders are filled in, by HAProxy from
the environment), in front of two twistd nodes sharing one real Redis.
Clients connect through it from their own loopback addresses (127.0.0.7,
...), so that the address each node records can only be the one the PROXY
protocol header carried: HAProxy itself connects from 127.0.0.1."""

import asyncio
import collections
import signal

import websockets
from twisted.internet import defer

from presence.client import PresenceClient

from .helpers.haproxy import HAProxy, documented_config
from .helpers.processes import NodeProcessesTestCase, free_port, start_node_process, wait_for_port
from .helpers.sse import SSEStream, post
from .helpers.waiting import run, wait

KEY = "haproxy-test-key"

#: The health check's interval in these tests (the page's default is 2 s):
#: with ``fall 2``, a dead node is out after about 0.4 s.
CHECK_INTER = "200ms"


class BehindHAProxyTestCase(NodeProcessesTestCase):
    """Two nodes, each with its client port as a ``haproxy:`` endpoint,
    ``--ticket-ip strict`` (a ticket issued for one address is refused from
    any other), and HAProxy in front of both."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.nodes = []
        for _ in range(2):
            self.nodes.append((yield run(self.start_node())))
        self.clients_port, self.api_port = free_port(), free_port()
        variables = {"PRESENCE_HAPROXY_MAXCONN": 1000, "PRESENCE_CHECK_INTER": CHECK_INTER,
                     "PRESENCE_CLIENTS_BIND": "127.0.0.1:%d" % self.clients_port,
                     "PRESENCE_API_BIND": "127.0.0.1:%d" % self.api_port}
        for number, node in enumerate(self.nodes, 1):
            variables.update({"PRESENCE_NODE%d_HOST" % number: "127.0.0.1",
                              "PRESENCE_NODE%d_PORT" % number: node["proxied"],
                              "PRESENCE_NODE%d_API_PORT" % number: node["api_port"]})
        self.haproxy = HAProxy(self, documented_config(), variables)
        yield run(self.haproxy.start([self.clients_port, self.api_port]))
        # Backends call the API through HAProxy too (its http frontend).
        self.api = PresenceClient("http://127.0.0.1:%d" % self.api_port, KEY, timeout=5.0,
                                  pool=self.pool)

    async def start_node(self):
        direct, proxied, api_port = free_port(), free_port(), free_port()
        process = await start_node_process(
            self, self.redis_url, direct, api_port,
            ["--listen", "haproxy:tcp:%d:interface=127.0.0.1" % proxied, "--ticket-ip", "strict",
             "--trusted-proxy", "127.0.0.1", "--close-timeout", "2"],
            {"PRESENCE_API_KEY": KEY})
        await wait_for_port(proxied, process)
        return {"process": process, "direct": direct, "proxied": proxied, "api_port": api_port}

    async def connect(self, account, source="127.0.0.1", port=None):
        """A WebSocket session of ``account`` from ``source``, through HAProxy
        (or straight to ``port``), with a ticket issued for ``source``."""
        issued = await wait(self.api.issue_ticket(account, ip=source))
        ws = await websockets.connect(
            "ws://127.0.0.1:%d/?ticket=%s" % (port or self.clients_port, issued["ticket"]),
            local_addr=(source, 0), open_timeout=5)
        self.addCleanup(lambda: run(ws.close()))
        welcome = await ws.recv()
        self.assertIn('"welcome"', welcome)
        return ws

    async def sessions_of(self, account):
        return (await wait(self.api.account_presence(account)))["sessions"]


class ClientAddressTests(BehindHAProxyTestCase):
    def test_the_clients_address_arrives_and_its_ticket_is_redeemed(self):
        async def scenario():
            await self.connect("ann", source="127.0.0.7")
            [session] = await self.sessions_of("ann")
            self.assertEqual(session["ip"], "127.0.0.7")
            # The comparison is real: the same kind of ticket, issued for
            # another address, is refused from this one.
            issued = await wait(self.api.issue_ticket("bob", ip="127.0.0.8"))
            with self.assertRaises(websockets.InvalidStatus) as refused:
                await websockets.connect(
                    "ws://127.0.0.1:%d/?ticket=%s" % (self.clients_port, issued["ticket"]),
                    local_addr=("127.0.0.7", 0), open_timeout=5)
            self.assertEqual(refused.exception.response.status_code, 403)

        return run(scenario())


    def test_api_callers_are_told_apart_through_the_http_frontend(self):
        """``option forwardfor`` and ``--trusted-proxy``: a caller that keeps
        sending a wrong key is throttled by its own address, on every node,
        and a backend calling from another address is not (without them,
        every caller would be HAProxy's 127.0.0.1, throttled together)."""
        async def scenario():
            answers = []
            # 30 failures a node (presence/wire/auththrottle.py), round robin
            # over two nodes: the 61st and 62nd are refused on both.
            for _ in range(62):
                answers.append(await api_call(self.api_port, "127.0.0.40", "wrong-key"))
            self.assertEqual([status for status, _ in answers[-2:]], [429, 429])
            self.assertIn(b"too many invalid credentials from 127.0.0.40", answers[-1][1])
            for _ in range(2):
                status, body = await api_call(self.api_port, "127.0.0.41", KEY)
                self.assertEqual(status, 200, body)

        return run(scenario())


async def api_call(port, source, key):
    """``GET /presence`` with ``key`` from ``source``: ``(status, body)``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(b"GET /presence HTTP/1.1\r\nHost: presence\r\nAuthorization: Bearer "
                     + key.encode() + b"\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class SpreadTests(BehindHAProxyTestCase):
    def test_leastconn_puts_held_sessions_on_both_nodes_evenly(self):
        async def scenario():
            for number in range(4):
                await self.connect("spread", source="127.0.0.%d" % (10 + number))
            sessions = await self.sessions_of("spread")
            self.assertEqual(sorted(session["ip"] for session in sessions),
                             ["127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"])
            by_node = collections.Counter(session["node"] for session in sessions)
            self.assertEqual(sorted(by_node.values()), [2, 2], by_node)

        return run(scenario())


class NodeDeathTests(BehindHAProxyTestCase):
    def test_a_killed_node_is_taken_out_and_every_new_connection_lands_on_the_other(self):
        doomed, survivor = self.nodes

        async def scenario():
            # The survivor's node id: a session made on it directly (its
            # plain port; the ticket is issued for loopback).
            await self.connect("marker", port=survivor["direct"])
            [marker] = await self.sessions_of("marker")
            doomed["process"].send_signal(signal.SIGKILL)
            doomed["process"].communicate(timeout=10)
            await self.haproxy.reported("presence_nodes/node1 is DOWN")
            for number in range(6):
                await self.connect("after", source="127.0.0.%d" % (20 + number))
            sessions = await self.sessions_of("after")
            self.assertEqual(len(sessions), 6)
            self.assertEqual({session["node"] for session in sessions}, {marker["node"]})

        return run(scenario())


class SSEStickinessTests(BehindHAProxyTestCase):
    def test_an_sse_stream_and_its_posts_meet_on_one_node(self):
        """Least connections would send each POST to the node without the
        stream (it holds fewer connections), which answers 404: the page's
        SSE backend hashes on the client's address instead."""
        async def scenario():
            source = ("127.0.0.9", 0)
            issued = await wait(self.api.issue_ticket("sse-user", channels=["room:*"],
                                                      ip="127.0.0.9"))
            stream = await SSEStream.open(self.clients_port, "/sse?ticket=" + issued["ticket"],
                                          local_addr=source)
            self.addCleanup(stream.close)
            self.assertTrue(stream.status.startswith(b"HTTP/1.1 200"), stream.status)
            welcome = await stream.next_of("welcome")
            for number in range(4):
                channel = "room:%d" % number
                status, body = await post(self.clients_port, welcome["send"],
                                          {"type": "subscribe", "channel": channel},
                                          local_addr=source)
                self.assertTrue(status.startswith(b"HTTP/1.1 202"), (status, body))
                subscribed = await stream.next_of("subscribed")
                self.assertEqual(subscribed["channel"], channel)
            [session] = await self.sessions_of("sse-user")
            self.assertEqual((session["ip"], session["protocol"]), ("127.0.0.9", "sse"))

        return run(scenario())
