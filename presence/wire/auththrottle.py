"""Throttling addresses that fail to authenticate: after
:data:`MAX_FAILURES` failures within :data:`WINDOW` seconds from one
address, its further attempts are refused (429) without being checked, until
the window is over. Pure: the caller says what time it is.

A failure is a check that cost something and said no: a ticket redeemed in
Redis that was invalid, expired, used or issued for another IP (the client
port, presence/net/authentication.py), a wrong API key or an OAuth token
the introspection endpoint called inactive (the API, presence/web/api.py).
An address is what ``--max-connections-per-ip`` counts
(presence/wire/clientip.py ``counted_network``): an IPv4 address, an IPv6
/64. Guessing a ticket or a key is hopeless either way (a ticket is 192
random bits); what this bounds is the work one address can make the node and
Redis (or the introspection endpoint) do for nothing: 1,347 redemptions a
second from one address before, at most MAX_FAILURES a minute now.

The table is small and bounded: at most :data:`MAX_ADDRESSES` addresses,
kept in the order their windows began, so the ended ones are pruned from
its front as failures come; when it is full of windows still running, the
oldest is forgotten (an attacker with more than MAX_ADDRESSES /64s could
keep its own windows from filling, but no table this size can stop that).
docs/operations.md gives the bounds.
"""

import collections

__all__ = ["AuthThrottle", "MAX_FAILURES", "WINDOW", "MAX_ADDRESSES", "PORTS"]

#: Failed authentications one address may make within WINDOW seconds; its
#: next attempts in the window are refused. A person's client fails a ticket
#: now and then (one that expired before it was used); thirty in a minute
#: is a crowd of users behind one NAT failing at once, or a guesser.
MAX_FAILURES = 30
#: Seconds a window lasts, from an address's first failure in it.
WINDOW = 60.0
#: Addresses the table holds at most (about 200 bytes each).
MAX_ADDRESSES = 10000
#: Where attempts are refused: the client port's handshakes and auth
#: messages, the HTTP API's credentials.
PORTS = ("client", "api")


class AuthThrottle:
    """The failed authentications of recent addresses, and the attempts
    refused because of them (``refused``: by port, of PORTS)."""

    __slots__ = ("max_failures", "window", "max_addresses", "refused", "_windows")

    def __init__(self, max_failures=MAX_FAILURES, window=WINDOW, max_addresses=MAX_ADDRESSES):
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        #: Attempts refused unchecked, by port.
        self.refused = collections.Counter()
        # Address -> [when its window began, failures in it], oldest first.
        self._windows = collections.OrderedDict()

    def __len__(self):
        return len(self._windows)

    def throttled(self, address, now, port):
        """Seconds until ``address`` may try again (0: it may try now). An
        attempt refused is counted under ``port``."""
        entry = self._windows.get(address)
        if entry is None or entry[1] < self.max_failures:
            return 0
        left = entry[0] + self.window - now
        if left <= 0:
            return 0
        self.refused[port] += 1
        return left

    def failed(self, address, now):
        """``address`` failed to authenticate at ``now``."""
        windows = self._windows
        self._prune(now)
        entry = windows.get(address)
        if entry is None or now - entry[0] >= self.window:
            entry = windows[address] = [now, 0]
            windows.move_to_end(address)
            if len(windows) > self.max_addresses:
                windows.popitem(last=False)
        entry[1] += 1

    def throttled_now(self, now):
        """How many addresses are refused now."""
        self._prune(now)
        return sum(1 for start, failures in self._windows.values()
                   if failures >= self.max_failures)

    def _prune(self, now):
        """Forget the windows that ended (the oldest are first)."""
        windows = self._windows
        while windows:
            start = next(iter(windows.values()))[0]
            if now - start < self.window:
                return
            windows.popitem(last=False)
