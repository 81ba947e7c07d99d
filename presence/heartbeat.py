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
outstanding), ``send_heartbeat(round, now)`` and ``heartbeat_timed_out()``; a
:class:`HeartbeatRound` carries the round's ping in every transport's form,
each encoded once.
"""

import struct

from twisted.internet.task import LoopingCall

from .firepresence import encode_line
from .websocket.frames import OP_PING, encode_frame

__all__ = ["Heartbeat", "HeartbeatRound", "ping_payload"]

#: Sessions pinged at once; a round over more is spread in SPREAD_STEPS chunks.
SPREAD_CHUNK = 500
SPREAD_STEPS = 10

_pack_round = struct.Struct("!4sQ").pack


def ping_payload(round_number):
    """12 bytes: a marker and the round number (5.5.2 allows any payload of
    up to 125 bytes; the peer must echo it in its pong)."""
    return _pack_round(b"hb01", round_number)


class HeartbeatRound:
    """One round's ping: ``number`` identifies it; ``payload`` and ``frame``
    are its WebSocket ping (5.5.2), ``line`` its firepresence ping line."""

    __slots__ = ("number", "payload", "frame", "line")

    def __init__(self, number):
        self.number = number
        self.payload = ping_payload(number)
        self.frame = encode_frame(OP_PING, self.payload)
        self.line = encode_line({"type": "ping", "id": number})


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
