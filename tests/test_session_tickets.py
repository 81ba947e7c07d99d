"""Sessions redeem tickets against a real Redis: in the WebSocket URL, in
firepresence's X-Auth-Token, or as a first auth message; refusals are HTTP
statuses at the handshake and close codes afterwards."""

import asyncio
import json

import websockets
from twisted.internet import defer, reactor

from presence.hub.tickets import TicketStore
from presence.redis.embedded import EmbeddedRedis
from presence.redis.engine import RedisEngine
from presence.redis.keys import PresenceKeys
from presence.redis.store import PresenceStore
from presence.websocket.frames import OP_CLOSE, OP_TEXT

from .helpers.framing import (
    FIREPRESENCE,
    FIREPRESENCE_ACCEPTED,
    client_frame,
    random_key,
    server_close_frame,
    upgrade_request,
)
from .helpers.servers import ServerTestCase
from .helpers.transports import Harness
from .helpers.waiting import run, wait


class AuthTestCase(ServerTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.redis = EmbeddedRedis(reactor)
        self.addCleanup(self.redis.stopService)
        url = yield self.redis.started()
        self.engine = RedisEngine(url, reactor, timeout=0.5)
        self.addCleanup(self.engine.disconnect)
        self.server.tickets = TicketStore(PresenceStore(self.engine, PresenceKeys()), reactor)

    async def ticket(self, account="user-1", **fields):
        issued = self.server.tickets.issue(account, fields.get("attributes", {"name": "Ada"}),
                                         fields.get("channels", ["room:*"]), fields.get("ip"))
        return await wait(issued)

    async def raw(self, data):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port.getHost().port)
        writer.write(data)
        try:
            return await asyncio.wait_for(reader.read(65536), 5)
        finally:
            writer.close()


class WebSocketTicketTests(AuthTestCase):
    def test_a_ticket_in_the_url_is_redeemed_before_the_answer_and_welcomed(self):
        async def scenario():
            ticket, _ = await self.ticket()
            async with websockets.connect(self.url + "?ticket=" + ticket) as ws:
                welcome = json.loads(await ws.recv())
                session, = self.server.sessions.values()
                self.assertEqual(welcome, {"type": "welcome", "session": session.id,
                                           "account": "user-1"})
                self.assertEqual((session.account, session.attributes, session.allowed_channels),
                                 ("user-1", {"name": "Ada"}, ("room:*",)))
                await ws.send("hello")
                self.assertEqual(await ws.recv(), "hello")
            self.assertEqual(self.app.opened, [session])
        return run(scenario())

    def test_a_used_ticket_is_refused_at_the_handshake_with_401(self):
        async def scenario():
            ticket, _ = await self.ticket()
            self.assertIsNotNone(await wait(self.server.tickets.redeem(ticket)))
            answer = await self.raw(upgrade_request(path="/?ticket=" + ticket,
                                                    key=random_key()))
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer)
            self.assertTrue(answer.endswith(b"\r\n\r\ninvalid, expired or already used ticket\n"))
            self.assertEqual(self.server.stats.handshakes_refused["ticket_invalid"], 1)
            self.assertEqual(self.app.opened, [])
        return run(scenario())

    def test_a_first_auth_message_authenticates_and_what_follows_waits_for_the_welcome(self):
        async def scenario():
            ticket, _ = await self.ticket("user-2")
            async with websockets.connect(self.url) as ws:
                # Pipelined: the messages after auth are kept until it succeeds.
                await ws.send(json.dumps({"type": "auth", "ticket": ticket}))
                await ws.send("first")
                await ws.send("second")
                welcome = json.loads(await ws.recv())
                self.assertEqual((welcome["type"], welcome["account"]), ("welcome", "user-2"))
                self.assertEqual([await ws.recv(), await ws.recv()], ["first", "second"])
        return run(scenario())

    def test_a_bad_auth_message_ticket_closes_with_4401(self):
        async def scenario():
            async with websockets.connect(self.url) as ws:
                await ws.send(json.dumps({"type": "auth", "ticket": "not-a-ticket"}))
                with self.assertRaises(websockets.ConnectionClosed):
                    await ws.recv()
                self.assertEqual((ws.close_code, ws.close_reason),
                                 (4401, "invalid, expired or already used ticket"))
        return run(scenario())

    def test_a_first_message_that_is_not_auth_closes_with_4401(self):
        async def scenario():
            async with websockets.connect(self.url) as ws:
                await ws.send(json.dumps({"type": "subscribe", "channel": "x"}))
                with self.assertRaises(websockets.ConnectionClosed):
                    await ws.recv()
                self.assertEqual((ws.close_code, ws.close_reason),
                                 (4401, "authentication required: send a ticket"))
            self.assertEqual(self.app.opened, [])
        return run(scenario())

    def test_an_auth_message_after_the_4401_is_not_redeemed(self):
        # The client has not read the 4401 yet when it tries another ticket:
        # the session is closing, and the ticket must stay unused.
        async def scenario():
            ticket, _ = await self.ticket("user-3")
            reader, writer = await asyncio.open_connection("127.0.0.1",
                                                          self.port.getHost().port)
            try:
                writer.write(upgrade_request(key=random_key()))
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
                writer.write(client_frame(OP_TEXT, json.dumps({"type": "auth",
                                                               "ticket": "not-a-ticket"})))
                closing = server_close_frame(4401, b"invalid, expired or already used ticket")
                self.assertEqual(await asyncio.wait_for(reader.readexactly(len(closing)), 5),
                                 closing)
                writer.write(client_frame(OP_TEXT, json.dumps({"type": "auth",
                                                               "ticket": ticket})))
                writer.write(client_frame(OP_CLOSE, closing[2:4]))
                self.assertEqual(await asyncio.wait_for(reader.read(), 5), b"")
            finally:
                writer.close()
            self.assertEqual(self.server.stats.auth_failures["invalid"], 1)
            found = await wait(self.server.tickets.redeem(ticket))
            self.assertEqual(found.account, "user-3")  # still unused
            self.assertEqual(self.app.opened, [])
        return run(scenario())

    def test_redis_down_refuses_the_handshake_with_503(self):
        async def scenario():
            await wait(self.redis.stop_process())
            answer = await self.raw(upgrade_request(path="/?ticket=whatever", key=random_key()))
            self.assertTrue(answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer)
            self.assertTrue(answer.endswith(b"ticket store unavailable\n"))
        return run(scenario())


class TicketIPTests(AuthTestCase):
    def test_strict_refuses_a_ticket_from_another_ip_with_403(self):
        self.server.settings.ticket_ip = "strict"

        async def scenario():
            ticket, _ = await self.ticket(ip="198.51.100.1")
            answer = await self.raw(upgrade_request(path="/?ticket=" + ticket,
                                                    key=random_key()))
            self.assertTrue(answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer)
            self.assertTrue(answer.endswith(b"ticket issued for another IP address\n"))
        return run(scenario())

    def test_warn_accepts_it_and_records_the_mismatch(self):
        async def scenario():
            ticket, _ = await self.ticket(ip="198.51.100.1")
            async with websockets.connect(self.url + "?ticket=" + ticket) as ws:
                await ws.recv()
                session, = self.server.sessions.values()
                self.assertTrue(session.ip_mismatch)
                self.assertEqual(self.server.stats.ticket_ip_mismatches, 1)
        return run(scenario())

    def test_the_same_ip_is_no_mismatch(self):
        async def scenario():
            ticket, _ = await self.ticket(ip="127.0.0.1")
            async with websockets.connect(self.url + "?ticket=" + ticket) as ws:
                await ws.recv()
                session, = self.server.sessions.values()
                self.assertFalse(session.ip_mismatch)
        return run(scenario())


class FirepresenceTicketTests(AuthTestCase):
    async def firepresence(self, token):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port.getHost().port)
        writer.write(FIREPRESENCE.replace(b"t0k3n", token.encode()))
        return reader, writer

    def test_an_x_auth_token_is_redeemed_and_welcomed(self):
        async def scenario():
            ticket, _ = await self.ticket("game-7")
            reader, writer = await self.firepresence(ticket)
            self.assertEqual(await reader.readuntil(b"\r\n\r\n"), FIREPRESENCE_ACCEPTED)
            welcome = json.loads(await reader.readline())
            self.assertEqual((welcome["type"], welcome["account"]), ("welcome", "game-7"))
            writer.close()
        return run(scenario())

    def test_an_invalid_x_auth_token_is_refused_with_401(self):
        async def scenario():
            reader, writer = await self.firepresence("nope")
            answer = await asyncio.wait_for(reader.read(65536), 5)
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer)
            writer.close()
        return run(scenario())

    def test_without_a_token_an_auth_line_authenticates(self):
        async def scenario():
            ticket, _ = await self.ticket("game-8")
            reader, writer = await asyncio.open_connection("127.0.0.1",
                                                          self.port.getHost().port)
            writer.write(FIREPRESENCE.replace(b"X-Auth-Token: t0k3n\r\n", b"")
                         + json.dumps({"type": "auth", "ticket": ticket}).encode() + b"\n")
            self.assertEqual(await reader.readuntil(b"\r\n\r\n"), FIREPRESENCE_ACCEPTED)
            self.assertEqual(json.loads(await reader.readline())["account"], "game-8")
            writer.close()
        return run(scenario())


class AnonymousTests(AuthTestCase):
    def test_anonymous_sessions_are_ready_without_a_ticket(self):
        self.server.settings.anonymous = True

        async def scenario():
            async with websockets.connect(self.url) as ws:
                await ws.send("no ticket")
                self.assertEqual(await ws.recv(), "no ticket")
                session, = self.server.sessions.values()
                self.assertIsNone(session.account)
        return run(scenario())


class AuthTimeoutTests(Harness):
    """The auth timeout, on the Clock (no Redis is asked)."""

    def setUp(self):
        super().setUp()
        self.server.tickets = object()  # tickets are required; none is ever redeemed here

    def test_a_session_that_sends_no_ticket_is_closed_with_4408(self):
        session, transport = self.open_session()
        self.assertFalse(session.ready)
        self.clock.advance(9.9)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.6)
        self.assertEqual(transport.value(), server_close_frame(4408, b"authentication timeout"))
        self.assertEqual(self.server.stats.auth_failures["timeout"], 1)
        self.assertEqual(self.app.opened, [])

    def test_binary_before_authentication_is_refused(self):
        session, transport = self.open_session()
        session.dataReceived(client_frame(0x2, b"\x00"))
        self.assertEqual(transport.value(),
                         server_close_frame(4401, b"authentication required: send a ticket"))
