"""Heartbeats: one sweep pings every open session, and the pong gives the
round-trip time.

Every ``interval`` seconds one round runs over all open sessions: a session
whose previous ping is still unanswered after ``timeout`` seconds is closed
as a heartbeat timeout; every other session without an outstanding ping is
sent this round's ping. A round's payload names the round, so it is the same
for every session and its frame is encoded once. When ``timeout`` is shorter
than ``interval``, one extra pass per round (a single timer, not one per
session) expires the sessions that did not answer in time.

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
        """``sessions``: a callable returning the open sessions."""
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
        self._expiry = None

    def start(self):
        self._loop = LoopingCall(self.run_round)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None

    def run_round(self):
        now = self.clock.seconds()
        self.expire(now)
        self.rounds += 1
        heartbeat_round = HeartbeatRound(self.rounds)
        for session in list(self.sessions()):
            if session.ping_sent_at is None:
                session.send_heartbeat(heartbeat_round, now)
        if self.timeout < self.interval:
            self._expiry = self.clock.callLater(self.timeout, self._expire_now)

    def _expire_now(self):
        self._expiry = None
        self.expire(self.clock.seconds())

    def expire(self, now):
        """Close every session whose ping has waited ``timeout`` seconds."""
        # A small tolerance: a timer may fire a hair before its nominal time.
        limit = now - self.timeout + 1e-6
        late = [session for session in self.sessions()
                if session.ping_sent_at is not None and session.ping_sent_at <= limit]
        for session in late:
            self.timeouts += 1
            session.heartbeat_timed_out()
