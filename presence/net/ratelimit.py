"""A session's message allowances: --max-message-rate (messages, pings and
pongs a second) and --max-inflated-rate (bytes its permessage-deflate
messages inflate to a second), each a token bucket topped up once per read
and charged per message by the read loop (presence/net/session.py).

Past either, the message is dropped and the session is closed with 1008
(RFC 6455 7.4.1: a policy violation), once.
"""

from twisted.logger import Logger

from ..wire.close import POLICY_VIOLATION
from .heartbeat import HeartbeatPeer
from .stalls import top_up

__all__ = ["RateLimitedPeer"]

log = Logger()

# A session's message allowance while --max-message-rate is 0.
_UNLIMITED = float("inf")


class RateLimitedPeer(HeartbeatPeer):
    """The allowances of a session (the read loop charges them: a message
    takes one of ``_allowance``, and :meth:`_inflation_exceeded` its
    inflated bytes)."""

    __slots__ = (
        # The token bucket of --max-message-rate: messages the session may
        # still send, as of when it was last topped up (None: never, full),
        # and the node's stalled seconds (StallWatch) as of then.
        "_allowance", "_allowance_at", "_stalled_at",
        # --max-inflated-rate: the deflate extension whose inflated bytes
        # are charged (None: nothing to charge), what it may still inflate,
        # and its count of inflated bytes as of the last charge.
        "_inflation", "_inflated_allowance", "_inflated_counted",
    )

    def __init__(self, server):
        super().__init__(server)
        self._allowance = _UNLIMITED
        self._allowance_at = None
        self._stalled_at = server.stalls.stalled(server.clock.seconds())
        self._inflation = None
        self._inflated_allowance = 0
        self._inflated_counted = 0

    @property
    def last_read_at(self):
        """When the session's last read was charged (clock seconds), or
        None (never, or no rate is charged: the read loop reads no clock)."""
        return self._allowance_at

    def _refill(self):
        """Top up the message allowance, and the inflated bytes', for the
        time since the last read (once per read; each message then takes
        one, and what it inflated to).

        Each is held to its burst, plus what the client could have sent at
        the limit while the node itself stood still since the last top-up
        (presence/net/stalls.py): what it sent during a GC pause or a frozen
        VM arrives in one read afterwards and is no flood."""
        server = self.server
        settings = server.settings
        rate = settings.max_message_rate
        inflation = self._inflation
        if not rate and inflation is None:
            return
        now = server.clock.seconds()
        at = self._allowance_at
        stalled = server.stalls.stalled(now)
        stall = stalled - self._stalled_at
        if rate:
            self._allowance = top_up(self._allowance, at, now, rate,
                                     settings.message_burst + stall * rate)
        if inflation is not None:
            rate = settings.max_inflated_rate
            self._inflated_allowance = top_up(self._inflated_allowance, at, now, rate,
                                              settings.inflated_burst + stall * rate)
        self._allowance_at = now
        self._stalled_at = stalled

    def charge_inflation(self, extension):
        """Charge what ``extension`` (the connection's permessage-deflate)
        inflates against --max-inflated-rate, from now on."""
        settings = self.server.settings
        if settings.max_inflated_rate:
            self._inflation = extension
            self._inflated_allowance = settings.inflated_burst
            self._inflated_counted = extension.inflated_bytes

    def _inflation_exceeded(self):
        """Charge the bytes inflated since the last charge; True when they
        pass the allowance: the message is dropped, and the session is
        closed with 1008 (what it still sends compressed is not inflated:
        RFC 6455 5.5.1, presence/websocket/message.py)."""
        inflated = self._inflation.inflated_bytes
        spent = inflated - self._inflated_counted
        if not spent:
            return self._inflated_allowance < 0
        self._inflated_counted = inflated
        allowance = self._inflated_allowance - spent
        self._inflated_allowance = allowance
        if allowance >= 0:
            return False
        self._inflated_allowance = -_UNLIMITED
        if not self.closing:
            server = self.server
            server.stats.limits_hit["max-inflated-rate"] += 1
            log.info("session {session} closed: its compressed messages inflated to more than "
                     "{rate} bytes a second", session=self.id,
                     rate=server.settings.max_inflated_rate)
            self.close(POLICY_VIOLATION, "inflated data rate exceeded")
        return True

    def _rate_exceeded(self):
        """A message past the allowance: it is dropped, and the session is
        closed with 1008 (once; what still arrives before the close completes
        is dropped too)."""
        # Nothing more is taken from this client, however long it waits.
        self._allowance = -_UNLIMITED
        if self.closing:
            return
        server = self.server
        server.stats.limits_hit["max-message-rate"] += 1
        log.info("session {session} closed: more than {rate} messages a second",
                 session=self.id, rate=server.settings.max_message_rate)
        self.close(POLICY_VIOLATION, "message rate exceeded")
