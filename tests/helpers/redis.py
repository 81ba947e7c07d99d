"""A real Redis for the tests: the embedded ``redis-server`` the server
itself starts (presence/redis/embedded.py), never an imitation of one.

    class MyTests(RedisTestCase):
        def test_something(self):
            # self.embedded, self.engine (timeout 0.5 s), self.store,
            # self.keys, self.tickets
            ...
"""

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from presence.hub.tickets import TicketStore
from presence.redis.embedded import EmbeddedRedis
from presence.redis.engine import RedisEngine, RedisUnavailable
from presence.redis.keys import PresenceKeys
from presence.redis.store import PresenceStore

from .waiting import eventually, run

__all__ = ["ENGINE_TIMEOUT", "RECONNECT_BOUND", "RedisTestCase", "reconnected"]

#: Seconds a Redis command may take before RedisUnavailable.
ENGINE_TIMEOUT = 0.5

#: How long a test waits for the pool to reconnect after Redis comes back
#: (txredisapi backs off 1 s, then e times longer each attempt).
RECONNECT_BOUND = 15.0


def reconnected(attempt, retry_on=(RedisUnavailable,)):
    """A Deferred: the result of ``attempt()`` once Redis answers again
    (retried while it fails with ``retry_on``, for RECONNECT_BOUND seconds)."""
    return run(eventually(attempt, RECONNECT_BOUND, 0.1, retry_on))


class RedisTestCase(TestCase):
    """Each test gets its own redis-server (a child process on a unix
    socket), a RedisEngine on it, the PresenceStore of the default prefix
    and a TicketStore over that store."""

    engine_timeout = ENGINE_TIMEOUT
    ticket_ttl = 10

    @defer.inlineCallbacks
    def setUp(self):
        self.embedded = EmbeddedRedis(reactor)
        # Cleanups run last-added first: the engines are disconnected
        # before Redis stops.
        self.addCleanup(self.embedded.stopService)
        self.redis_url = yield self.embedded.started()
        self.engine = self.make_engine()
        self.keys = PresenceKeys()
        self.store = PresenceStore(self.engine, self.keys)
        self.tickets = TicketStore(self.store, reactor, ttl=self.ticket_ttl)
        yield self.engine.ping()

    def make_engine(self, **options):
        """Another RedisEngine on this test's Redis, disconnected at cleanup."""
        options.setdefault("timeout", self.engine_timeout)
        engine = RedisEngine(self.redis_url, reactor, **options)
        self.addCleanup(engine.disconnect)
        return engine

    def stop_redis(self):
        """Stop redis-server (``self.embedded.started()`` starts it again on
        the same socket)."""
        return self.embedded.stop_process()
