"""Faults: TLS handshakes that stall, and an HTTP API flooded while the client
port keeps serving. (A Redis restart under load and a node killed under load
are in tests/test_cluster.py: OutageTests and PresenceTests.)

Timers run on a Clock the tests advance; the sockets are real."""

import asyncio
import ssl
import tempfile

import websockets
from twisted.internet import defer, endpoints, reactor
from twisted.internet.task import Clock
from twisted.web.server import Site

from presence.net.dispatch import ListenerFactory
from presence.net.listening import NoDelayEndpoint
from presence.net.server import Server
from presence.net.settings import ServerSettings

from .helpers.servers import Echo, ServerTestCase, read_until_eof, self_signed_certificate
from .helpers.waiting import run


async def dropped(reader):
    """Wait until the server drops the connection: an end of file, or a
    reset (an aborted connection with unread bytes is reset by the kernel)."""
    try:
        assert await read_until_eof(reader) == b""
    except ConnectionResetError:
        pass


class StalledTLSTests(ServerTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.app = Echo()
        self.clock = Clock()
        key, certificate = self_signed_certificate(tempfile.mkdtemp(prefix="presence-tls-"))
        self.certificate = certificate
        self.server = self.app.node = Server(self.app, ServerSettings(handshake_timeout=10.0),
                                         self.clock)
        self.factory = ListenerFactory(self.server)
        self.port = yield NoDelayEndpoint(endpoints.serverFromString(
            reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={certificate}")
        ).listen(self.factory)
        self.addCleanup(self._stop)

    def test_a_tls_handshake_that_stalls_is_dropped_at_the_handshake_timeout(self):
        async def scenario():
            port = self.port.getHost().port
            # One client sends nothing at all, one stops halfway through its
            # ClientHello; a third completes TLS and its request normally.
            silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
            half_reader, half = await asyncio.open_connection("127.0.0.1", port)
            half.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            await half.drain()
            context = ssl.create_default_context(cafile=self.certificate)
            async with websockets.connect(f"wss://127.0.0.1:{port}/", ssl=context) as ws:
                await ws.send("still served")
                self.assertEqual(await ws.recv(), "still served")
                self.clock.advance(10.5)  # the handshake timeout, swept every 0.5 s
                for reader in (silent_reader, half_reader):
                    await asyncio.wait_for(dropped(reader), 5)
                self.assertEqual(self.server.stats.handshakes_refused["handshake_timeout"], 2)
                # The established session was not affected.
                await ws.send("after")
                self.assertEqual(await ws.recv(), "after")
            silent.close()
            half.close()
        return run(scenario())


class FloodedAPITests(ServerTestCase):
    """The HTTP API and the client port share a reactor: flooding the API
    must not stop the sessions."""

    def setUp(self):
        super().setUp()
        from presence.web.api import PresenceAPI

        api = PresenceAPI(tickets=None, api_key="k")
        self.api_port = reactor.listenTCP(0, Site(api.resource()), interface="127.0.0.1")
        self.addCleanup(self.api_port.stopListening)

    def test_the_client_port_keeps_serving_while_the_api_is_flooded(self):
        async def flood(stop, counts):
            port = self.api_port.getHost().port
            while not stop.is_set():
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(b"POST /tickets HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                 b"Bearer wrong\r\nContent-Length: 2\r\n\r\n{}")
                    await reader.readuntil(b"\r\n\r\n")
                    writer.close()
                    counts["requests"] += 1
                except (ConnectionError, asyncio.IncompleteReadError):
                    counts["errors"] += 1

        async def slow_clients(count):
            # Connections that start a request and never finish it.
            writers = []
            for _ in range(count):
                _, writer = await asyncio.open_connection("127.0.0.1",
                                                          self.api_port.getHost().port)
                writer.write(b"POST /tickets HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 100000\r\n\r\n")
                writers.append(writer)
            return writers

        async def scenario():
            stop = asyncio.Event()
            counts = {"requests": 0, "errors": 0}
            held = await slow_clients(200)
            flooders = [asyncio.ensure_future(flood(stop, counts)) for _ in range(20)]
            try:
                async with websockets.connect(self.url, compression=None) as ws:
                    for number in range(200):
                        await ws.send(f"message {number}")
                        self.assertEqual(await asyncio.wait_for(ws.recv(), 5),
                                         f"message {number}")
            finally:
                stop.set()
                await asyncio.gather(*flooders)
                for writer in held:
                    writer.close()
            self.assertGreater(counts["requests"], 20)  # the flood really ran
        return run(scenario())
