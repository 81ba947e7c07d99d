"""SSE on real ports, beside WebSocket: plain TCP (the fast write path), TLS,
the PROXY protocol and a trusted HTTP proxy; the benchmark's echo handler
answers on the stream what is POSTed, and its broadcast reaches both
protocols' sessions alike."""

import asyncio
import json
import ssl
import tempfile

import websockets
from twisted.internet import defer, endpoints, reactor

from presence.net.dispatch import ListenerFactory
from presence.net.listening import NoDelayEndpoint
from presence.net.server import Server
from presence.net.settings import ServerSettings

from .helpers.servers import Echo, ServerTestCase, self_signed_certificate
from .helpers.sse import SSEStream, post
from .helpers.waiting import run, until


class PlainTCPTests(ServerTestCase):
    def test_posted_messages_are_echoed_on_the_stream_and_a_broadcast_reaches_both(self):
        async def scenario():
            port = self.port.getHost().port
            stream = await SSEStream.open(port, "/sse")
            self.addCleanup(stream.close)
            welcome = await stream.next_of("welcome")
            status, _ = await post(port, welcome["send"], [{"type": "one"}, {"type": "two"}])
            self.assertTrue(status.startswith(b"HTTP/1.1 202"))
            self.assertEqual([await stream.next_event() for _ in range(2)],
                             [("message", {"type": "one"}), ("message", {"type": "two"})])
            async with websockets.connect(self.url, compression=None) as ws:
                await until(lambda: len(self.server.sessions) >= 2)
                await ws.send("BCAST:" + json.dumps({"type": "message", "data": "to all"}))
                self.assertTrue((await ws.recv()).startswith("BCAST:"))
                # The echo handler's broadcast is its text as sent (not JSON):
                # the event's bytes show it.
                expected = b'data: BCAST:{"type": "message", "data": "to all"}\n\n'
                while expected not in stream._buffer:
                    await asyncio.wait_for(stream._more(), 5)
            await post(port, welcome["send"], {"type": "close", "code": 1000, "reason": "done"})
            await until(lambda: len(self.app.closed) >= 2)
            self.assertEqual(sorted((r.code, r.reason, r.clean) for r in self.app.closed),
                             [(1000, "", True), (1000, "done", True)])
        return run(scenario())


class ListenedTestCase(ServerTestCase):
    """A node listening through an endpoint string, as --listen does."""

    description = None

    @defer.inlineCallbacks
    def setUp(self):
        self.app = Echo()
        self.folder = tempfile.mkdtemp(prefix="presence-sse-")
        self.key, self.certificate = self_signed_certificate(self.folder)
        self.server = Server(self.app, ServerSettings(), reactor)
        self.factory = ListenerFactory(self.server)
        description = self.description % {"key": self.key, "cert": self.certificate}
        self.port = yield NoDelayEndpoint(
            endpoints.serverFromString(reactor, description)).listen(self.factory)
        self.addCleanup(self._stop)


class TLSTests(ListenedTestCase):
    description = "ssl:0:interface=127.0.0.1:privateKey=%(key)s:certKey=%(cert)s"

    def test_the_stream_and_its_posts_over_tls(self):
        async def scenario():
            port = self.port.getHost().port
            context = ssl.create_default_context(cafile=self.certificate)
            stream = await SSEStream.open(port, "/sse", ssl=context)
            self.addCleanup(stream.close)
            welcome = await stream.next_of("welcome")
            status, _ = await post(port, welcome["send"], {"type": "over", "tls": True},
                                   ssl=context)
            self.assertTrue(status.startswith(b"HTTP/1.1 202"))
            self.assertEqual(await stream.next_event(), ("message", {"type": "over", "tls": True}))
            session, = self.server.sessions.values()
            self.assertEqual(session.protocol_name, "sse")
        return run(scenario())


class ProxyProtocolTests(ListenedTestCase):
    description = "haproxy:tcp:0:interface=127.0.0.1"

    def test_the_stream_and_its_posts_are_their_clients_behind_the_proxy_protocol(self):
        async def scenario():
            port = self.port.getHost().port
            header = b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 8080\r\n"
            stream = await SSEStream.open(port, "/sse", prefix=header)
            self.addCleanup(stream.close)
            welcome = await stream.next_of("welcome")
            session, = self.server.sessions.values()
            self.assertEqual(session.client_ip, "198.51.100.7")
            status, _ = await post(port, welcome["send"], {"type": "hi"},
                                   prefix=b"PROXY TCP4 198.51.100.7 127.0.0.1 40002 8080\r\n")
            self.assertTrue(status.startswith(b"HTTP/1.1 202"))
            self.assertEqual(await stream.next_event(), ("message", {"type": "hi"}))
            self.assertEqual(self.server.connections_by_ip.get("198.51.100.7"), 1)
        return run(scenario())


class TrustedProxyTests(ServerTestCase):
    def setUp(self):
        super().setUp()
        self.server.settings.trusted_proxies = type(self.server.settings.trusted_proxies)(
            ["127.0.0.0/8"])

    def test_x_forwarded_for_from_a_trusted_proxy_names_the_streams_client(self):
        async def scenario():
            stream = await SSEStream.open(self.port.getHost().port, "/sse",
                                          headers=["X-Forwarded-For: 198.51.100.4"])
            self.addCleanup(stream.close)
            await stream.next_of("welcome")
            session, = self.server.sessions.values()
            self.assertEqual((session.client_ip, session.proxy), ("198.51.100.4", "127.0.0.1"))
        return run(scenario())
