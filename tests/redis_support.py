"""A real Redis for the tests: the embedded ``redis-server`` the server
itself starts (presence.redis_process), never an imitation of one.

    class MyTests(RedisTestCase):
        def test_something(self):
            # self.embedded, self.engine (timeout 0.5 s), self.tickets
            ...
"""

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from presence.engine import RedisEngine, RedisUnavailable
from presence.redis_process import EmbeddedRedis
from presence.tickets import TicketStore

__all__ = ["ENGINE_TIMEOUT", "RedisTestCase", "eventually", "pause"]

#: Seconds a Redis command may take before RedisUnavailable.
ENGINE_TIMEOUT = 0.5

#: How long a test waits for the pool to reconnect after Redis comes back
#: (txredisapi backs off 1 s, then e times longer each attempt).
RECONNECT_BOUND = 15.0


def pause(seconds):
    """A Deferred firing after ``seconds`` of reactor time."""
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def eventually(attempt, bound=RECONNECT_BOUND, interval=0.1, retry_on=(RedisUnavailable,)):
    """Call ``attempt()`` (returning a Deferred) until it succeeds, retrying
    on ``retry_on`` failures for at most ``bound`` seconds; fires with its
    result, or fails with the last failure once the bound is reached."""
    deadline = reactor.seconds() + bound
    while True:
        try:
            result = yield attempt()
        except retry_on:
            if reactor.seconds() > deadline:
                raise
            yield pause(interval)
        else:
            return result


class RedisTestCase(TestCase):
    """Each test gets its own redis-server (a child process on a unix
    socket), a RedisEngine on it and a TicketStore over that engine."""

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
        self.tickets = TicketStore(self.engine, ttl=self.ticket_ttl)
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
