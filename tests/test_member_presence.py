"""Presence an application can show (issue 16), against a real Redis with
two nodes in this process (tests/helpers/hubs.py): a ticket's ``info`` in
member listings, events and the API; why a session ended; the quality of
its connection; one join per person with a grace delay; the channel API;
server-side subscriptions; whispers."""

import json

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from presence.hub.hub import Hub
from presence.hub.settings import HubSettings
from presence.net.dispatch import ListenerFactory
from presence.net.server import Server
from presence.net.settings import ServerSettings
from presence.websocket.frames import OP_PING, OP_PONG, OP_TEXT

from .helpers.api import APITestCase
from .helpers.framing import FIREPRESENCE, client_frame, server_frames, upgrade_request
from .helpers.hubs import HubTestCase, Node
from .helpers.waiting import lose, run, until, wait

ADA = {"name": "Ada Lovelace", "avatar": "https://example.com/ada.png"}
BOB = {"name": "Bob"}


def documents(transport):
    """The JSON documents the server wrote after its handshake's answer."""
    stream = transport.value().partition(b"\r\n\r\n")[2]
    return [json.loads(payload) for opcode, payload in server_frames(stream)
            if opcode == OP_TEXT]


def of(transport, kind, **fields):
    """The documents of one ``type`` (and these field values) the server wrote."""
    return [d for d in documents(transport) if d.get("type") == kind
            and all(d.get(name) == value for name, value in fields.items())]


def send(session, document):
    session.dataReceived(client_frame(OP_TEXT, json.dumps(document).encode()))


class PresenceTestCase(APITestCase, HubTestCase):
    """Two nodes, A and B, on this test's Redis; the API served over A's hub."""

    hub_settings = {}
    server_settings = {}
    #: The nodes' Redis command bound (None: the engine's default).
    redis_timeout = None

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.a = self.node("node-a")
        self.b = self.node("node-b")
        self.url = self.serve_api(hub=self.a.hub)
        self.events = []
        events = self.make_engine()
        self.addCleanup(lambda: self.events_subscriber.close())
        from presence.redis.subscriber import RedisSubscriber
        self.events_subscriber = RedisSubscriber(
            self.redis_url, lambda channel, message: self.events.append(json.loads(message)),
            lambda: None, lambda: None, reactor=reactor)
        self.events_subscriber.subscribe(self.keys.events)
        del events

    def node(self, node_id, clock=reactor, **settings):
        hub_settings = dict(node_heartbeat=60.0, **self.hub_settings)
        hub_settings.update(settings)
        engine = self.make_engine(**({"timeout": self.redis_timeout} if self.redis_timeout else {}))
        hub = Hub(engine, clock, HubSettings(**hub_settings), node_id=node_id)
        server_settings = dict(heartbeat_interval=0)
        server_settings.update(self.server_settings)
        server = Server(hub, ServerSettings(**server_settings), clock, tickets=hub.tickets)
        hub.start(server)
        self.addCleanup(hub.stop)
        factory = ListenerFactory(server)
        factory.startFactory()
        self.addCleanup(factory.stopFactory)
        return Node(hub, server, factory, clock)

    def open(self, node, request):
        dispatcher = node.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 50000))
        dispatcher.makeConnection(transport)
        dispatcher.dataReceived(request)
        self.addCleanup(lambda: lose(getattr(transport, "protocol", dispatcher), transport))
        return transport

    async def ticket(self, account, info=None, channels=("room:*",), whisper=()):
        """A ticket from POST /tickets (as a backend asks for one)."""
        body = {"account": account, "channels": list(channels), "whisper": list(whisper)}
        if info is not None:
            body["info"] = info
        status, _, answer = await wait(self.post_ticket(body))
        self.assertEqual(status, 201, answer)
        return answer["ticket"]

    async def welcomed(self, node, credential):
        """A session opened on ``node`` with ``credential`` ("ticket=T" or
        "resume=R"): ``(welcome, session, transport)``."""
        transport = self.open(node, upgrade_request("/?" + credential))
        await until(lambda: documents(transport), 10, "the welcome")
        welcome = documents(transport)[0]
        self.assertEqual(welcome["type"], "welcome", welcome)
        return welcome, transport.protocol, transport

    async def person(self, node, account, info=None, **ticket):
        """A session of ``account`` on ``node``, from a ticket with ``info``."""
        ticket = await self.ticket(account, info, **ticket)
        return await self.welcomed(node, "ticket=" + ticket)

    async def subscribed(self, session, transport, channel, **fields):
        send(session, dict({"type": "subscribe", "channel": channel}, **fields))
        await until(lambda: of(transport, "subscribed", channel=channel), 10,
                    "subscribed to %s" % channel)
        await wait(session.server.handler.writer.finished())

    async def members(self, session, transport, channel):
        count = len(of(transport, "members"))
        send(session, {"type": "members", "channel": channel})
        await until(lambda: len(of(transport, "members")) > count, 10, "members")
        return of(transport, "members")[-1]["members"]


class MemberInfoTests(PresenceTestCase):
    def test_a_ticket_takes_info_of_at_most_1_kib_as_json(self):
        async def check():
            status, _, answer = await wait(self.post_ticket(
                {"account": "ada", "info": {"name": "x" * 1020}}))
            self.assertEqual((status, answer["error"]), (400, "bad_request"))
            self.assertIn("at most 1024 bytes", answer["message"])
            status, _, answer = await wait(self.post_ticket({"account": "ada", "info": "Ada"}))
            self.assertEqual((status, answer["message"]), (400, "info must be a JSON object"))
            status, _, answer = await wait(self.post_ticket(
                {"account": "ada", "info": {"name": "x" * 1000}}))
            self.assertEqual(status, 201, answer)
        return run(check())

    def test_info_is_in_members_join_events_and_get_presence_across_nodes(self):
        async def check():
            _, ada, ada_t = await self.person(self.a, "ada", ADA)
            await self.subscribed(ada, ada_t, "room:1", presence=True)
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob, bob_t, "room:1")
            # Ada (on A) hears Bob (on B) join, with his info.
            await until(lambda: of(ada_t, "join", account="bob"), 10, "bob's join")
            self.assertEqual(of(ada_t, "join", account="bob")[0]["info"], BOB)
            members = await self.members(bob, bob_t, "room:1")
            self.assertEqual([(m["account"], m["info"], [s["session"] for s in m["sessions"]])
                              for m in members],
                             [("ada", ADA, [ada.id]), ("bob", BOB, [bob.id])])
            status, _, answer = await wait(self.request("GET", "/presence/bob"))
            self.assertEqual(status, 200)
            self.assertEqual(answer["info"], BOB)
            self.assertEqual([(s["session"], s["info"], s["node"]) for s in answer["sessions"]],
                             [(bob.id, BOB, "node-b")])
            # Bob leaves: Ada's leave event carries his info too.
            send(bob, {"type": "unsubscribe", "channel": "room:1"})
            await until(lambda: of(ada_t, "leave", account="bob"), 10, "bob's leave")
            self.assertEqual(of(ada_t, "leave", account="bob")[0]["info"], BOB)
        return run(check())

    def test_a_resumed_session_keeps_its_info(self):
        async def check():
            welcome, ada, ada_t = await self.person(self.a, "ada", ADA)
            await self.subscribed(ada, ada_t, "room:1")
            lose(ada, ada_t)
            _, again, again_t = await self.welcomed(self.b, "resume=" + welcome["resume"])
            self.assertEqual(again.info, ADA)
            await self.subscribed(again, again_t, "room:1")
            members = await self.members(again, again_t, "room:1")
            self.assertEqual([(m["account"], m["info"]) for m in members], [("ada", ADA)])
        return run(check())


class WhyASessionEndedTests(PresenceTestCase):
    """offline and leave events carry the close record of the session that
    ended, or {"reaped": true} when a survivor reaped its dead node."""

    def test_a_kicked_sessions_offline_and_leave_say_the_code_reason_and_initiator(self):
        async def check():
            _, ada, ada_t = await self.person(self.a, "ada", ADA)
            await self.subscribed(ada, ada_t, "room:1", presence=True)
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob, bob_t, "room:1")
            status, _, _ = await wait(self.request("POST", "/disconnect", {
                "account": "bob", "code": 4001, "reason": "banned for spam"}))
            self.assertEqual(status, 202)
            await until(lambda: bob.closing, 10, "bob's close")
            lose(bob, bob_t)  # the client goes after the server's Close
            ended = {"code": 4001, "reason": "banned for spam", "initiator": "server",
                     "clean": False}
            await until(lambda: of(ada_t, "leave", account="bob"), 10, "bob's leave")
            leave, = of(ada_t, "leave", account="bob")
            self.assertEqual({k: leave["ended"][k] for k in ("code", "reason", "initiator")},
                             {k: ended[k] for k in ("code", "reason", "initiator")})
            await until(lambda: [e for e in self.events if e["type"] == "offline"], 10,
                        "bob's offline")
            offline, = [e for e in self.events if e["type"] == "offline"]
            self.assertEqual((offline["account"], offline["ended"]["code"],
                              offline["ended"]["reason"], offline["ended"]["initiator"]),
                             ("bob", 4001, "banned for spam", "server"))
            self.assertIn("clean", offline["ended"])
        return run(check())

    def test_a_client_that_closes_says_so(self):
        async def check():
            _, ada, ada_t = await self.person(self.a, "ada", ADA)
            await self.subscribed(ada, ada_t, "room:1", presence=True)
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob, bob_t, "room:1")
            bob.dataReceived(client_frame(0x8, b"\x03\xe8bye"))
            lose(bob, bob_t)  # it closes its side after the server's Close
            await until(lambda: of(ada_t, "leave", account="bob"), 10, "bob's leave")
            leave, = of(ada_t, "leave", account="bob")
            self.assertEqual((leave["ended"]["code"], leave["ended"]["reason"],
                              leave["ended"]["initiator"]), (1000, "bye", "client"))
        return run(check())

    def test_a_reaped_sessions_leave_and_offline_say_reaped(self):
        async def check():
            _, ada, ada_t = await self.person(self.a, "ada", ADA)
            await self.subscribed(ada, ada_t, "room:1", presence=True)
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob, bob_t, "room:1")
            # B dies: its key is gone, A reaps it.
            await wait(self.b.hub.liveness.stop())
            await wait(self.engine.execute("DEL", self.keys.node("node-b")))
            await wait(self.a.hub.liveness.announce())
            await until(lambda: of(ada_t, "leave", account="bob"), 10, "bob's leave")
            self.assertEqual(of(ada_t, "leave", account="bob")[0]["ended"], {"reaped": True})
            self.assertEqual(of(ada_t, "leave", account="bob")[0]["info"], BOB)
            await until(lambda: [e for e in self.events if e["type"] == "offline"], 10,
                        "bob's offline")
            self.assertEqual([e["ended"] for e in self.events if e["type"] == "offline"],
                             [{"reaped": True}])
        return run(check())


def real_time_clock():
    """A Clock the test advances, from the reactor's time (tickets carry the
    issuing node's time)."""
    clock = Clock()
    clock.advance(reactor.seconds())
    return clock


class ConnectionQualityTests(PresenceTestCase):
    """rtt_ms, last_seen_ms and stale of every session, in members and GET
    /presence/ACCOUNT on any node, driven by the nodes' Clocks: heartbeats
    every 10 s (timed out after 30 s), quality written every node heartbeat
    (5 s)."""

    server_settings = {"heartbeat_interval": 10.0, "heartbeat_timeout": 30.0,
                       "max_message_rate": 100.0}

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.clock = real_time_clock()
        self.a = self.node("node-qa", self.clock, node_heartbeat=5.0)
        self.b = self.node("node-qb", self.clock, node_heartbeat=5.0)

    async def advance(self, seconds):
        """Move both nodes' clock on, a second at a time, and let what it
        started in Redis finish."""
        for _ in range(int(seconds)):
            self.clock.advance(1.0)
            for node in (self.a, self.b):
                await wait(node.hub.writer.finished())
        for node in (self.a, self.b):
            await wait(defer.ensureDeferred(node.hub.quality.refresh()))

    def test_rtt_last_seen_and_stale_are_seen_from_the_other_node(self):
        async def check():
            _, ada, ada_t = await self.person(self.a, "ada", ADA)
            await self.subscribed(ada, ada_t, "room:1")
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob, bob_t, "room:1")
            bob_t.clear()
            await self.advance(10)  # the heartbeat round: a ping each
            pings = [payload for opcode, payload in server_frames(bob_t.value())
                     if opcode == OP_PING]
            self.assertEqual(len(pings), 1)
            self.clock.advance(0.25)
            bob.dataReceived(client_frame(OP_PONG, pings[0]))
            self.assertAlmostEqual(bob.rtt, 0.25)
            await self.advance(3)

            def bob_of(members):
                return next(m for m in members if m["account"] == "bob")["sessions"][0]
            seen = bob_of(await self.members(ada, ada_t, "room:1"))
            self.assertEqual(seen["rtt_ms"], 250.0)
            self.assertEqual(seen["stale"], False)
            self.assertAlmostEqual(seen["last_seen_ms"], 3000, delta=1)

            # Bob does not answer the next ping: past one interval with
            # nothing heard, he is stale (and not closed: the timeout is 30 s).
            await self.advance(16)
            self.assertTrue(bob.ready)
            seen = bob_of(await self.members(ada, ada_t, "room:1"))
            self.assertEqual(seen["stale"], True)
            self.assertAlmostEqual(seen["last_seen_ms"], 19000, delta=1)
            status, _, answer = await wait(self.request("GET", "/presence/bob"))
            self.assertEqual((answer["sessions"][0]["stale"],
                              answer["sessions"][0]["rtt_ms"]), (True, 250.0))

            # A message from him counts as seen: no longer stale.
            send(bob, {"type": "ping", "id": 1})
            await self.advance(5)
            seen = bob_of(await self.members(ada, ada_t, "room:1"))
            self.assertEqual(seen["stale"], False)
            self.assertAlmostEqual(seen["last_seen_ms"], 5000, delta=1)
        return run(check())


class OneJoinPerPersonTests(PresenceTestCase):
    """"presence": "accounts": a join when an account's first session in the
    channel arrives, a leave when its last one goes, --leave-delay (3 s)
    later, cancelled if it comes back meanwhile, on any node; the account's
    offline waits the same. Both nodes on one Clock."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.clock = real_time_clock()
        self.a = self.node("node-da", self.clock, leave_delay=3.0)
        self.b = self.node("node-db", self.clock, leave_delay=3.0)

    async def advance(self, seconds, step=0.5):
        for _ in range(int(seconds / step)):
            self.clock.advance(step)
            for node in (self.a, self.b):
                await wait(node.hub.writer.finished())
                if node.hub.departures._loop is not None:
                    await wait(defer.ensureDeferred(node.hub.departures.publish_due()))

    async def watcher(self):
        """Ada on A, subscribed to room:1 with account-level presence."""
        _, ada, ada_t = await self.person(self.a, "ada", ADA)
        await self.subscribed(ada, ada_t, "room:1", presence="accounts")
        return ada, ada_t

    def events_of(self, kind, account="bob"):
        return [e for e in self.events if e["type"] == kind and e["account"] == account]

    async def settled(self):
        """What was published has been received."""
        await wait(self.engine.execute("PING"))
        await self.advance(0.5)

    def test_a_reload_on_another_node_within_the_delay_is_no_leave(self):
        async def check():
            ada, ada_t = await self.watcher()
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob, bob_t, "room:1")
            await until(lambda: of(ada_t, "join", account="bob"), 10, "bob's join")
            self.assertEqual(of(ada_t, "join", account="bob"),
                             [{"type": "join", "channel": "room:1", "account": "bob",
                               "info": BOB}])
            # Bob reloads his page: his session on B goes, and he is back on
            # A 2 s later.
            lose(bob, bob_t)
            await self.advance(2.0)
            _, again, again_t = await self.person(self.a, "bob", BOB)
            await self.subscribed(again, again_t, "room:1")
            await self.advance(5.0)
            await self.settled()
            self.assertEqual(len(of(ada_t, "join", account="bob")), 1)
            self.assertEqual(of(ada_t, "leave", account="bob"), [])
            self.assertEqual(len(self.events_of("online")), 1)
            self.assertEqual(self.events_of("offline"), [])
            self.assertIn("bob", (await wait(self.store.online_accounts())))
        return run(check())

    def test_the_last_session_leaves_exactly_once_after_the_delay(self):
        async def check():
            ada, ada_t = await self.watcher()
            _, bob1, bob1_t = await self.person(self.a, "bob", BOB)
            await self.subscribed(bob1, bob1_t, "room:1")
            _, bob2, bob2_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob2, bob2_t, "room:1")
            await self.advance(1.0)
            self.assertEqual(len(of(ada_t, "join", account="bob")), 1, "one join per person")
            lose(bob1, bob1_t)  # one of two: no leave, ever
            await self.advance(5.0)
            await self.settled()
            self.assertEqual(of(ada_t, "leave", account="bob"), [])
            lose(bob2, bob2_t)  # the last one: a leave, 3 s later
            await self.advance(2.5)
            await self.settled()
            self.assertEqual(of(ada_t, "leave", account="bob"), [], "not before the delay")
            self.assertEqual(self.events_of("offline"), [])
            self.assertIn("bob", (await wait(self.store.online_accounts())))
            # Meanwhile he is still there, without sessions, for a page that
            # asks now (a viewer reconnecting at the same time).
            members = await self.members(ada, ada_t, "room:1")
            self.assertEqual([(m["account"], m["info"], len(m["sessions"])) for m in members],
                             [("ada", ADA, 1), ("bob", BOB, 0)])
            _, _, counts = await wait(self.request("GET", "/channels/room:1"))
            self.assertEqual((counts["sessions"], counts["accounts"]), (1, 2))
            await self.advance(1.5)
            await until(lambda: of(ada_t, "leave", account="bob"), 10, "bob's leave")
            await until(lambda: self.events_of("offline"), 10, "bob's offline")
            await self.advance(3.0)
            await self.settled()
            leave, = of(ada_t, "leave", account="bob")
            self.assertEqual((leave["channel"], leave["info"], leave["ended"]["code"]),
                             ("room:1", BOB, 1006))
            self.assertNotIn("session", leave)
            offline, = self.events_of("offline")
            self.assertEqual(offline["session"], bob2.id)
            _, _, counts = await wait(self.request("GET", "/channels/room:1"))
            self.assertEqual((counts["sessions"], counts["accounts"]), (1, 1))
            self.assertNotIn("bob", (await wait(self.store.online_accounts())))
        return run(check())

    def test_a_departure_outlives_the_node_it_left(self):
        async def check():
            ada, ada_t = await self.watcher()
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob, bob_t, "room:1")
            lose(bob, bob_t)
            await wait(self.b.hub.writer.finished())
            self.b.hub.departures.stop()  # B is gone: only A's clock takes it
            self.b.hub.departures._loop = None
            await self.advance(4.0)
            await until(lambda: of(ada_t, "leave", account="bob"), 10, "bob's leave from A")
            self.assertEqual(len(of(ada_t, "leave", account="bob")), 1)
        return run(check())

    def test_per_session_presence_still_hears_every_session(self):
        async def check():
            _, eve, eve_t = await self.person(self.a, "eve", BOB)
            await self.subscribed(eve, eve_t, "room:1", presence=True)
            _, bob1, bob1_t = await self.person(self.a, "bob", BOB)
            await self.subscribed(bob1, bob1_t, "room:1")
            _, bob2, bob2_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob2, bob2_t, "room:1")
            lose(bob1, bob1_t)
            await until(lambda: len(of(eve_t, "join", account="bob")) == 2
                        and len(of(eve_t, "leave", account="bob")) == 1, 10, "both joins, a leave")
            self.assertTrue(all("session" in d for d in of(eve_t, "join") + of(eve_t, "leave")))
        return run(check())


class ChannelAPITests(PresenceTestCase):
    """GET /channels, /channels/CHANNEL and /channels/CHANNEL/members, over
    members on both nodes; the counts are two HLENs, kept by the scripts
    that change the membership."""

    server_settings = {"max_connections_per_ip": 0}
    # 10,000 joins keep both nodes' reactors busy with their events for a
    # while: without hiredis (scripts/test.sh --without-speedups) a members
    # page waited past the default 2 s bound behind them. What is tested is
    # the counts and the paging, not that bound.
    redis_timeout = 30

    def join_many(self, node, accounts, channel):
        sessions = []
        for account in accounts:
            session, transport = self.open_session(node, account)
            send(session, {"type": "subscribe", "channel": channel})
            sessions.append((session, transport))
        return sessions

    def test_counts_and_paging_over_10000_members_on_two_nodes(self):
        async def check():
            accounts = ["user-%05d" % i for i in range(5000)]
            # Every account has a session on each node: 10,000 members.
            on_a = self.join_many(self.a, accounts, "room:big")
            self.join_many(self.b, accounts, "room:big")
            self.join_many(self.a, ["ada"], "room:small")
            for node in (self.a, self.b):
                await wait(node.hub.writer.finished())
            status, _, answer = await wait(self.request("GET", "/channels/room:big"))
            self.assertEqual((status, answer),
                             (200, {"channel": "room:big", "sessions": 10000, "accounts": 5000}))
            # Every account once, with both its sessions, over pages.
            seen = {}
            cursor, pages = 0, 0
            while True:
                status, _, answer = await wait(self.request(
                    "GET", "/channels/room:big/members?limit=500&cursor=%d" % cursor))
                self.assertEqual(status, 200, answer)
                pages += 1
                for member in answer["members"]:
                    self.assertNotIn(member["account"], seen)
                    seen[member["account"]] = member
                cursor = answer["cursor"]
                if cursor is None:
                    break
            self.assertGreater(pages, 5)
            self.assertEqual(sorted(seen), accounts)
            self.assertTrue(all(len(m["sessions"]) == 2 for m in seen.values()))
            self.assertEqual({s["node"] for m in seen.values() for s in m["sessions"]},
                             {"node-a", "node-b"})
            # GET /channels, a channel a page.
            listed, cursor = [], 0
            while True:
                status, _, answer = await wait(self.request(
                    "GET", "/channels?limit=1&cursor=%d" % cursor))
                listed.extend(answer["channels"])
                cursor = answer["cursor"]
                if cursor is None:
                    break
            self.assertEqual(sorted(listed, key=lambda c: c["channel"]), [
                {"channel": "room:big", "sessions": 10000, "accounts": 5000},
                {"channel": "room:small", "sessions": 1, "accounts": 1}])
            # Half of A's sessions go: the counts follow, in the same step.
            for session, transport in on_a[:2500]:
                lose(session, transport)
            await wait(self.a.hub.writer.finished())
            status, _, answer = await wait(self.request("GET", "/channels/room:big"))
            self.assertEqual(answer, {"channel": "room:big", "sessions": 7500, "accounts": 5000})
            status, _, answer = await wait(self.request("GET", "/channels/room:none"))
            self.assertEqual(answer, {"channel": "room:none", "sessions": 0, "accounts": 0})
            status, _, answer = await wait(self.request("GET", "/channels/a%20b"))
            self.assertEqual(status, 400)
        return run(check())

    def test_an_empty_channel_is_no_longer_listed(self):
        async def check():
            (session, transport), = self.join_many(self.b, ["ada"], "room:1")
            await wait(self.b.hub.writer.finished())
            _, _, answer = await wait(self.request("GET", "/channels"))
            self.assertEqual([c["channel"] for c in answer["channels"]], ["room:1"])
            lose(session, transport)
            await wait(self.b.hub.writer.finished())
            _, _, answer = await wait(self.request("GET", "/channels"))
            self.assertEqual(answer, {"channels": [], "cursor": None})
        return run(check())


class ServerSideSubscriptionTests(PresenceTestCase):
    """POST /subscribe and /unsubscribe act on every matching session on any
    node, without a ticket right; remembered across resume."""

    async def publish(self, channel, data):
        status, _, answer = await wait(self.request("POST", "/publish",
                                                    {"channels": [channel], "data": data}))
        self.assertEqual(status, 200, answer)

    def test_an_account_is_subscribed_and_unsubscribed_on_both_nodes(self):
        async def check():
            _, on_a, on_a_t = await self.person(self.a, "ada", ADA)
            _, on_b, on_b_t = await self.person(self.b, "ada", ADA)
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            # The ticket allows room:* only: the backend decides, not it.
            status, _, answer = await wait(self.request(
                "POST", "/subscribe", {"account": "ada", "channel": "private:ada-bob"}))
            self.assertEqual((status, answer), (200, {"sessions": 2}))
            for transport in (on_a_t, on_b_t):
                self.assertEqual(of(transport, "subscribed", channel="private:ada-bob"),
                                 [{"type": "subscribed", "channel": "private:ada-bob",
                                   "by": "server"}])
            self.assertEqual(of(bob_t, "subscribed"), [])
            # The dashboard's events of the connection say who subscribed it.
            self.assertIn("subscribed to private:ada-bob by the server",
                          [text for _, text in on_b.events])
            await self.publish("private:ada-bob", "hello")
            for transport in (on_a_t, on_b_t):
                await until(lambda: of(transport, "message", channel="private:ada-bob"), 10,
                            "the message")
            _, _, counts = await wait(self.request("GET", "/channels/private:ada-bob"))
            self.assertEqual((counts["sessions"], counts["accounts"]), (2, 1))
            # One session, by its id.
            status, _, answer = await wait(self.request(
                "POST", "/unsubscribe", {"session": on_b.id, "channel": "private:ada-bob"}))
            self.assertEqual(answer, {"sessions": 1})
            self.assertEqual(of(on_b_t, "unsubscribed", channel="private:ada-bob"),
                             [{"type": "unsubscribed", "channel": "private:ada-bob",
                               "by": "server"}])
            self.assertEqual(of(on_a_t, "unsubscribed"), [])
            status, _, answer = await wait(self.request(
                "POST", "/unsubscribe", {"account": "ada", "channel": "private:ada-bob"}))
            self.assertEqual(answer, {"sessions": 1})
            status, _, answer = await wait(self.request(
                "POST", "/subscribe", {"channel": "private:x"}))
            self.assertEqual(status, 400)
        return run(check())

    def test_a_server_side_subscription_is_remembered_across_resume(self):
        async def check():
            welcome, ada, ada_t = await self.person(self.a, "ada", ADA)
            _, _, answer = await wait(self.request(
                "POST", "/subscribe", {"account": "ada", "channel": "private:ada"}))
            self.assertEqual(answer, {"sessions": 1})
            await wait(self.a.hub.work.finished())
            lose(ada, ada_t)
            welcome, again, again_t = await self.welcomed(self.b, "resume=" + welcome["resume"])
            await until(lambda: of(again_t, "subscribed", channel="private:ada"), 10,
                        "subscribed again")
            await self.publish("private:ada", "still here")
            await until(lambda: of(again_t, "message", channel="private:ada"), 10,
                        "the message on the resumed session")
            # And the next token remembers it too.
            await wait(self.b.hub.writer.finished())
            lose(again, again_t)
            _, third, third_t = await self.welcomed(self.a, "resume=" + welcome["resume"])
            await until(lambda: of(third_t, "subscribed", channel="private:ada"), 10,
                        "subscribed a third time")
        return run(check())


class WhisperTests(PresenceTestCase):
    """{"type": "whisper", "channel", "data"}: to every other subscriber of
    the channel on every node, not the sender, not stored; only on channels
    the ticket's "whisper" patterns allow; rate-limited (here 2 a second,
    3 at once) and capped in size."""

    hub_settings = {"max_whisper_rate": 2.0, "whisper_burst": 3, "leave_delay": 0.0}

    async def room(self):
        _, ada, ada_t = await self.person(self.a, "ada", ADA, whisper=["room:*"])
        await self.subscribed(ada, ada_t, "room:1")
        _, bob, bob_t = await self.person(self.b, "bob", BOB, whisper=["room:*"])
        await self.subscribed(bob, bob_t, "room:1")
        _, eve, eve_t = await self.person(self.a, "eve", {"name": "Eve"})
        await self.subscribed(eve, eve_t, "room:1")
        return (ada, ada_t), (bob, bob_t), (eve, eve_t)

    def test_a_whisper_reaches_the_others_on_both_nodes_and_not_the_sender(self):
        async def check():
            (ada, ada_t), (bob, bob_t), (eve, eve_t) = await self.room()
            send(ada, {"type": "whisper", "channel": "room:1", "data": {"typing": True}})
            expected = {"type": "whisper", "channel": "room:1", "account": "ada",
                        "session": ada.id, "data": {"typing": True}}
            for transport in (bob_t, eve_t):
                await until(lambda: of(transport, "whisper"), 10, "the whisper")
                self.assertEqual(of(transport, "whisper"), [expected])
            await wait(self.engine.execute("PING"))
            self.assertEqual(of(ada_t, "whisper"), [])
            self.assertEqual(of(ada_t, "error"), [])
            # Not stored: no entry in the stream backends read.
            self.assertEqual(await wait(self.engine.execute("EXISTS", self.keys.stream)), 0)
        return run(check())

    def test_without_the_right_or_the_subscription_the_sender_is_told_why(self):
        async def check():
            (ada, ada_t), (bob, bob_t), (eve, eve_t) = await self.room()
            send(eve, {"type": "whisper", "channel": "room:1", "data": 1})
            await until(lambda: of(eve_t, "error"), 10, "eve's error")
            self.assertEqual(of(eve_t, "error"), [{
                "type": "error", "reason": "whisper not allowed by the ticket",
                "request": "whisper", "channel": "room:1"}])
            send(ada, {"type": "whisper", "channel": "room:2", "data": 1})
            await until(lambda: of(ada_t, "error"), 10, "ada's error")
            self.assertEqual(of(ada_t, "error")[0]["reason"],
                             "subscribe to a channel to whisper on it")
            send(ada, {"type": "whisper", "channel": "room:1", "data": "x" * 5000})
            await until(lambda: len(of(ada_t, "error")) == 2, 10, "the size error")
            self.assertEqual(of(ada_t, "error")[1]["reason"],
                             "whisper too large: at most 4096 bytes of data as JSON")
            await wait(self.engine.execute("PING"))
            self.assertEqual(of(bob_t, "whisper"), [])
        return run(check())

    def test_whispers_past_the_burst_are_refused(self):
        async def check():
            (ada, ada_t), (bob, bob_t), (eve, eve_t) = await self.room()
            for number in range(5):
                send(ada, {"type": "whisper", "channel": "room:1", "data": number})
            await until(lambda: len(of(bob_t, "whisper")) == 3, 10, "three whispers")
            self.assertEqual([e["reason"] for e in of(ada_t, "error")],
                             ["too many whispers: at most 2 a second"] * 2)
            await wait(self.engine.execute("PING"))
            # The first three, in the order they were sent.
            self.assertEqual([w["data"] for w in of(bob_t, "whisper")], [0, 1, 2])
        return run(check())


class FirepresenceTests(PresenceTestCase):
    """Firepresence speaks the same messages: a firepresence session on B
    whispers to a WebSocket session on A, hears an account-level join and
    the members' info, and is subscribed by the server."""

    hub_settings = {"leave_delay": 0.0}

    def lines(self, transport):
        stream = transport.value().partition(b"\r\n\r\n")[2]
        return [json.loads(line) for line in stream.split(b"\n") if line.strip()]

    def test_the_same_messages_over_firepresence(self):
        async def check():
            _, ada, ada_t = await self.person(self.a, "ada", ADA, whisper=["room:*"])
            await self.subscribed(ada, ada_t, "room:1")
            ticket = await self.ticket("bob", BOB, whisper=["room:*"])
            fire = self.open(self.b, FIREPRESENCE.replace(b"t0k3n", ticket.encode()))
            await until(lambda: any(d["type"] == "welcome" for d in self.lines(fire)), 10,
                        "the welcome")
            bob = fire.protocol
            bob.dataReceived(json.dumps({"type": "subscribe", "channel": "room:1",
                                         "presence": "accounts"}).encode() + b"\n")
            await until(lambda: any(d["type"] == "subscribed" for d in self.lines(fire)), 10,
                        "subscribed")
            bob.dataReceived(json.dumps({"type": "members", "channel": "room:1"}).encode()
                             + b"\n")
            await until(lambda: any(d["type"] == "members" for d in self.lines(fire)), 10,
                        "members")
            members = next(d for d in self.lines(fire) if d["type"] == "members")["members"]
            self.assertEqual([(m["account"], m["info"]) for m in members],
                             [("ada", ADA), ("bob", BOB)])
            bob.dataReceived(json.dumps({"type": "whisper", "channel": "room:1",
                                         "data": {"typing": True}}).encode() + b"\n")
            await until(lambda: of(ada_t, "whisper"), 10, "bob's whisper on A")
            self.assertEqual(of(ada_t, "whisper")[0]["account"], "bob")
            _, eve, eve_t = await self.person(self.a, "eve", {"name": "Eve"})
            await self.subscribed(eve, eve_t, "room:1")
            await until(lambda: any(d.get("type") == "join" and d["account"] == "eve"
                                    for d in self.lines(fire)), 10, "eve's join")
            join = next(d for d in self.lines(fire) if d.get("type") == "join")
            self.assertEqual(join, {"type": "join", "channel": "room:1", "account": "eve",
                                    "info": {"name": "Eve"}})
            _, _, answer = await wait(self.request(
                "POST", "/subscribe", {"account": "bob", "channel": "private:bob"}))
            self.assertEqual(answer, {"sessions": 1})
            self.assertIn({"type": "subscribed", "channel": "private:bob", "by": "server"},
                          self.lines(fire))
        return run(check())


class WhisperOrderTests(PresenceTestCase):
    """A session's whispers arrive in the order it sent them."""

    hub_settings = {"max_whisper_rate": 0.0, "leave_delay": 0.0}

    def test_a_hundred_whispers_arrive_in_order_on_the_other_node(self):
        async def check():
            _, ada, ada_t = await self.person(self.a, "ada", ADA, whisper=["room:*"])
            await self.subscribed(ada, ada_t, "room:1")
            _, bob, bob_t = await self.person(self.b, "bob", BOB)
            await self.subscribed(bob, bob_t, "room:1")
            for number in range(100):
                send(ada, {"type": "whisper", "channel": "room:1", "data": number})
            await until(lambda: len(of(bob_t, "whisper")) == 100, 10, "a hundred whispers")
            self.assertEqual([w["data"] for w in of(bob_t, "whisper")], list(range(100)))
        return run(check())
