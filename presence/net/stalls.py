"""How long the node itself has stood still: a GC pause, a frozen VM, a long
callback (reaping a dead node's sessions).

While the reactor stands still the clients go on sending, and what they sent
meanwhile arrives in one read afterwards. The message rate limit must not
read that backlog as a flood: a client sending at half the limit would be
closed with 1008 after any pause of five seconds, and every client at once.
So the node watches its own timeliness: a timer that should fire every
``interval`` seconds and fires late by more than that has measured a stall.
A session's allowance may then grow past the burst by what the client could
have sent at the limit during the node's stalls since its last read
(``RateLimitedPeer._refill``, presence/net/ratelimit.py), and by nothing
more: a client that was merely quiet gets its burst, as before.
"""

__all__ = ["StallWatch", "STALL_INTERVAL", "top_up"]

#: How often the watch looks at the clock: stalls shorter than this are not
#: counted (they are within a burst anyway).
STALL_INTERVAL = 0.25


def top_up(tokens, since, now, rate, cap):
    """A token bucket's ``tokens``, last topped up at ``since`` (None:
    never, so full), topped up at ``rate`` a second until ``now``, and held
    to ``cap``: the burst plus the rate's worth of the node's stalls since
    (``RateLimitedPeer._refill``). Credit a stall left over is kept until
    spent, never more than it was."""
    if since is None:
        return cap
    topped = tokens + (now - since) * rate
    if topped > cap:
        return tokens if tokens > cap else cap
    return topped


class StallWatch:
    """``stalled(now)``: the seconds the node has stood still since it
    started, the stall under way (not yet seen by the timer) included."""

    __slots__ = ("clock", "interval", "_stalled", "_expected", "_call")

    def __init__(self, clock, interval=STALL_INTERVAL):
        self.clock = clock
        self.interval = interval
        self._stalled = 0.0
        self._expected = None
        self._call = None

    def start(self):
        if self._call is None:
            self._expected = self.clock.seconds() + self.interval
            self._call = self.clock.callLater(self.interval, self._tick)

    def stop(self):
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def stalled(self, now):
        expected = self._expected
        if expected is None:
            return self._stalled
        late = now - expected
        # A timer late by less than its interval is the reactor being busy,
        # not standing still.
        return self._stalled + late if late > self.interval else self._stalled

    def _tick(self):
        now = self.clock.seconds()
        late = now - self._expected
        if late > self.interval:
            self._stalled += late
        self._expected = now + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)
