"""The client side of one node (process): its sessions, whatever their
protocol, and what they share: the settings, the session handler (the hub),
the ticket redeemer, the clock, the deadline sweep, the heartbeat and the
counters. The cluster side of the node (presence across nodes, in Redis) is
the hub's (presence/hub/)."""

import collections
import itertools
import os

from twisted.logger import Logger

from ..wire.auththrottle import AuthThrottle
from ..wire.close import GOING_AWAY, INTERNAL_ERROR
from .deadlines import Deadlines
from .heartbeat import Heartbeat
from .interfaces import SessionHandler
from .settings import ServerSettings
from .stalls import StallWatch
from .stats import ServerStats

__all__ = ["Server", "TURN_BUDGET", "QUANTUM"]

log = Logger()

#: Seconds of handling messages one reactor turn may spend before sessions
#: with more to do take turns. A burst (a reconnect storm: a thousand
#: sessions each sending a hundred subscribes at once) would otherwise be
#: handled in one reactor turn of seconds, during which no other session is
#: read or answered; in turns, every session is served within about this
#: long. Normal traffic (a few messages a read) never reaches it.
TURN_BUDGET = 0.02
#: Events a session handles in one turn while others wait for theirs.
QUANTUM = 4


class Server:
    """``handler``: the ISessionHandler told of sessions (None: one that does
    nothing). ``tickets``: the ITicketRedeemer sessions redeem their tickets
    in; None: sessions need no ticket (as in the benchmark's echo server)."""

    def __init__(self, handler, settings, clock, tickets=None):
        self.handler = handler if handler is not None else SessionHandler()
        self.tickets = tickets
        self.settings = settings if settings is not None else ServerSettings()
        self.clock = clock
        self.stats = ServerStats()
        #: Open sessions by id (every protocol alike).
        self.sessions = {}
        #: Client connections open on this node's ports, from accept to
        #: close (handshakes included): what --max-connections bounds.
        self.connections = 0
        #: Client IP -> its connections past the request head: what
        #: --max-connections-per-ip bounds.
        self.connections_by_ip = {}
        #: Addresses that failed to authenticate too often (failed tickets
        #: here, wrong keys at the node's API): their attempts are refused.
        self.auth_throttle = AuthThrottle()
        self.deadlines = Deadlines(clock)
        self.heartbeat = None
        #: How long the node has stood still (the message rate limit's
        #: allowance for the backlog a stall leaves).
        self.stalls = StallWatch(clock)
        # Sessions waiting for their turn, and the sweep giving turns.
        self._turns = collections.deque()
        self._giving_turns = None
        # When this reactor turn's handling began (None: not yet measured).
        self._turn_started = None
        self._ids = itertools.count(1)
        # Session ids are unique across nodes and restarts: a random prefix
        # per process, then a counter.
        self._id_prefix = os.urandom(4).hex()

    def next_session_id(self):
        return "%s-%x" % (self._id_prefix, next(self._ids))

    def start(self):
        """Start the heartbeat and the stall watch (idempotent)."""
        settings = self.settings
        if settings.max_message_rate or settings.max_inflated_rate:
            self.stalls.start()
        if settings.heartbeat_interval and self.heartbeat is None:
            self.heartbeat = Heartbeat(self.clock, settings.heartbeat_interval,
                                       settings.heartbeat_timeout, self.sessions)
            self.heartbeat.start()

    def stop(self):
        self.stalls.stop()
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        if not self.sessions:
            self.deadlines.stop()

    def connection_lost(self, ip=None):
        """A client connection ended; ``ip`` is the address it was counted
        under, if it was."""
        self.connections -= 1
        if ip is not None:
            count = self.connections_by_ip[ip] - 1
            if count:
                self.connections_by_ip[ip] = count
            else:
                del self.connections_by_ip[ip]

    def session_opened(self, session):
        """The session's handshake succeeded (it may still have to
        authenticate)."""
        self.stats.session_opened(session)
        self.sessions[session.id] = session

    def session_ready(self, session):
        """The session is authenticated (or needs no authentication): the
        handler hears of it from now on."""
        try:
            self.handler.session_opened(session)
        except Exception:
            log.failure("handler error opening session {session}", session=session.id)
            session.close(INTERNAL_ERROR, "internal error")

    def session_closed(self, session, record, was_ready):
        """The session ended; the handler is told if it had been told of its
        opening (``was_ready``)."""
        self.sessions.pop(session.id, None)
        self.stats.session_closed(session, record)
        if not was_ready:
            return
        try:
            self.handler.session_closed(session, record)
        except Exception:
            log.failure("handler error closing session {session}", session=session.id)

    # ---------------------------------------------------------- taking turns

    def should_take_turns(self):
        """Whether a session handling events must stop and wait for its turn:
        others wait for theirs, or this reactor turn spent its budget."""
        if self._turns:
            return True
        now = self.clock.seconds()
        started = self._turn_started
        if started is None:
            self._turn_started = now
            self.clock.callLater(0, self._next_reactor_turn)
            return False
        return now - started > TURN_BUDGET

    def _next_reactor_turn(self):
        self._turn_started = None

    def wait_turn(self, session):
        """``session`` waits (not read from) until it is given its turn."""
        self._turns.append(session)
        if self._giving_turns is None:
            self._giving_turns = self.clock.callLater(0, self._give_turns)

    def _give_turns(self):
        """One reactor turn's worth of turns, in order of waiting; a session
        with more to do after its turn waits again, at the back."""
        turns = self._turns
        deadline = self.clock.seconds() + TURN_BUDGET
        # Still marked as giving turns: a session that waits again during
        # this loop must not schedule another one (they would multiply).
        while turns and self.clock.seconds() <= deadline:
            turns.popleft().take_turn()
        self._giving_turns = self.clock.callLater(0, self._give_turns) if turns else None

    def fan_out(self, message, sessions):
        """Send one :class:`~presence.wire.prepared.PreparedMessage` to many
        sessions, encoded once per form (a plain WebSocket frame, once per
        compression parameter set, a firepresence line). Returns how many
        sessions took it."""
        sent = 0
        for session in sessions:
            if session.send_prepared(message):
                sent += 1
        return sent

    def close_all(self, code=GOING_AWAY, reason="server shutting down"):
        """Close every session (server shutdown)."""
        for session in list(self.sessions.values()):
            session.close(code, reason)
