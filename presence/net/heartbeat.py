"""Heartbeats: rounds of pings over every open session, and the pong gives
the round-trip time.

Every ``interval`` seconds a round starts over the open sessions: a session
whose previous ping is still unanswered after ``timeout`` seconds is closed
as a heartbeat timeout; every other session without an outstanding ping is
sent this round's ping. A round's payload names the round, so it is the same
for every session and its frame is encoded once.

A round is spread over the interval: up to ``SPREAD_CHUNK`` sessions are
pinged at once; a larger node pings its sessions in ``SPREAD_STEPS`` equal
chunks, one every ``interval / SPREAD_STEPS`` seconds. One sweep over 10,000
sessions would hold the reactor for tens of milliseconds and bring 10,000
pongs back at once, delaying every message behind them (and inflating the
round trips it measures); in chunks, neither happens. When ``timeout`` is
shorter than ``interval``, one timer per chunk (not per session) expires the
sessions that did not answer in time.

A session takes part by providing ``ping_sent_at`` (``None`` when no ping is
outstanding), ``send_heartbeat(round, now)`` and ``heartbeat_timed_out()``. A
:class:`HeartbeatRound` names the round; each protocol core encodes its own
ping for it (``heartbeat_ping``), once per round for all its sessions.

These are the heartbeats of client sessions; a node's own announcements to
the cluster are its liveness (presence/hub/liveness.py).
"""

import collections

from twisted.internet.task import LoopingCall

from ..wire.close import INTERNAL_ERROR
from ..wire.events import OPEN
from ..wire.prepared import Prepared
from .stream import Stream

__all__ = ["Heartbeat", "HeartbeatRound", "HeartbeatPeer"]

#: Round-trip times kept per session, for the dashboard.
RTT_HISTORY = 30

#: Sessions pinged at once; a round over more is spread in SPREAD_STEPS chunks.
SPREAD_CHUNK = 500
SPREAD_STEPS = 10


class HeartbeatRound(Prepared):
    """One round's ping: ``number`` identifies it; :meth:`ping` is its ping in
    a protocol's form, encoded once per protocol."""

    __slots__ = ("number",)

    def __init__(self, number):
        super().__init__()
        self.number = number

    def ping(self, connection):
        """``(bytes, pong payload to expect)`` of this round's ping for a
        protocol core's ``connection``."""
        core = connection.__class__
        forms = self.forms
        ping = forms.get(core)
        if ping is None:
            ping = forms[core] = core.heartbeat_ping(self.number)
        return ping


class Heartbeat:
    def __init__(self, clock, interval, timeout, sessions):
        """``sessions``: the open sessions, a mapping from id to session."""
        if interval <= 0:
            raise ValueError("heartbeat interval must be positive")
        if timeout <= 0:
            raise ValueError("heartbeat timeout must be positive")
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.sessions = sessions
        self.rounds = 0
        self.timeouts = 0
        self._loop = None
        self._timers = []  # this round's later chunks and expiry passes

    def start(self):
        self._loop = LoopingCall(self.run_round)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []

    def run_round(self):
        now = self.clock.seconds()
        self.expire(now)
        self._timers = [timer for timer in self._timers if timer.active()]
        self.rounds += 1
        heartbeat_round = HeartbeatRound(self.rounds)
        ids = list(self.sessions)
        chunk = max(SPREAD_CHUNK, -(-len(ids) // SPREAD_STEPS))
        self._ping(heartbeat_round, ids[:chunk])
        step = self.interval / SPREAD_STEPS
        for number, start in enumerate(range(chunk, len(ids), chunk), 1):
            self._timers.append(self.clock.callLater(
                number * step, self._ping, heartbeat_round, ids[start:start + chunk]))

    def _ping(self, heartbeat_round, ids):
        now = self.clock.seconds()
        sessions = self.sessions
        for session_id in ids:
            session = sessions.get(session_id)  # None: closed meanwhile
            if session is not None and session.ping_sent_at is None:
                session.send_heartbeat(heartbeat_round, now)
        if self.timeout < self.interval:
            self._timers.append(self.clock.callLater(self.timeout, self._expire_now))

    def _expire_now(self):
        self.expire(self.clock.seconds())

    def expire(self, now):
        """Close every session whose ping has waited ``timeout`` seconds."""
        # A small tolerance: a timer may fire a hair before its nominal time.
        limit = now - self.timeout + 1e-6
        late = [session for session in self.sessions.values()
                if session.ping_sent_at is not None and session.ping_sent_at <= limit]
        for session in late:
            self.timeouts += 1
            session.heartbeat_timed_out()


class HeartbeatPeer(Stream):
    """A session's part in the heartbeat: the ping it waits an answer to,
    and the round trips measured (the dashboard's)."""

    __slots__ = ("ping_sent_at", "_ping_id", "rtt", "last_heartbeat", "rtt_history")

    def __init__(self, server):
        super().__init__(server)
        #: When the unanswered ping was sent, or None.
        self.ping_sent_at = None
        self._ping_id = None
        #: Round-trip time of the last answered ping, in seconds.
        self.rtt = None
        #: When the last pong arrived (clock seconds).
        self.last_heartbeat = None
        #: The last round-trip times, oldest first (created at the first).
        self.rtt_history = None

    def send_heartbeat(self, heartbeat_round, now):
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return
        data, self._ping_id = heartbeat_round.ping(connection)
        self.ping_sent_at = now
        self._write(data)

    def _heartbeat_answered(self, ping_id):
        if self.ping_sent_at is not None and ping_id == self._ping_id:
            server = self.server
            now = server.clock.seconds()
            self.rtt = now - self.ping_sent_at
            self.last_heartbeat = now
            self.ping_sent_at = None
            self._ping_id = None
            history = self.rtt_history
            if history is None:
                history = self.rtt_history = collections.deque(maxlen=RTT_HISTORY)
            history.append(self.rtt)
            server.stats.heartbeat_answered(self.rtt)

    def heartbeat_timed_out(self):
        self.ping_sent_at = None
        self.server.stats.heartbeat_timeouts += 1
        self.close(INTERNAL_ERROR, "heartbeat timeout")
