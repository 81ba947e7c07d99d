"""Redis updates in flight: a node keeps each until it completes (its stop
waits for them), and counts and logs the ones that fail."""

import collections

from twisted.internet import defer
from twisted.logger import Logger

from ..redis.engine import RedisUnavailable

__all__ = ["HubStats", "RedisWork"]

log = Logger()


class HubStats:
    """The hub's counters (the dashboard's overview and /metrics)."""

    def __init__(self):
        self.published = 0  # client publishes added to the stream
        self.delivered = 0  # messages written to local sessions
        self.redis_messages = 0
        #: Presence changes written (presence/hub/writer.py), and sessions
        #: paused because too many were waiting.
        self.presence_writes = 0
        self.presence_batches = 0
        self.paused_for_redis = 0
        #: Pub/sub messages that could not be delivered, by reason.
        self.bad_redis_messages = collections.Counter()
        self.redis_errors = 0
        self.redis_reconnects = 0
        self.redis_outage_seconds = 0.0
        self.reaped_nodes = 0
        self.reasserted = 0  # times this node found it had been reaped, and re-asserted
        self.errors = {}  # reasons sent in error messages, counted
        #: Subscribes that asked to recover a history channel: attempted,
        #: succeeded (every publication after the client's offset sent),
        #: failed (another epoch, or trimmed past it: "recovered": false).
        self.recoveries = collections.Counter(attempted=0, succeeded=0, failed=0)


class RedisWork:
    def __init__(self, stats):
        self.stats = stats
        self._pending = set()

    def track(self, work, what):
        """Keep a Redis update (a Deferred or a coroutine) until it completes;
        log (and count) failures."""
        deferred = defer.ensureDeferred(work)
        self._pending.add(deferred)

        def done(result):
            self._pending.discard(deferred)
            return result

        def failed(failure):
            self.stats.redis_errors += 1
            if failure.check(RedisUnavailable):
                log.warn("presence: Redis unavailable: {what} not recorded", what=what)
            else:
                log.failure("presence: {what}", failure, what=what)
        return deferred.addBoth(done).addErrback(failed)

    def finished(self):
        """A Deferred firing once every update in flight completed."""
        return defer.DeferredList(list(self._pending), consumeErrors=True)
