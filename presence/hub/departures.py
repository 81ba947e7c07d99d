"""Departures: an account's leave of a channel ("presence": "accounts") and
its offline wait ``--leave-delay`` seconds in Redis (presence/redis/scripts.py
``DEPARTURES``), and are cancelled if the account comes back meanwhile, on
any node. Every node's clock publishes those that are due
(``DEPARTED``: each once, whichever node takes it), so a departure does not
depend on the node the account left, nor on that node living."""

from twisted.internet import defer, task
from twisted.logger import Logger

from ..redis.engine import RedisUnavailable

__all__ = ["Departures", "DEPARTED_CHUNK"]

log = Logger()

#: Departures one step publishes at most.
DEPARTED_CHUNK = 500


class Departures:
    """``delay``: --leave-delay (0: departures are published at once, and
    this does nothing)."""

    def __init__(self, store, clock, delay):
        self.store = store
        self.clock = clock
        self.delay = delay
        self._loop = None

    @property
    def period(self):
        """Seconds between looks at what is due: a third of the delay, at
        most one second (a leave comes at most that late)."""
        return min(1.0, self.delay / 3.0)

    def start(self):
        if self.delay <= 0:
            return
        self._loop = task.LoopingCall(lambda: defer.ensureDeferred(self.publish_due()))
        self._loop.clock = self.clock
        self._loop.start(self.period, now=False)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    async def publish_due(self):
        """Publish every departure due now."""
        try:
            while await self.store.departed(self.clock.seconds(), DEPARTED_CHUNK) \
                    >= DEPARTED_CHUNK:
                pass
        except RedisUnavailable:
            pass  # due again at the next look
        except Exception:
            log.failure("presence: publishing departures")
