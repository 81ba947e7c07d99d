"""Presence stays true when sessions churn: a session's changes reach Redis
in the order it made them, a node's records are gone once it stops, and a
storm of subscribes is written in a few batches, not a round trip each. A
real Redis; the node in-process, its sessions on StringTransports."""

import json

from twisted.internet import defer

from presence.hub import writer as writer_module
from presence.websocket.frames import OP_TEXT

from .helpers.framing import client_frame
from .helpers.hubs import HubTestCase
from .helpers.waiting import lose, pause, run, until


def message(kind, channel):
    return client_frame(OP_TEXT, json.dumps({"type": kind, "channel": channel}))


class ChurnTests(HubTestCase):
    @defer.inlineCallbacks
    def ghosts(self):
        """Every (members hash, session) Redis still lists."""
        found = []
        for key in (yield self.engine.execute("KEYS", self.keys.members("*"))):
            for session in (yield self.engine.execute("HKEYS", key)):
                found.append((key, session))
        return found

    @defer.inlineCallbacks
    def test_churn_then_stop_leaves_no_member_listing_a_closed_session(self):
        node = self.start_node()
        sessions = [self.open_session(node, "user-%d" % n) for n in range(50)]
        for round_ in range(40):
            for number, (session, _) in enumerate(sessions):
                channel = "room:%d" % ((number + round_) % 7)
                session.dataReceived(message("subscribe", channel))
                session.dataReceived(message("unsubscribe", channel))
                if round_ % 3 == 0:
                    session.dataReceived(message("subscribe", "room:stay"))
            yield run(pause(0.001))  # let some writes land between rounds
        for session, transport in sessions:
            lose(session, transport)
        yield node.hub.stop()
        self.assertEqual((yield self.ghosts()), [])
        self.assertEqual((yield self.store.online_accounts()), [])
        self.assertEqual((yield self.engine.execute("KEYS", self.keys.node("*"))), [])

    @defer.inlineCallbacks
    def test_a_sessions_changes_apply_in_the_order_it_made_them(self):
        node = self.start_node()
        session, _ = self.open_session(node, "ann")
        for _ in range(90):  # within the burst of --max-message-rate
            session.dataReceived(message("subscribe", "room:1"))
            session.dataReceived(message("unsubscribe", "room:1"))
        session.dataReceived(message("subscribe", "room:1"))
        self.assertTrue(session.ready and not session.closing)
        yield node.hub.writer.finished()
        self.assertEqual((yield self.store.members("room:1")), {session.id: "ann"})

    @defer.inlineCallbacks
    def test_a_storm_of_subscribes_is_written_in_batches(self):
        node = self.start_node()
        sessions = [self.open_session(node, "user-%d" % n) for n in range(100)]
        for session, _ in sessions:
            session.dataReceived(b"".join(message("subscribe", "room:%d" % channel)
                                          for channel in range(50)))
        yield node.hub.writer.finished()
        batches = node.hub.stats.presence_batches
        self.assertEqual(node.hub.stats.presence_writes, 100 + 100 * 50)  # online + joins
        self.assertLess(batches, 20)
        members = yield self.store.members("room:7")
        self.assertEqual(len(members), 100)

    @defer.inlineCallbacks
    def test_past_the_high_water_mark_subscribing_sessions_wait_for_redis(self):
        self.patch(writer_module, "HIGH_WATER", 50)
        node = self.start_node()
        session, transport = self.open_session(node, "ann")
        session.dataReceived(b"".join(message("subscribe", "room:%d" % n) for n in range(99)))
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(node.hub.stats.paused_for_redis, 1)
        yield node.hub.writer.finished()
        yield run(until(lambda: transport.producerState == "producing", 10, "reading again"))
