"""Addresses that fail to authenticate too often are throttled
(presence/wire/auththrottle.py): after MAX_FAILURES failed tickets within
WINDOW seconds from one address (an IPv4 address, an IPv6 /64), its
handshakes are refused with 429 and its auth messages closed with 4429,
and after as many wrong API keys its API calls are answered 429, without
asking Redis (or the introspection endpoint) anything, until the window is
over. Real Redis, real HTTP; every clock a Clock."""

import json

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase

from presence.web.admin import AdminApp, prometheus
from presence.websocket.frames import OP_CLOSE, OP_TEXT
from presence.wire.auththrottle import MAX_ADDRESSES, MAX_FAILURES, WINDOW, AuthThrottle
from presence.wire.clientip import TrustedProxies

from .helpers.api import API_KEY, APITestCase
from .helpers.framing import client_frame, server_frames, upgrade_request
from .helpers.hubs import HubTestCase
from .helpers.waiting import lose, run, until, wait


def twisted(result):
    """Twisted's Deferred or coroutine ``result``, awaitable on asyncio's loop."""
    return wait(defer.ensureDeferred(result))


class AuthThrottleTests(TestCase):
    """The table alone: times are given."""

    def fail(self, throttle, address, count, now=0.0):
        for _ in range(count):
            throttle.failed(address, now)

    def test_max_failures_within_the_window_throttle_the_address_until_it_ends(self):
        throttle = AuthThrottle()
        self.fail(throttle, "192.0.2.7", MAX_FAILURES - 1, now=10.0)
        self.assertEqual(throttle.throttled("192.0.2.7", 10.0, "client"), 0)
        throttle.failed("192.0.2.7", 30.0)
        self.assertEqual(throttle.throttled("192.0.2.7", 30.0, "client"), WINDOW - 20.0)
        self.assertEqual(throttle.throttled("192.0.2.7", 10.0 + WINDOW - 1, "api"), 1.0)
        self.assertEqual(throttle.throttled("192.0.2.7", 10.0 + WINDOW, "client"), 0)
        self.assertEqual(dict(throttle.refused), {"client": 1, "api": 1})
        self.assertEqual(throttle.throttled("192.0.2.8", 30.0, "client"), 0)

    def test_failures_spread_over_more_than_a_window_never_throttle(self):
        throttle = AuthThrottle()
        for second in range(0, 10 * int(WINDOW), 3):  # one every 3 s, 20 a minute
            throttle.failed("192.0.2.7", float(second))
            self.assertEqual(throttle.throttled("192.0.2.7", float(second), "client"), 0)

    def test_throttled_now_counts_the_addresses_refused_at_that_time(self):
        throttle = AuthThrottle()
        self.fail(throttle, "192.0.2.7", MAX_FAILURES)
        self.fail(throttle, "192.0.2.8", MAX_FAILURES - 1)
        self.fail(throttle, "2001:db8::/64", MAX_FAILURES, now=30.0)
        self.assertEqual(throttle.throttled_now(31.0), 2)
        self.assertEqual(throttle.throttled_now(WINDOW + 1), 1)
        self.assertEqual(throttle.throttled_now(WINDOW + 31), 0)
        self.assertEqual(len(throttle), 0, "ended windows are pruned")

    def test_the_table_holds_at_most_max_addresses_forgetting_the_oldest(self):
        throttle = AuthThrottle()
        self.fail(throttle, "first", MAX_FAILURES)
        for n in range(MAX_ADDRESSES + 500):
            throttle.failed("10.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255), 1.0)
        self.assertEqual(len(throttle), MAX_ADDRESSES)
        self.assertEqual(throttle.throttled("first", 1.0, "client"), 0)


class ClientPortTests(HubTestCase):
    """Handshakes with bad tickets on a node whose clock is a Clock."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.clock = Clock()
        self.node = self.start_node(clock=self.clock)

    def connect(self, request, peer=None):
        """A connection from ``peer`` that sent ``request``: its transport."""
        dispatcher = self.node.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=peer or IPv4Address("TCP", "192.0.2.7", 50000))
        dispatcher.makeConnection(transport)
        dispatcher.dataReceived(request)
        # The session took the transport over, or the dispatcher refused it.
        self.addCleanup(lose, getattr(transport, "protocol", dispatcher), transport)
        return transport

    async def redemptions(self):
        """GETDELs Redis has run: the tickets it was asked to redeem."""
        info = await twisted(self.engine.execute("INFO", "commandstats"))
        for line in info.splitlines():
            if line.startswith("cmdstat_getdel:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    async def fail_tickets(self, count, peer=None):
        for _ in range(count):
            transport = self.connect(upgrade_request("/?ticket=bogus"), peer)
            await until(lambda: transport.value(), 10, "the answer to a bad ticket")
            assert transport.value().startswith(b"HTTP/1.1 401 "), transport.value()

    def test_past_max_failures_a_handshake_is_refused_429_without_asking_redis(self):
        async def scenario():
            await self.fail_tickets(MAX_FAILURES)
            asked = await self.redemptions()
            self.assertEqual(asked, MAX_FAILURES)

            transport = self.connect(upgrade_request("/?ticket=another-guess"))
            answer = transport.value()
            self.assertTrue(answer.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), answer)
            self.assertIn(b"\r\nRetry-After: %d\r\n" % WINDOW, answer)
            self.assertIn(b"too many failed tickets from 192.0.2.7: try again in", answer)
            self.assertEqual(await self.redemptions(), asked)
            stats = self.node.server.stats
            self.assertEqual(stats.handshakes_refused["ticket_throttled"], 1)
            self.assertEqual(self.node.server.auth_throttle.refused["client"], 1)

            # Another address is not throttled: its bad ticket is checked.
            other = self.connect(upgrade_request("/?ticket=bogus"),
                                 IPv4Address("TCP", "192.0.2.8", 50000))
            await until(lambda: other.value(), 10, "the other address's answer")
            self.assertTrue(other.value().startswith(b"HTTP/1.1 401 "))

            # Once the window is over, a good ticket from the address works.
            self.clock.advance(WINDOW)
            ticket, _ = await twisted(self.node.hub.tickets.issue("ann", {}, [], None))
            welcomed = self.connect(upgrade_request("/?ticket=" + ticket))
            await until(lambda: welcomed.value(), 10, "the answer to a good ticket")
            self.assertTrue(welcomed.value().startswith(b"HTTP/1.1 101 "), welcomed.value())
        return run(scenario())

    def test_an_auth_message_from_a_throttled_address_is_closed_4429_without_asking_redis(self):
        async def scenario():
            # Opened before its address was throttled; authenticates after.
            opened = self.connect(upgrade_request("/"))
            self.assertTrue(opened.value().startswith(b"HTTP/1.1 101 "))
            await self.fail_tickets(MAX_FAILURES)
            asked = await self.redemptions()
            opened.clear()
            opened.protocol.dataReceived(client_frame(OP_TEXT, json.dumps(
                {"type": "auth", "ticket": "a-guess"})))
            closes = [payload for opcode, payload in server_frames(opened.value())
                      if opcode == OP_CLOSE]
            self.assertEqual(closes, [b"\x11\x4d" + b"too many failed tickets from this "
                                      b"address: try again later"])
            self.assertEqual(await self.redemptions(), asked)
            self.assertEqual(self.node.server.stats.auth_failures["throttled"], 1)
        return run(scenario())

    def test_an_ipv6_address_is_throttled_by_its_64(self):
        async def scenario():
            await self.fail_tickets(MAX_FAILURES, IPv6Address("TCP", "2001:db8:1:2::1", 50000))
            same = self.connect(upgrade_request("/?ticket=bogus"),
                                IPv6Address("TCP", "2001:db8:1:2:ffff::9", 50000))
            self.assertIn(b"too many failed tickets from 2001:db8:1:2::/64", same.value())
            other = self.connect(upgrade_request("/?ticket=bogus"),
                                 IPv6Address("TCP", "2001:db8:1:3::1", 50000))
            await until(lambda: other.value(), 10, "the other /64's answer")
            self.assertTrue(other.value().startswith(b"HTTP/1.1 401 "))
        return run(scenario())

    def test_metrics_and_the_dashboard_show_throttled_addresses_and_attempts(self):
        async def scenario():
            await self.fail_tickets(MAX_FAILURES)
            self.connect(upgrade_request("/?ticket=another-guess"))
            server = self.node.server
            text = prometheus(server, self.node.hub)
            self.assertIn('presence_auth_throttled_total{port="client"} 1\n', text)
            self.assertIn('presence_auth_throttled_total{port="api"} 0\n', text)
            self.assertIn("presence_auth_throttled_addresses 1\n", text)
            report = self.node.hub.liveness.node_report()
            self.assertEqual((report["auth_throttled"], report["auth_throttled_addresses"]),
                             ({"client": 1}, 1))

            await twisted(self.node.hub.liveness.announce())
            overview = await twisted(self.node.hub.queries.overview())
            admin = AdminApp(self.node.hub, server, "a password", clock=self.clock)
            page = admin.env.get_template("overview_content.html").render(
                overview=overview, close_counts={}, chart=[], chart_span="-")
            self.assertIn('<p id="auth-throttled">addresses now 1 · attempts refused client 1</p>',
                          page)
        return run(scenario())


class APITests(APITestCase):
    """Wrong API keys on the API of a Clock."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.clock = Clock()
        self.throttle = AuthThrottle()
        self.url = self.serve_api(throttle=self.throttle, clock=self.clock,
                                  trusted_proxies=TrustedProxies(["127.0.0.1/32"]))

    def from_address(self, ip, token=API_KEY):
        # 127.0.0.1 is a trusted proxy here: X-Forwarded-For names the caller.
        return self.post_ticket({"account": "user-42"}, token=token,
                                headers={b"x-forwarded-for": [ip.encode()]})

    @defer.inlineCallbacks
    def test_past_max_failures_even_the_right_key_is_429_unchecked_until_the_window_ends(self):
        for n in range(MAX_FAILURES):
            status, _, _ = yield self.from_address("203.0.113.5", token="wrong-%d" % n)
            self.assertEqual(status, 401)
        asked = len(self.introspection.asked)

        _, headers, body = yield self.assertStatus(
            429, "throttled", self.from_address("203.0.113.5", token="one-more-guess"))
        self.assertEqual(headers[b"retry-after"], [b"%d" % WINDOW])
        self.assertIn("too many invalid credentials from 203.0.113.5", body["message"])
        yield self.assertStatus(429, "throttled", self.from_address("203.0.113.5"))
        self.assertEqual(len(self.introspection.asked), asked, "no token was introspected")
        self.assertEqual(self.tickets.issued, 0)
        self.assertEqual(self.throttle.refused["api"], 2)

        status, _, _ = yield self.from_address("203.0.113.6")  # another address
        self.assertEqual(status, 201)
        self.clock.advance(WINDOW)
        status, _, _ = yield self.from_address("203.0.113.5")
        self.assertEqual(status, 201)

    @defer.inlineCallbacks
    def test_an_ipv6_caller_is_throttled_by_its_64(self):
        for n in range(MAX_FAILURES):
            yield self.from_address("2001:db8:1:2::%x" % (n + 1), token="wrong")
        yield self.assertStatus(429, "throttled", self.from_address("2001:db8:1:2::ffff"))
        status, _, _ = yield self.from_address("2001:db8:1:3::1")
        self.assertEqual(status, 201)

    @defer.inlineCallbacks
    def test_the_right_key_is_no_failure(self):
        for _ in range(MAX_FAILURES + 5):
            status, _, _ = yield self.from_address("203.0.113.5")
            self.assertEqual(status, 201)
        self.assertEqual(len(self.throttle), 0)
