"""Reporting a recurring problem without flooding the log: at most once per
interval, with how many went unreported in between. Pure: the caller says
what time it is and writes the line."""

__all__ = ["LogThrottle", "REPORT_INTERVAL"]

#: Seconds between two log lines about the same kind of problem.
REPORT_INTERVAL = 60.0


class LogThrottle:
    """``due(now)``: whether to report an occurrence at ``now``; when it is,
    :attr:`suppressed` is how many occurrences since the last report were
    not reported (then reset)."""

    __slots__ = ("interval", "suppressed", "_counted", "_last")

    def __init__(self, interval=REPORT_INTERVAL):
        self.interval = interval
        self.suppressed = 0
        self._counted = 0
        self._last = None

    def due(self, now):
        if self._last is not None and now - self._last < self.interval:
            self._counted += 1
            return False
        self._last = now
        self.suppressed = self._counted
        self._counted = 0
        return True
