"""Resume tokens (docs/tickets.md, "Resume tokens"), against a real Redis
with nodes in this process (tests/helpers/hubs.py): a session's welcome
carries one; it opens a new session of the same account, attributes and
channels on any node, once, while the session lives and --resume-ttl after
it ended (a node's death included), never past --resume-max-age from the
original ticket, and under the same client-IP policy as tickets. A refused
one is answered like a bad ticket, and counted."""

import asyncio
import json

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from presence.hub.hub import Hub
from presence.hub.settings import HubSettings, parse_history_rule
from presence.net.dispatch import ListenerFactory
from presence.net.server import Server
from presence.net.settings import ServerSettings
from presence.web.admin import prometheus
from presence.websocket.frames import OP_TEXT
from presence.wire.close import GOING_AWAY

from .helpers.framing import (
    FIREPRESENCE,
    FIREPRESENCE_ACCEPTED,
    client_frame,
    server_frames,
    upgrade_request,
)
from .helpers.hubs import HubTestCase, Node
from .helpers.waiting import lose, pause, run, until, wait

ANN = "192.0.2.7"
#: Publications made while a client moves from one node to the other.
PUBLISHED = 2000
ELSEWHERE = "198.51.100.9"


def _masked(document):
    """A client's text frame carrying ``document``."""
    return client_frame(OP_TEXT, json.dumps(document).encode())


def documents(transport):
    """The JSON documents the server wrote after its handshake's answer."""
    stream = transport.value().partition(b"\r\n\r\n")[2]
    return [json.loads(payload) for opcode, payload in server_frames(stream)
            if opcode == OP_TEXT]


def _of(transport, kind):
    """The documents of one ``type`` the server wrote."""
    return [d for d in documents(transport) if d.get("type") == kind]


def real_time_clock():
    """A Clock the test advances, starting at the reactor's time (tickets
    carry the issuing node's time; the redeeming node compares its own)."""
    clock = Clock()
    clock.advance(reactor.seconds())
    return clock


class ResumeTestCase(HubTestCase):
    def node(self, clock=reactor, node_heartbeat=60.0, ticket_ip="warn", **hub_settings):
        """A node with ``hub_settings`` (e.g. resume_ttl), stopped at cleanup."""
        hub = Hub(self.make_engine(), clock,
                  HubSettings(node_heartbeat=node_heartbeat, **hub_settings))
        server = Server(hub, ServerSettings(heartbeat_interval=0, ticket_ip=ticket_ip), clock,
                        tickets=hub.tickets)
        hub.start(server)
        self.addCleanup(hub.stop)
        factory = ListenerFactory(server)
        factory.startFactory()
        self.addCleanup(factory.stopFactory)
        return Node(hub, server, factory, clock)

    def open(self, node, request, ip=ANN):
        """A connection from ``ip`` that sent ``request``: its transport."""
        dispatcher = node.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", ip, 50000))
        dispatcher.makeConnection(transport)
        dispatcher.dataReceived(request)
        self.addCleanup(lambda: lose(getattr(transport, "protocol", dispatcher), transport))
        return transport

    async def answered(self, transport):
        await until(lambda: b"\r\n\r\n" in transport.value(), 10, "the handshake's answer")
        return transport.value()

    async def welcomed(self, node, credential, ip=ANN):
        """A WebSocket session opened on ``node`` with ``credential``
        (``?ticket=T`` or ``?resume=R``): ``(welcome, session, transport)``."""
        transport = self.open(node, upgrade_request("/?" + credential), ip)
        answer = await self.answered(transport)
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer)
        await until(lambda: documents(transport), 10, "the welcome")
        welcome, = documents(transport)
        return welcome, transport.protocol, transport

    async def refused(self, node, credential, ip=ANN):
        """The HTTP answer to a handshake with ``credential``."""
        return await self.answered(self.open(node, upgrade_request("/?" + credential), ip))

    async def ticket(self, node, account="ann", ip=None):
        ticket, _ = await wait(node.hub.tickets.issue(account, {"name": "Ann"}, ["room:*"], ip))
        return ticket

    async def token_ttl(self, token):
        return await wait(self.engine.execute("PTTL", self.keys.resume(token)))


class ResumingTests(ResumeTestCase):
    def test_a_session_cut_without_a_close_resumes_on_another_node_with_its_token(self):
        async def scenario():
            a, b = self.node(), self.node()
            welcome, old, _ = await self.welcomed(b, "ticket=" + await self.ticket(b))
            token = welcome["resume"]
            self.assertRegex(token, r"^[A-Za-z0-9_-]{32}$")
            # The TCP connection to B is cut: no close, and B has not noticed
            # (its session is still open). The client comes back on A.
            resumed, new, _ = await self.welcomed(a, "resume=" + token)
            self.assertEqual(resumed["account"], "ann")
            self.assertNotEqual(resumed["session"], welcome["session"])
            self.assertTrue(old.ready)
            self.assertEqual((new.account, new.attributes, new.allowed_channels),
                             ("ann", {"name": "Ann"}, ("room:*",)))
            self.assertEqual([text for _, text in new.events], ["opened with a resume token"])
            # Its welcome carries a fresh token, which works in turn.
            self.assertNotIn(resumed["resume"], (token, None))
            again, _, _ = await self.welcomed(b, "resume=" + resumed["resume"])
            self.assertEqual(again["account"], "ann")
            self.assertEqual((a.hub.tickets.resume_redeemed, b.hub.tickets.resume_redeemed),
                             (1, 1))
            # Redis holds hashes of the tokens, never a token.
            stored = await wait(self.engine.execute("KEYS", "presence:resume:*"))
            self.assertEqual(len(stored), 1)
            self.assertEqual(stored, [self.keys.resume(again["resume"])])
            value = await wait(self.engine.execute("GET", stored[0]))
            for seen in (token, resumed["resume"], again["resume"]):
                self.assertNotIn(seen, stored[0] + value)
        return run(scenario())

    def test_cut_off_on_b_with_publishing_going_on_it_resumes_on_a_and_recovers_all_once(self):
        async def scenario():
            history = (parse_history_rule("room:*=5000,300"),)
            a, b = self.node(history=history), self.node(history=history)
            welcome, on_b, b_transport = await self.welcomed(b, "ticket=" + await self.ticket(b))
            on_b.dataReceived(_masked({"type": "subscribe", "channel": "room:cut"}))
            await until(lambda: _of(b_transport, "subscribed"), 10, "subscribed on B")
            epoch = _of(b_transport, "subscribed")[0]["epoch"]

            async def publishing():
                for n in range(1, PUBLISHED + 1):
                    await wait(a.hub.publish_recorded(None, ["room:cut"], n))
            publisher = asyncio.ensure_future(publishing())
            await until(lambda: len(_of(b_transport, "message")) >= 200, 20, "200 on B")
            # The TCP connection is cut: what B writes from now on never
            # arrives, and B has not noticed (no close, its session open).
            seen = [m["offset"] for m in _of(b_transport, "message")]
            self.assertEqual(seen, list(range(1, len(seen) + 1)))
            resumed, _, a_transport = await self.welcomed(a, "resume=" + welcome["resume"])
            self.assertTrue(on_b.ready)
            a_transport.protocol.dataReceived(_masked({
                "type": "subscribe", "channel": "room:cut",
                "recover": {"epoch": epoch, "offset": seen[-1]}}))
            await publisher
            self.assertLess(len(seen), PUBLISHED)
            await until(lambda: len(seen) + len(_of(a_transport, "message")) >= PUBLISHED, 20,
                        "every publication")
            self.assertTrue(_of(a_transport, "subscribed")[0]["recovered"])
            on_a = _of(a_transport, "message")
            self.assertEqual(seen + [m["offset"] for m in on_a], list(range(1, PUBLISHED + 1)))
            self.assertEqual([m["data"] for m in on_a], list(range(len(seen) + 1, PUBLISHED + 1)))
        return run(scenario())

    def test_a_token_used_twice_is_refused_401_and_counts_as_a_failure_of_its_address(self):
        async def scenario():
            a = self.node()
            welcome, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            await self.welcomed(a, "resume=" + welcome["resume"])
            answer = await self.refused(a, "resume=" + welcome["resume"])
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer)
            self.assertTrue(answer.endswith(b"invalid, expired or already used resume token\n"))
            stats = a.server.stats
            self.assertEqual(stats.auth_failures["resume_invalid"], 1)
            self.assertEqual(stats.handshakes_refused["resume_invalid"], 1)
            self.assertEqual(a.hub.tickets.resume_refused, 1)
            self.assertEqual(len(a.server.auth_throttle), 1)  # 192.0.2.7 failed once
            forged = await self.refused(a, "resume=" + "A" * 32)
            self.assertTrue(forged.startswith(b"HTTP/1.1 401 "), forged)
            self.assertEqual(a.hub.tickets.resume_refused, 2)
        return run(scenario())

    def test_after_an_auth_message_a_refused_token_closes_4401(self):
        async def scenario():
            a = self.node()
            welcome, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            transport = self.open(a, upgrade_request("/"))
            session = transport.protocol
            session.dataReceived(_masked({"type": "auth", "resume": welcome["resume"]}))
            await until(lambda: documents(transport), 10, "the welcome")
            resumed, = documents(transport)
            self.assertEqual((resumed["type"], resumed["account"]), ("welcome", "ann"))

            transport = self.open(a, upgrade_request("/"))
            transport.protocol.dataReceived(
                _masked({"type": "auth", "resume": welcome["resume"]}))
            await until(lambda: transport.protocol.close_record is not None
                        or b"\x88" in transport.value(), 10, "the close")
            self.assertIn(b"\x88", transport.value())
            self.assertIn(b"\x11\x31invalid, expired or already used resume token",
                          transport.value())  # 4401
        return run(scenario())

    def test_firepresence_resumes_with_x_auth_token_resume(self):
        async def scenario():
            a = self.node()
            welcome, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            transport = self.open(a, FIREPRESENCE.replace(
                b"t0k3n", b"resume:" + welcome["resume"].encode()))
            await until(lambda: b"\n{" in transport.value() and
                        transport.value().endswith(b"\n"), 10, "the welcome")
            head, line = transport.value().split(b"\r\n\r\n", 1)
            self.assertEqual(head + b"\r\n\r\n", FIREPRESENCE_ACCEPTED)
            resumed = json.loads(line)
            self.assertEqual((resumed["type"], resumed["account"]), ("welcome", "ann"))
            self.assertIn("resume", resumed)
            used = self.open(a, FIREPRESENCE.replace(
                b"t0k3n", b"resume:" + welcome["resume"].encode()))
            answer = await self.answered(used)
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
            # Or in its first line, {"type": "auth", "resume": TOKEN}.
            line = self.open(a, FIREPRESENCE.replace(b"X-Auth-Token: t0k3n\r\n", b"")
                             + json.dumps({"type": "auth", "resume": resumed["resume"]}).encode()
                             + b"\n")
            await until(lambda: b"welcome" in line.value(), 10, "the auth line's welcome")
            again = json.loads(line.value().split(b"\r\n\r\n", 1)[1])
            self.assertEqual(again["account"], "ann")
        return run(scenario())


class AddressTests(ResumeTestCase):
    def test_under_strict_a_token_from_another_address_is_refused_403(self):
        async def scenario():
            a = self.node(ticket_ip="strict")
            # The ticket names no address: the token is bound to the
            # session's own.
            welcome, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            answer = await self.refused(a, "resume=" + welcome["resume"], ip=ELSEWHERE)
            self.assertTrue(answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer)
            self.assertTrue(answer.endswith(b"resume token issued to another IP address\n"))
            self.assertEqual(a.server.stats.auth_failures["resume_ip"], 1)
            # Used up, and the token stored for the refused session is gone.
            self.assertEqual(await wait(self.engine.execute("KEYS", "presence:resume:*")), [])
        return run(scenario())

    def test_under_strict_the_same_address_resumes(self):
        async def scenario():
            a = self.node(ticket_ip="strict")
            welcome, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a, ip=ANN))
            resumed, session, _ = await self.welcomed(a, "resume=" + welcome["resume"])
            self.assertFalse(session.ip_mismatch)
        return run(scenario())

    def test_under_warn_another_address_resumes_marked(self):
        async def scenario():
            a = self.node(ticket_ip="warn")
            welcome, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            _, session, _ = await self.welcomed(a, "resume=" + welcome["resume"], ip=ELSEWHERE)
            self.assertTrue(session.ip_mismatch)
        return run(scenario())


class LifetimeTests(ResumeTestCase):
    def test_a_token_is_valid_resume_ttl_after_its_session_ended_and_not_after(self):
        async def scenario():
            a = self.node(resume_ttl=1)
            first, session, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            second, _, _ = await self.welcomed(a, "resume=" + first["resume"])
            # While the session lives, its token does not expire before
            # the maximum age.
            self.assertGreater(await self.token_ttl(second["resume"]), 3600 * 1000)
            session, = [s for s in a.server.sessions.values() if s.id == second["session"]]
            session.close(GOING_AWAY, "server restarting")
            lose(session, session.transport)
            await until(self._ttl_at_most(second["resume"], 1000), 10, "the end recorded")
            await pause(1.2)
            answer = await self.refused(a, "resume=" + second["resume"])
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
        return run(scenario())

    def _ttl_at_most(self, token, ms):
        async def check():
            ttl = await self.token_ttl(token)
            return 0 < ttl <= ms
        return check

    def test_a_token_of_a_session_that_ended_resumes_within_resume_ttl(self):
        async def scenario():
            a, b = self.node(), self.node()
            first, session, transport = await self.welcomed(b, "ticket=" + await self.ticket(b))
            session.close(GOING_AWAY, "server restarting")
            lose(session, transport)
            await until(self._ttl_at_most(first["resume"], 60 * 1000), 10, "the end recorded")
            resumed, _, _ = await self.welcomed(a, "resume=" + first["resume"])
            self.assertEqual(resumed["account"], "ann")
        return run(scenario())

    def test_a_session_a_backend_kicked_leaves_no_token(self):
        async def scenario():
            a = self.node()
            first, session, transport = await self.welcomed(a, "ticket=" + await self.ticket(a))
            second, kept, kept_transport = await self.welcomed(
                a, "ticket=" + await self.ticket(a))
            session.close(4000, "banned")  # POST /disconnect {"code": 4000}
            lose(session, transport)
            kept.close(GOING_AWAY, "server restarting")
            lose(kept, kept_transport)
            key = self.keys.resume(first["resume"])
            await until(lambda: self._gone(key), 10, "the kicked session's token forgotten")
            answer = await self.refused(a, "resume=" + first["resume"])
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
            # A node's restart (1001) is no kick: that token still works.
            resumed, _, _ = await self.welcomed(a, "resume=" + second["resume"])
            self.assertEqual(resumed["account"], "ann")
        return run(scenario())

    def _gone(self, key):
        async def check():
            return await wait(self.engine.execute("EXISTS", key)) == 0
        return check()

    def test_a_client_gone_before_its_ticket_was_redeemed_leaves_no_token(self):
        async def scenario():
            a = self.node()
            transport = self.open(a, upgrade_request("/?ticket=" + await self.ticket(a)))
            lose(transport.protocol, transport)  # before Redis answered
            await until(lambda: a.hub.tickets.redeemed == 1, 10, "the ticket redeemed")
            await until(lambda: self._no_tokens(), 10, "the unsent token forgotten")
        return run(scenario())

    async def _no_tokens(self):
        return await wait(self.engine.execute("KEYS", "presence:resume:*")) == []

    def test_a_node_that_stops_leaves_its_ended_sessions_tokens_and_no_key_of_its_own(self):
        async def scenario():
            a, b = self.node(), self.node()
            first, session, transport = await self.welcomed(b, "ticket=" + await self.ticket(b))
            session.close(GOING_AWAY, "server shutting down")  # what a stop does first
            lose(session, transport)
            await wait(defer.ensureDeferred(b.hub.stop()))
            self.assertEqual(await wait(self.engine.execute(
                "KEYS", self.keys.node(b.hub.node_id) + "*")), [])
            resumed, _, _ = await self.welcomed(a, "resume=" + first["resume"])
            self.assertEqual(resumed["account"], "ann")
        return run(scenario())

    def test_a_dead_nodes_tokens_last_resume_ttl_after_its_last_announcement_expired(self):
        async def scenario():
            # B announces once (its clock never moves again): it died then.
            # Its announcement lives node_ttl (1 s), its tokens 2 s more.
            a = self.node(resume_ttl=2, node_heartbeat=0.3)
            b = self.node(clock=real_time_clock(), resume_ttl=2, node_heartbeat=0.3)
            first, _, _ = await self.welcomed(b, "ticket=" + await self.ticket(b))
            second, _, _ = await self.welcomed(b, "ticket=" + await self.ticket(b))
            resumed, _, _ = await self.welcomed(a, "resume=" + first["resume"])
            self.assertEqual(resumed["account"], "ann")
            await pause(3.3)
            answer = await self.refused(a, "resume=" + second["resume"])
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
            # A's own sessions' tokens live on: A announces.
            again, _, _ = await self.welcomed(a, "resume=" + resumed["resume"])
            self.assertEqual(again["account"], "ann")
        return run(scenario())

    def test_no_token_outlives_the_maximum_age_from_the_original_ticket(self):
        async def scenario():
            clock = real_time_clock()
            a = self.node(clock=clock, resume_max_age=3600)
            first, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            clock.advance(3590)
            second, _, _ = await self.welcomed(a, "resume=" + first["resume"])
            # The renewed token ends with the original ticket's hour.
            self.assertLessEqual(await self.token_ttl(second["resume"]), 10 * 1000)
            clock.advance(11)
            answer = await self.refused(a, "resume=" + second["resume"])
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
        return run(scenario())

    def test_a_resume_ttl_of_zero_gives_no_tokens_but_takes_another_nodes(self):
        async def scenario():
            a, b = self.node(resume_ttl=0), self.node()
            welcome, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            self.assertNotIn("resume", welcome)
            self.assertEqual(await wait(self.engine.execute("KEYS", "presence:resume:*")), [])
            # A token another node gave (a cluster changing its setting).
            given, _, _ = await self.welcomed(b, "ticket=" + await self.ticket(b))
            resumed, _, _ = await self.welcomed(a, "resume=" + given["resume"])
            self.assertEqual(resumed["account"], "ann")
            self.assertNotIn("resume", resumed)
        return run(scenario())


class CountedTests(ResumeTestCase):
    def test_tokens_issued_redeemed_and_refused_are_in_metrics_and_the_node_report(self):
        async def scenario():
            a = self.node()
            welcome, _, _ = await self.welcomed(a, "ticket=" + await self.ticket(a))
            await self.welcomed(a, "resume=" + welcome["resume"])
            await self.refused(a, "resume=" + welcome["resume"])
            metrics = prometheus(a.server, a.hub)
            for line in ('presence_resume_tokens_total{outcome="issued"} 2',
                         'presence_resume_tokens_total{outcome="redeemed"} 1',
                         'presence_resume_tokens_total{outcome="refused"} 1',
                         'presence_auth_failures_total{reason="resume_invalid"} 1'):
                self.assertIn(line, metrics)
            report = a.hub.liveness.node_report()
            self.assertEqual(report["resume_tokens"],
                             {"issued": 2, "redeemed": 1, "refused": 1})
            # The dashboard's overview adds up the nodes' reports.
            b = self.node()
            await self.welcomed(b, "ticket=" + await self.ticket(b))
            for node in (a, b):
                await wait(node.hub.liveness.announce())
            overview = await wait(defer.ensureDeferred(a.hub.queries.overview()))
            self.assertEqual(overview["resume_tokens"],
                             {"issued": 3, "redeemed": 1, "refused": 1})
        return run(scenario())
