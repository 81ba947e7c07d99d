"""The node's pub/sub connection (presence/redis/subscriber.py) against a
real redis-server: back within about a second of Redis's return however
long Redis was away, and closed knowingly by the node's own stop, with
nothing logged as lost."""

from twisted.internet import defer, reactor

from presence.redis.subscriber import RedisSubscriber

from .helpers.hubs import HubTestCase
from .helpers.logs import LoggedLines
from .helpers.redis import RedisTestCase
from .helpers.waiting import run, until

#: Seconds within which the subscriber is subscribed again once Redis
#: answers: the longest wait between two attempts (1 s), its jitter, and
#: the connection's and the subscriptions' round trips.
BACK_WITHIN = 2.5

#: Failed attempts to wait for while Redis is away: by the fourth,
#: txredisapi's own backoff (1 s, e times longer each attempt) is at its
#: 10 s cap, where a node once resubscribed 10 s late.
ATTEMPTS_WHILE_AWAY = 4


class StoppingTests(HubTestCase):
    @defer.inlineCallbacks
    def test_the_nodes_stop_logs_no_lost_subscription(self):
        node = self.start_node()
        yield run(until(lambda: node.hub.subscriber.connected, 10, "the subscription"))
        logged = LoggedLines().attach(self)

        yield defer.ensureDeferred(node.hub.stop())

        self.assertFalse(node.hub.subscriber.connected)
        self.assertEqual(logged.containing("lost the Redis"), [])


class ReconnectingTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_after_a_long_outage_the_subscriber_is_back_within_seconds_of_redis(self):
        connections = []
        messages = []
        subscriber = RedisSubscriber(
            self.redis_url, lambda channel, message: messages.append((channel, message)),
            on_connected=lambda: connections.append(reactor.seconds()), reactor=reactor)
        self.addCleanup(subscriber.close)
        subscriber.subscribe("room:1")
        yield run(until(lambda: connections, 10, "the first connection"))
        # The attempts the backoff was asked about (the real backoff answers).
        attempts = []
        backoff = subscriber.factory.retryDelay

        def delay_before(attempt):
            attempts.append(attempt)
            return backoff(attempt)

        subscriber.factory.retryDelay = delay_before

        yield self.stop_redis()
        yield run(until(lambda: len(attempts) >= ATTEMPTS_WHILE_AWAY, 16,
                        "%d attempts to reconnect" % ATTEMPTS_WHILE_AWAY))
        yield self.embedded.started()
        yield run(until(lambda: len(connections) == 2, BACK_WITHIN,
                        "the subscriber back after Redis's restart"))

        # Subscribed again: what is published now is delivered. (A new
        # engine: the test's own pool may still be backing off.)
        publisher = self.make_engine()
        yield publisher.publish("room:1", "after the outage")
        yield run(until(lambda: messages, 5, "the message after the outage"))
        self.assertEqual(messages, [("room:1", "after the outage")])
