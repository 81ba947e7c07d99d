"""A node's liveness on a Clock and a real Redis: it announces itself at every
tick of its own clock; when a node stops announcing (its key gone, as Redis
expires it), the first survivor to look reaps its sessions, once, and says
so; and a node reaped while alive asserts its sessions again at its next
announcement. Each node here has a Clock of its own: nothing happens until
the test advances it (the Redis work it starts is waited for, bounded)."""

import json

from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from presence.redis.engine import RedisUnavailable
from presence.redis.subscriber import RedisSubscriber
from presence.websocket.frames import OP_TEXT

from .helpers.framing import client_frame
from .helpers.hubs import HubTestCase
from .helpers.waiting import run, until

HEARTBEAT = 5.0


def clock_at(seconds):
    clock = Clock()
    clock.advance(seconds)
    return clock


class LivenessTests(HubTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.events = []
        events = RedisSubscriber(self.redis_url, self._event, reactor=reactor)
        events.subscribe(self.keys.events)
        self.addCleanup(events.close)
        yield run(until(lambda: events.connected, 10, "the events subscription"))

    def _event(self, channel, message):
        self.events.append(json.loads(message))

    def until(self, condition, message, timeout=10.0):
        return run(until(condition, timeout, message))

    def report(self, node):
        """The node's announcement in Redis (its report), or None."""
        return self.engine.execute("GET", self.keys.node(node.hub.node_id)).addCallback(
            lambda info: json.loads(info) if info else None)

    def announced_at(self, node, seconds):
        """Once the node's announcement says it was made at ``seconds``."""
        def made():
            return self.report(node).addCallback(
                lambda report: report is not None and report["heartbeat_at"] == seconds)
        return self.until(made, "%s's announcement at %s" % (node.hub.node_id, seconds))

    @defer.inlineCallbacks
    def tick(self, node):
        """Advance ``node``'s clock to its next announcement, and wait until
        it is done (its Redis work is real I/O)."""
        node.clock.advance(HEARTBEAT)
        yield node.hub.liveness.finished()

    @defer.inlineCallbacks
    def start(self, at):
        """A node whose clock starts at ``at``, once it announced itself."""
        node = self.start_node(clock_at(at), node_heartbeat=HEARTBEAT)
        yield node.hub.liveness.finished()
        yield self.announced_at(node, at)
        return node

    def start_all(self, *ats):
        return defer.gatherResults([self.start(at) for at in ats])

    @defer.inlineCallbacks
    def member_of(self, channel):
        members = yield self.store.members(channel)
        return members

    @defer.inlineCallbacks
    def ann_subscribed_on(self, node):
        session, transport = self.open_session(node, "ann")
        session.dataReceived(client_frame(OP_TEXT, json.dumps(
            {"type": "subscribe", "channel": "room:1"})))

        def recorded():
            return defer.gatherResults([self.store.online_accounts(),
                                        self.member_of("room:1")]).addCallback(
                lambda both: "ann" in both[0] and both[1] == {session.id: "ann"})
        yield self.until(recorded, "ann online and a member of room:1")
        return session, transport

    def of(self, kind, account="ann"):
        return [e for e in self.events if e["type"] == kind and e["account"] == account]

    @defer.inlineCallbacks
    def test_a_node_announces_itself_at_start_and_at_every_heartbeat_of_its_clock(self):
        node = yield self.start(1000)
        node_id = node.hub.node_id
        self.assertIn(node_id, (yield self.store.nodes()))
        ttl = yield self.engine.execute("TTL", self.keys.node(node_id))
        self.assertTrue(HEARTBEAT * 3 - 1 <= int(ttl) <= HEARTBEAT * 3, ttl)
        for tick in (1, 2):
            yield self.tick(node)
            yield self.announced_at(node, 1000 + tick * HEARTBEAT)
        report = yield self.report(node)
        self.assertEqual((report["id"], report["started_at"]), (node_id, 1000))

    @defer.inlineCallbacks
    def test_a_survivor_reaps_a_dead_nodes_sessions_once_and_backends_hear_why(self):
        dead, survivor, other = yield self.start_all(100, 200, 300)
        session, _ = yield self.ann_subscribed_on(dead)

        # The node stops: its clock no longer moves, and its key expires (as
        # Redis would, three heartbeats of real time later).
        yield self.engine.execute("DEL", self.keys.node(dead.hub.node_id))
        yield self.tick(survivor)
        self.assertEqual(survivor.hub.stats.reaped_nodes, 1)
        yield self.until(lambda: self.of("offline") and self.of("unsubscribe"),
                         "ann's offline and unsubscribe events")
        # Why: its node died, and was reaped (no close record).
        self.assertEqual(self.of("offline"), [{"type": "offline", "account": "ann",
                                               "session": session.id,
                                               "node": dead.hub.node_id,
                                               "ended": {"reaped": True}}])
        self.assertNotIn("ann", (yield self.store.online_accounts()))
        self.assertEqual((yield self.member_of("room:1")), {})
        self.assertNotIn(dead.hub.node_id, (yield self.store.nodes()))
        self.assertEqual((yield self.engine.execute(
            "EXISTS", self.keys.node_reaped(dead.hub.node_id))), 1)

        # Another survivor looks later: the sessions were claimed once.
        yield self.tick(other)
        yield self.announced_at(other, 300 + HEARTBEAT)
        self.assertEqual(other.hub.stats.reaped_nodes, 0)
        self.assertEqual(len(self.of("offline")), 1)

    @defer.inlineCallbacks
    def test_a_node_reaped_while_alive_asserts_its_sessions_again(self):
        paused, survivor = yield self.start_all(100, 200)
        session, transport = yield self.ann_subscribed_on(paused)
        yield self.engine.execute("DEL", self.keys.node(paused.hub.node_id))
        yield self.tick(survivor)
        yield self.until(lambda: self.of("offline"), "ann reaped")
        self.events.clear()

        # The paused node's clock moves again: its announcement finds it was
        # reaped, and puts its sessions back.
        yield self.tick(paused)
        self.assertEqual(paused.hub.stats.reasserted, 1)
        yield self.until(lambda: self.of("online") and self.of("subscribe"),
                         "ann's online and subscribe events again")
        self.assertIn("ann", (yield self.store.online_accounts()))
        self.assertEqual((yield self.member_of("room:1")), {session.id: "ann"})
        self.assertIn(paused.hub.node_id, (yield self.store.nodes()))
        self.assertEqual((yield self.engine.execute(
            "EXISTS", self.keys.node_reaped(paused.hub.node_id))), 0)
        self.assertTrue(transport.connected)  # the client never noticed

    @defer.inlineCallbacks
    def test_a_re_assertion_that_redis_failed_is_made_at_the_next_heartbeat(self):
        """A failover to a replica that lost the node's writes: the
        subscription comes back first and asks for the re-assertion, whose
        announcement fails (the command pool not back yet); the next
        heartbeat's announcement re-asserts the sessions (nothing marked the
        node reaped: without the due re-assertion, ann stays out)."""
        node = yield self.start(100)
        session, transport = yield self.ann_subscribed_on(node)
        store = node.hub.liveness.store
        announce_node, failed = store.announce_node, []

        def failing_once(*args):
            if not failed:
                failed.append(True)
                return defer.fail(RedisUnavailable("the pool is not back yet"))
            return announce_node(*args)
        store.announce_node = failing_once
        yield self.engine.execute("FLUSHALL")
        yield self.engine.execute("CLIENT", "KILL", "TYPE", "pubsub")
        yield self.until(lambda: failed and node.hub.stats.redis_reconnects == 1,
                         "the reconnection's re-assertion, failed")
        yield node.hub.work.finished()
        self.assertNotIn("ann", (yield self.store.online_accounts()))

        yield self.tick(node)
        yield self.until(lambda: self.store.online_accounts().addCallback(
            lambda accounts: "ann" in accounts), "ann online again")
        yield self.until(lambda: self.member_of("room:1").addCallback(
            lambda members: members == {session.id: "ann"}), "ann a member of room:1 again")
        self.assertTrue(transport.connected)

    # Writes a dead node's records as its APPLY batches would have: each
    # session online under its own account and a member of one of 100 rooms.
    POPULATE = """
local node, count = ARGV[1], tonumber(ARGV[2])
local sessions, memberships, online = KEYS[1], KEYS[2], KEYS[3]
local account_of, members_of = ARGV[3], ARGV[4]
for i = 1, count do
  local sid, account, room = node .. '-' .. i, 'user-' .. i, 'room:' .. (i % 100)
  redis.call('HSET', sessions, sid, cjson.encode({account = account}))
  redis.call('HSET', account_of .. account, sid, '{}')
  redis.call('SADD', online, account)
  redis.call('HSET', memberships, sid .. ' ' .. room, '')
  redis.call('HSET', members_of .. room, sid, account)
end
return count
"""

    @defer.inlineCallbacks
    def test_reaping_fifty_thousand_sessions_leaves_the_reapers_own_heartbeat_on_time(self):
        # M-1: a node reaping a big dead node inline in its heartbeat missed
        # its own announcement and was reaped, live, by a third node.
        dead, survivor = yield self.start_all(100, 200)
        dead_id, keys = dead.hub.node_id, self.keys
        sessions, memberships = keys.node_sessions(dead_id), keys.node_memberships(dead_id)
        # One script writing 250,000 records takes Redis a second or more.
        populating = self.make_engine(timeout=60)
        yield populating.execute("EVAL", self.POPULATE, 3, sessions, memberships, keys.online,
                                 dead_id, 50000, keys.account(""), keys.members(""))
        yield self.engine.execute("DEL", keys.node(dead_id))
        liveness = survivor.hub.liveness

        def left():
            return self.engine.execute("HLEN", keys.swept(memberships))

        yield self.tick(survivor)  # its announcement claims the dead node's records
        self.assertEqual(survivor.hub.stats.reaped_nodes, 1)
        self.assertIn(dead_id, liveness._sweeps)
        # The announcement was done with before the sweep had gone far.
        self.assertGreater((yield left()), 45000)
        for tick in (2, 3):
            yield self.tick(survivor)  # its next announcements are on time
            self.assertIn(dead_id, liveness._sweeps)
            yield self.announced_at(survivor, 200 + tick * HEARTBEAT)
        yield self.until(lambda: dead_id not in liveness._sweeps, "the sweep's end", 120)
        self.assertEqual((yield self.engine.execute("SCARD", keys.online)), 0)
        self.assertEqual((yield self.engine.execute("EXISTS", keys.swept(sessions),
                                                    keys.swept(memberships),
                                                    keys.members("room:7"))), 0)
        self.assertEqual((yield self.store.claimed()), {})
        # 100,000 events reach the test's subscriber; parsed without hiredis
        # (scripts/test.sh --without-speedups) on a loaded machine that took
        # over 10 s.
        yield self.until(lambda: len(self.of("offline", "user-50000")) == 1,
                         "the last offline event", 60)
