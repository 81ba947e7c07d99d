"""The node's command pool (presence/redis/engine.py) against a real
redis-server: back within about a second of Redis's return however long
Redis was away, as the pub/sub connection is (tests/test_redis_subscriber.py).
While the pool is down a node redeems no ticket and re-asserts nothing."""

from twisted.internet import defer, reactor

from presence.redis.engine import RedisUnavailable

from .helpers.redis import RedisTestCase
from .helpers.waiting import eventually, run, until

#: Seconds within which the pool answers again once Redis does: the
#: longest wait between two attempts (1 s), its jitter, the connection's
#: round trip, and the command's.
BACK_WITHIN = 2.5

#: Failed attempts to wait for while Redis is away: by the fourth,
#: txredisapi's own backoff (1 s, e times longer each attempt) is at its
#: 10 s cap.
ATTEMPTS_WHILE_AWAY = 4


class ReconnectingTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_after_a_long_outage_the_pool_answers_within_seconds_of_redis(self):
        engine = self.make_engine()
        self.assertEqual((yield engine.ping()), "PONG")
        # The attempts the backoff was asked about (the real backoff
        # answers), through the factory the engine configured.
        factory = engine._pool._factory
        attempts = []
        backoff = factory.retryDelay

        def delay_before(attempt):
            attempts.append(attempt)
            return backoff(attempt)

        factory.retryDelay = delay_before

        yield self.stop_redis()
        # Each of the pool's connections backs off on its own: wait for
        # every one of them to be at its fourth attempt.
        connections = len(factory.slots)

        def all_at_their_fourth():
            return sum(1 for attempt in attempts if attempt >= ATTEMPTS_WHILE_AWAY) >= connections
        yield run(until(all_at_their_fourth, 20,
                        "every connection's attempt %d to reconnect" % ATTEMPTS_WHILE_AWAY))
        yield self.embedded.started()
        restarted = reactor.seconds()
        answer = yield run(eventually(engine.ping, BACK_WITHIN, 0.05, (RedisUnavailable,)))
        self.assertEqual(answer, "PONG")
        self.assertLess(reactor.seconds() - restarted, BACK_WITHIN)
