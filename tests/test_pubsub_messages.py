"""Whatever is published on the channels a node listens to, it goes on
delivering: a malformed message (JSON nested 100,000 deep, a field of the
wrong type, not JSON at all) is counted and dropped, never takes the node's
pub/sub connection down with the messages after it; a backend's text with a
lone surrogate (what JavaScript's JSON.stringify writes for a broken pair)
is delivered, escaped. A real Redis, a real subscription, sessions on
StringTransports."""

import json

from twisted.internet import defer

from presence.redis.keys import JUGGERNAUT
from presence.websocket.frames import OP_TEXT

from .helpers.framing import client_frame
from .helpers.hubs import HubTestCase, documents
from .helpers.waiting import run, until

DEEP = "[" * 100000 + "]" * 100000

#: (Redis channel, payload): each must be dropped, counted, and not stop the next.
BAD = [
    ("presence:channel:room:1", DEEP),
    ("presence:channel:room:1", '{"type": "message", "data": ' + DEEP + "}"),
    ("presence:channel:room:1", '{"type": "message", "data": 1, "except": 5}'),
    ("presence:channel:room:1", "not json"),
    ("presence:channel:room:1", '{"data": NaN}'),
    (JUGGERNAUT, DEEP),
    (JUGGERNAUT, json.dumps({"channels": ["room:1"], "data": "x", "except": 5})),
    (JUGGERNAUT, json.dumps({"channels": [5], "data": "x"})),
    (JUGGERNAUT, "[1, 2]"),
    ("presence:control", DEEP),
]


class PubSubTests(HubTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.node = self.start_node()
        yield run(until(lambda: self.node.hub.subscriber.connected, 10, "the subscription"))
        self.session, self.transport = self.open_session(self.node, "ann")
        self.session.dataReceived(client_frame(OP_TEXT, json.dumps(
            {"type": "subscribe", "channel": "room:1"})))
        yield run(until(lambda: self.node.hub.subscriber.channels >= {
            "presence:channel:room:1"}, 10, "the channel's subscription"))
        # The node's own join event comes back through Redis: the channel is live.
        yield run(until(self.subscribed_in_redis, 10, "the subscription in Redis"))
        self.transport.clear()

    @defer.inlineCallbacks
    def subscribed_in_redis(self):
        numsub = yield self.engine.execute("PUBSUB", "NUMSUB", "presence:channel:room:1")
        return int(numsub[1]) >= 1

    def messages(self):
        return [d for d in documents(self.transport) if d.get("type") == "message"]

    @defer.inlineCallbacks
    def test_bad_messages_are_counted_and_the_next_good_one_is_delivered(self):
        protocol = self.node.hub.subscriber.protocol
        for channel, payload in BAD:
            yield self.engine.publish(channel, payload)
        yield self.engine.publish("presence:channel:room:1", json.dumps(
            {"type": "message", "channel": "room:1", "data": "after them"}))
        yield run(until(self.messages, 10, "the message after the bad ones"))
        self.assertEqual([m["data"] for m in self.messages()], ["after them"])
        stats = self.node.hub.stats
        self.assertEqual(sum(stats.bad_redis_messages.values()), len(BAD))
        self.assertEqual(stats.bad_redis_messages["nested deeper than 64 levels"], 4)
        self.assertIs(self.node.hub.subscriber.protocol, protocol)  # never reconnected
        self.assertEqual(stats.redis_reconnects, 0)

    @defer.inlineCallbacks
    def test_a_lone_surrogate_from_a_backend_is_delivered_escaped(self):
        yield self.engine.publish(JUGGERNAUT, '{"channels": ["room:1"], "data": "a\\ud800b"}')
        yield run(until(self.messages, 10, "the message"))
        self.assertIn(b'"a\\ud800b"', self.transport.value())  # as the backend wrote it
        self.assertEqual(self.messages()[0]["data"], "a\ud800b")
        self.assertEqual(sum(self.node.hub.stats.bad_redis_messages.values()), 0)
