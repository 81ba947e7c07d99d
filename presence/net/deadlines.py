"""Per-connection deadlines checked by one periodic sweep.

Handshake and close timeouts are needed by many connections for short
times. A ``DelayedCall`` per connection costs a heap entry and a cancellation
for every connection that finishes in time (nearly all of them); instead,
each connection that has a deadline sits in one dict, and a single
``LoopingCall`` that runs only while the dict is not empty expires the late
ones. Deadlines are therefore honoured to within ``resolution`` seconds.
"""

from twisted.internet.task import LoopingCall

__all__ = ["Deadlines"]


class Deadlines:
    """``set(owner, when)``; at the first sweep after ``when``,
    ``owner.deadline_expired()`` is called (once)."""

    def __init__(self, clock, resolution=0.5):
        self.clock = clock
        self.resolution = resolution
        self._due = {}
        self._sweep = None

    def __len__(self):
        return len(self._due)

    def __contains__(self, owner):
        return owner in self._due

    def set(self, owner, delay):
        self._due[owner] = self.clock.seconds() + delay
        if self._sweep is None:
            self._sweep = LoopingCall(self._expire)
            self._sweep.clock = self.clock
            self._sweep.start(self.resolution, now=False)

    def discard(self, owner):
        self._due.pop(owner, None)

    def _expire(self):
        now = self.clock.seconds()
        late = [owner for owner, when in self._due.items() if when <= now]
        for owner in late:
            if self._due.pop(owner, None) is not None:
                owner.deadline_expired()
        if not self._due and self._sweep is not None:
            self._sweep.stop()
            self._sweep = None

    def stop(self):
        """Stop sweeping (service shutdown); pending deadlines are dropped."""
        self._due.clear()
        if self._sweep is not None:
            self._sweep.stop()
            self._sweep = None
