"""The server on real loopback sockets, against real clients: the
``websockets`` library, and raw sockets for clients that misbehave."""

import asyncio
import os
import socket

import websockets
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint

from presence.app.service import PresenceService
from presence.net.listening import NODELAY_MARK, NoDelayEndpoint
from presence.websocket.handshake import HandshakeConfig

from .helpers.framing import client_frame, random_key, upgrade_request
from .helpers.servers import ServerTestCase, read_until_eof
from .helpers.waiting import run, until


class EchoTests(ServerTestCase):
    def test_text_binary_and_large_fragmented_messages_round_trip(self):
        big = os.urandom(3 * 1024 * 1024)

        async def client():
            async with websockets.connect(self.url, max_size=None, compression=None) as ws:
                await ws.send("héllo")
                self.assertEqual(await ws.recv(), "héllo")
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
                await ws.send(["frag", "ment", "ed ✓"])  # one message, three frames
                self.assertEqual(await ws.recv(), "fragmented ✓")
                await ws.ping(b"app ping")
        return run(client())

    def test_clean_close_from_the_client_is_recorded(self):
        async def client():
            ws = await websockets.connect(self.url, compression=None)
            await ws.close(4001, "done here")
            self.assertEqual(ws.close_code, 4001)

        d = run(client())
        d.addCallback(lambda _: self.wait_for(lambda: self.app.closed))

        def check(_):
            record, = self.app.closed
            self.assertEqual((record.code, record.reason, record.initiated_by, record.clean),
                             (4001, "done here", "client", True))
        return d.addCallback(check)

    def test_close_from_the_server_reaches_the_client_with_code_and_reason(self):
        async def client():
            async with websockets.connect(self.url, compression=None) as ws:
                await until(lambda: self.app.opened)
                self.app.opened[0].close(4002, "kicked")
                with self.assertRaises(websockets.ConnectionClosed):
                    await ws.recv()
                self.assertEqual((ws.close_code, ws.close_reason), (4002, "kicked"))

        d = run(client())
        d.addCallback(lambda _: self.wait_for(lambda: self.app.closed))

        def check(_):
            record, = self.app.closed
            self.assertEqual((record.code, record.initiated_by, record.clean),
                             (4002, "server", True))
        return d.addCallback(check)

    def test_broadcast_reaches_every_client_once(self):
        async def client():
            clients = [await websockets.connect(self.url, compression=None) for _ in range(20)]
            try:
                await clients[3].send("BCAST:hello all")
                for ws in clients:
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 5), "BCAST:hello all")
            finally:
                for ws in clients:
                    await ws.close()
        return run(client())


class IsolationTests(ServerTestCase):
    def test_a_client_sending_garbage_does_not_disturb_another(self):
        async def good_client(stop):
            count = 0
            async with websockets.connect(self.url, compression=None) as ws:
                while not stop.is_set() or count < 50:
                    await ws.send("message %d" % count)
                    self.assertEqual(await ws.recv(), "message %d" % count)
                    count += 1
            return count

        async def scenario():
            stop = asyncio.Event()
            good = asyncio.ensure_future(good_client(stop))
            # Garbage after a valid handshake: failed with 1002, then closed.
            after_handshake = await self.raw(upgrade_request(key=random_key())
                                             + b"\x00\xff" * 5000)
            head, _, frames = after_handshake.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 101 "))
            self.assertEqual((frames[0], frames[2:4]), (0x88, b"\x03\xea"))  # Close, 1002
            # Garbage instead of a handshake: 400 with a body, then closed.
            refused = await self.raw(b"\x00\x01garbage\r\n\r\n")
            self.assertTrue(refused.startswith(b"HTTP/1.1 400 Bad Request\r\n"))
            self.assertTrue(refused.endswith(b"control character in request head\n"))
            malformed = await self.raw(b"HELLO THERE\r\n\r\n")
            self.assertTrue(malformed.endswith(b"malformed request line\n"))
            stop.set()
            self.assertGreaterEqual(await good, 50)

        return run(scenario())

    def test_invalid_utf8_fails_only_the_sender_with_1007(self):
        async def scenario():
            async with websockets.connect(self.url, compression=None) as ws:
                reply = await self.raw(upgrade_request(key=random_key())
                                       + client_frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce"
                                                      b"\xbc\xce\xb5\xed\xa0\x80"))
                frames = reply.partition(b"\r\n\r\n")[2]
                self.assertEqual((frames[0], frames[2:4]), (0x88, b"\x03\xef"))  # Close, 1007
                await ws.send("unaffected")
                self.assertEqual(await ws.recv(), "unaffected")
        return run(scenario())


class RefusalTests(ServerTestCase):
    handshake = HandshakeConfig(origins=["https://app.example"], subprotocols=["v2", "v1"])

    def test_refusals_answer_on_the_wire(self):
        async def scenario():
            old = await self.raw(upgrade_request().replace(b"Version: 13", b"Version: 8"))
            self.assertTrue(old.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"))
            self.assertIn(b"\r\nSec-WebSocket-Version: 13\r\n", old)
            foreign = await self.raw(upgrade_request(extra=["Origin: https://evil.example"]))
            self.assertTrue(foreign.startswith(b"HTTP/1.1 403 Forbidden\r\n"))
            self.assertTrue(foreign.endswith(b"origin https://evil.example is not allowed\n"))
        d = run(scenario())

        def counted(_):
            refused = self.server.stats.handshakes_refused
            self.assertEqual((refused["unsupported_version"], refused["origin"]), (1, 1))
        return d.addCallback(counted)

    def test_subprotocol_is_the_servers_preference_among_the_offers(self):
        async def scenario():
            async with websockets.connect(self.url, subprotocols=["v1", "v2"],
                                          origin="https://app.example") as ws:
                self.assertEqual(ws.subprotocol, "v2")
        return run(scenario())


class ShutdownTests(ServerTestCase):
    def test_stopping_the_service_closes_sessions_with_going_away(self):
        service = PresenceService(self.server, [])
        service.startService()

        async def scenario():
            async with websockets.connect(self.url, compression=None) as ws:
                await until(lambda: self.app.opened)
                stopped = asyncio.ensure_future(service.stopService().asFuture(
                    asyncio.get_event_loop()))
                with self.assertRaises(websockets.ConnectionClosed):
                    await ws.recv()
                self.assertEqual(ws.close_code, 1001)
                await stopped
            self.assertEqual(self.server.sessions, {})
        return run(scenario())


class NoDelayTests(ServerTestCase):
    def nodelay_of_session(self, url):
        async def scenario():
            async with websockets.connect(url, compression=None):
                await until(lambda: self.server.sessions)
                session, = self.server.sessions.values()
                return session.transport.socket.getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY)
        return run(scenario())

    def test_connections_set_nodelay_themselves_on_a_plain_port(self):
        return self.nodelay_of_session(self.url).addCallback(self.assertTrue)

    @defer.inlineCallbacks
    def test_connections_inherit_nodelay_from_a_port_listened_through_the_endpoint(self):
        endpoint = NoDelayEndpoint(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
        port = yield endpoint.listen(self.factory)
        self.addCleanup(port.stopListening)
        self.assertTrue(getattr(port, NODELAY_MARK))
        self.assertTrue(port.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        nodelay = yield self.nodelay_of_session("ws://127.0.0.1:%d/" % port.getHost().port)
        self.assertTrue(nodelay)


class TcpCloseTests(ServerTestCase):
    async def open_raw(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port.getHost().port)
        writer.write(upgrade_request(key=random_key()))
        await reader.readuntil(b"\r\n\r\n")
        return reader, writer

    def test_after_a_clean_closing_handshake_the_server_closes_tcp_outright(self):
        async def scenario():
            reader, writer = await self.open_raw()
            writer.write(client_frame(0x8, b"\x03\xe8"))
            self.assertEqual(await asyncio.wait_for(read_until_eof(reader), 5), b"\x88\x02\x03\xe8")
            # The server's FIN came after it let the connection go entirely.
            self.assertEqual(self.server.sessions, {})
            writer.close()
        return run(scenario())

    def test_after_a_protocol_error_the_server_half_closes_and_drains(self):
        async def scenario():
            reader, writer = await self.open_raw()
            writer.write(b"\x81\x05hello")  # unmasked
            frames = await asyncio.wait_for(read_until_eof(reader), 5)
            self.assertEqual(frames[2:4], b"\x03\xea")
            # FIN sent, but the server still reads (and discards) what the
            # client sends, so no reset can destroy the frames it sent.
            session, = self.server.sessions.values()
            self.assertTrue(session.transport.connected)
            self.assertTrue(session.transport._writeDisconnected)
            writer.write(b"late bytes" * 1000)
            await writer.drain()
            writer.close()
            await until(lambda: not self.server.sessions)
            self.assertEqual(self.app.closed[0].code, 1002)
        return run(scenario())
