"""WebSocket and firepresence on one port, over plain TCP, TLS and the PROXY
protocol, with raw sockets and the websockets library as clients."""

import asyncio
import ipaddress
import json
import ssl
import struct
import tempfile

import websockets
from twisted.internet import defer, endpoints, reactor

from presence.net.dispatch import ListenerFactory
from presence.net.listening import NoDelayEndpoint
from presence.net.server import Server
from presence.net.settings import ServerSettings

from .helpers.framing import FIREPRESENCE, FIREPRESENCE_ACCEPTED, random_key, upgrade_request
from .helpers.servers import Echo, ServerTestCase, read_until_eof, self_signed_certificate
from .helpers.waiting import run, until


class Lines:
    """A raw firepresence client."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port, head=FIREPRESENCE, ssl_context=None, prefix=b""):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ssl_context)
        writer.write(prefix + head)
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert response == FIREPRESENCE_ACCEPTED, response
        return cls(reader, writer)

    def send(self, data):
        self.writer.write(data)

    async def line(self):
        return json.loads(await asyncio.wait_for(self.reader.readline(), 5))

    def close(self):
        self.writer.close()


class OnePortTests(ServerTestCase):
    def setUp(self):
        super().setUp()
        self.server.settings.max_message_size = 256
        self.port_number = self.port.getHost().port

    def session(self):
        session, = self.server.sessions.values()
        return session

    def test_both_handshakes_byte_for_byte(self):
        async def scenario():
            websocket = await self.raw_head(upgrade_request())
            self.assertEqual(websocket, (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                b"\r\n"))
            firepresence = await self.raw_head(FIREPRESENCE)
            self.assertEqual(firepresence, FIREPRESENCE_ACCEPTED)
        return run(scenario())

    async def raw_head(self, request):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port_number)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        return head

    def test_refusals_byte_for_byte(self):
        async def scenario():
            plain = await self.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(plain, (
                b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket, firepresence/1.0\r\n"
                b"Connection: Upgrade\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: 119\r\nConnection: close\r\n\r\n"
                b"this port speaks WebSocket, firepresence and SSE: ask for one with Upgrade, "
            b"or GET /sse with Accept: text/event-stream\n"))
            version = await self.raw(FIREPRESENCE.replace(b"firepresence\r\n",
                                                          b"firepresence/2.0\r\n"))
            self.assertEqual(version, (
                b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: firepresence/1.0\r\n"
                b"Connection: Upgrade\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: 61\r\nConnection: close\r\n\r\n"
                b"unsupported firepresence version 2.0; this server speaks 1.0\n"))
            malformed = await self.raw(b"OPTIONS / HTTP/1.1\r\nUpgrade firepresence\r\n\r\n")
            self.assertTrue(malformed.startswith(b"HTTP/1.1 400 Bad Request\r\n"))
            self.assertTrue(malformed.endswith(b"\r\n\r\nheader field without a colon\n"))
        return run(scenario())

    def test_json_lines_both_ways_split_and_batched(self):
        async def scenario():
            client = await Lines.connect(self.port_number)
            await until(lambda: self.server.sessions)
            session = self.session()
            # One line split across two segments: the second part is sent
            # only once the server has read the first.
            client.send(b'{"type":"greeting","text":"he')
            await client.writer.drain()
            await until(lambda: session.bytes_in)
            client.send(b'llo\\nworld"}\n')
            self.assertEqual(await client.line(), {"type": "greeting", "text": "hello\nworld"})
            # Several lines in one segment.
            client.send(b'{"n":1}\n{"n":2}\n{"n":3}\n')
            self.assertEqual([await client.line() for _ in range(3)],
                             [{"n": 1}, {"n": 2}, {"n": 3}])
            client.close()
        return run(scenario())

    def test_oversized_and_malformed_lines_get_error_lines(self):
        async def scenario():
            client = await Lines.connect(self.port_number)
            client.send(b'{"x":"' + b"y" * 1000 + b'"}\nnot json\n{"still":"here"}\n')
            self.assertEqual(await client.line(),
                             {"type": "error", "reason": "line longer than 256 bytes"})
            self.assertEqual(await client.line(), {"type": "error", "reason": "line is not JSON"})
            self.assertEqual(await client.line(), {"still": "here"})
            client.close()
        return run(scenario())

    def test_firepresence_and_websocket_clients_share_the_port_and_broadcasts(self):
        async def scenario():
            lines = await Lines.connect(self.port_number)
            async with websockets.connect(self.url, compression=None) as ws:
                await until(lambda: len(self.server.sessions) >= 2)
                kinds = sorted(s.protocol_name for s in self.server.sessions.values())
                self.assertEqual(kinds, ["firepresence", "websocket"])
                await ws.send("BCAST:" + json.dumps({"type": "message", "data": "to all"}))
                expected = json.dumps({"type": "message", "data": "to all"})
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), "BCAST:" + expected)
                line = await asyncio.wait_for(lines.reader.readline(), 5)
                self.assertEqual(line, b"BCAST:" + expected.encode() + b"\n")
                lines.send(b'{"type":"close","code":1000,"reason":"done"}\n')
                self.assertEqual(await lines.line(), {"type": "close", "code": 1000, "reason": ""})
                self.assertEqual(await lines.reader.read(), b"")
            await until(lambda: len(self.app.closed) >= 2)
            self.assertEqual(sorted((r.code, r.reason, r.clean) for r in self.app.closed),
                             [(1000, "", True), (1000, "done", True)])
        return run(scenario())

    def test_a_direct_client_is_its_tcp_peer(self):
        async def scenario():
            client = await Lines.connect(self.port_number)
            await until(lambda: self.server.sessions)
            self.assertEqual((self.session().client_ip, self.session().proxy), ("127.0.0.1", None))
            client.close()
        return run(scenario())


class TrustedProxyTests(ServerTestCase):
    def setUp(self):
        super().setUp()
        self.server.settings.trusted_proxies = type(self.server.settings.trusted_proxies)(
            ["127.0.0.0/8"])

    def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(self):
        async def scenario():
            async with websockets.connect(
                    self.url, additional_headers={"X-Forwarded-For": "198.51.100.4, 127.0.0.2"}):
                await until(lambda: self.server.sessions)
                session, = self.server.sessions.values()
                self.assertEqual((session.client_ip, session.proxy), ("198.51.100.4", "127.0.0.1"))
        return run(scenario())


class UntrustedPeerTests(ServerTestCase):
    def setUp(self):
        super().setUp()
        self.server.settings.trusted_proxies = type(self.server.settings.trusted_proxies)(
            ["10.0.0.0/8"])

    def test_a_spoofed_x_forwarded_for_is_ignored(self):
        async def scenario():
            client = await Lines.connect(self.port.getHost().port, head=FIREPRESENCE.replace(
                b"\r\n\r\n", b"\r\nX-Forwarded-For: 198.51.100.4\r\n\r\n"))
            await until(lambda: self.server.sessions)
            session, = self.server.sessions.values()
            self.assertEqual((session.client_ip, session.proxy), ("127.0.0.1", None))
            client.close()
        return run(scenario())


class ListenedTestCase(ServerTestCase):
    """A node listening through an endpoint string, as --listen does."""

    description = None

    @defer.inlineCallbacks
    def setUp(self):
        self.app = Echo()
        self.folder = tempfile.mkdtemp(prefix="presence-tls-")
        self.key, self.certificate = self_signed_certificate(self.folder)
        settings = ServerSettings(max_message_size=1024 * 1024)
        self.server = self.app.node = Server(self.app, settings, reactor)
        self.factory = ListenerFactory(self.server)
        description = self.description % {"key": self.key, "cert": self.certificate}
        self.port = yield NoDelayEndpoint(
            endpoints.serverFromString(reactor, description)).listen(self.factory)
        self.addCleanup(self._stop)


class TLSTests(ListenedTestCase):
    description = "ssl:0:interface=127.0.0.1:privateKey=%(key)s:certKey=%(cert)s"

    def client_context(self):
        context = ssl.create_default_context(cafile=self.certificate)
        return context

    def test_wss_and_firepresence_over_tls_on_one_port(self):
        async def scenario():
            port = self.port.getHost().port
            lines = await Lines.connect(port, ssl_context=self.client_context())
            async with websockets.connect("wss://127.0.0.1:%d/" % port,
                                          ssl=self.client_context()) as ws:
                await ws.send("over tls")
                self.assertEqual(await ws.recv(), "over tls")
                lines.send(b'{"type":"over","tls":true}\n')
                self.assertEqual(await lines.line(), {"type": "over", "tls": True})
                kinds = sorted(s.protocol_name for s in self.server.sessions.values())
                self.assertEqual(kinds, ["firepresence", "websocket"])
                lines.send(b'{"type":"close","code":1000}\n')
                self.assertEqual((await lines.line())["type"], "close")
        return run(scenario())


def proxy_v2_header(source, source_port, destination, destination_port):
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
            + ipaddress.ip_address(source).packed + ipaddress.ip_address(destination).packed
            + struct.pack("!HH", source_port, destination_port))


class ProxyProtocolTests(ListenedTestCase):
    description = "haproxy:tcp:0:interface=127.0.0.1"

    async def client_ip_for(self, prefix):
        client = await Lines.connect(self.port.getHost().port, prefix=prefix)
        await until(lambda: self.server.sessions)
        session, = self.server.sessions.values()
        client.send(b'{"type":"hello"}\n')
        self.assertEqual(await client.line(), {"type": "hello"})
        client.close()
        await until(lambda: not self.server.sessions)
        return session.client_ip

    def test_proxy_protocol_v1_and_v2_name_the_client(self):
        async def scenario():
            v1 = await self.client_ip_for(b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 8080\r\n")
            self.assertEqual(v1, "198.51.100.7")
            v2 = await self.client_ip_for(proxy_v2_header("203.0.113.9", 40002, "127.0.0.1", 8080))
            self.assertEqual(v2, "203.0.113.9")
        return run(scenario())

    def test_a_proxy_header_naming_an_invalid_address_is_refused(self):
        async def scenario():
            for header in (b"PROXY TCP4 999.1.1.1 127.0.0.1 40001 8080\r\n",
                           b"PROXY TCP4 198.51.100.7 1.2.3 40001 8080\r\n",
                           b"PROXY TCP4 2001:db8::1 127.0.0.1 40001 8080\r\n"):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port.getHost().port)
                writer.write(header + upgrade_request(key=random_key()))
                answer = await asyncio.wait_for(read_until_eof(reader), 5)
                writer.close()
                self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer)
                self.assertTrue(answer.endswith(
                    b"the PROXY protocol header names an invalid address\n"), answer)
            self.assertFalse(self.server.sessions)
            self.assertEqual(self.server.stats.handshakes_refused["invalid_proxy_header"], 3)
        return run(scenario())

    def test_unfinished_heads_behind_the_proxy_protocol_count_for_their_client(self):
        async def scenario():
            self.server.settings.max_connections_per_ip = 2
            port = self.port.getHost().port
            header = b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 8080\r\n"
            held = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(header + b"GET / HTTP/1.1\r\n")
                held.append(writer)
            await until(lambda: self.server.connections_by_ip.get("198.51.100.7") == 2)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(header + b"GET / HTTP/1.1\r\n")
            answer = await asyncio.wait_for(read_until_eof(reader), 5)
            self.assertTrue(answer.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), answer)
            # Another client behind the same balancer is not this one.
            self.assertEqual(await self.client_ip_for(
                b"PROXY TCP4 198.51.100.8 127.0.0.1 40002 8080\r\n"), "198.51.100.8")
            self.assertNotIn("127.0.0.1", self.server.connections_by_ip)
            for writer in held + [writer]:
                writer.close()
            await until(lambda: not self.server.connections_by_ip)
        return run(scenario())

    def test_websocket_through_the_proxy_protocol(self):
        async def scenario():
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port.getHost().port)
            writer.write(b"PROXY TCP4 198.51.100.8 127.0.0.1 40003 8080\r\n"
                         + upgrade_request(key=random_key()))
            self.assertTrue((await reader.readuntil(b"\r\n\r\n")).startswith(
                b"HTTP/1.1 101 Switching Protocols\r\n"))
            session, = self.server.sessions.values()
            self.assertEqual(session.client_ip, "198.51.100.8")
            writer.close()
            await asyncio.wait_for(read_until_eof(reader), 5)
        return run(scenario())
