"""What every session has and does, whatever its protocol.

A session is one client connection after its request head was read and
dispatched (presence/net/dispatch.py). Its protocol's adapter
(presence/net/websocket.py, presence/net/firepresence.py) answers the
handshake and gives it a protocol core (presence/websocket/,
presence/firepresence/); from then on this class drives the core: one read
loop for every protocol (bytes in, events out, answers batched), the message
rate (presence/net/ratelimit.py), sending, closing, heartbeats, and the record of how the session ended.
Its byte stream and flow control are presence/net/stream.py's, its part in
the heartbeat presence/net/heartbeat.py's, its ticket
presence/net/authentication.py's.
"""

import collections

from twisted.logger import Logger
from zope.interface import implementer

from ..wire.close import ABNORMAL_CLOSURE, INTERNAL_ERROR
from ..wire.events import (
    CLOSED,
    OPEN,
    BinaryMessage,
    CloseReceived,
    Malformed,
    Ping,
    Pong,
    ProtocolError,
    TextMessage,
)
from .authentication import AUTH_FAILURES, TicketCheck, ended
from .interfaces import ISession, SessionState
from .ratelimit import RateLimitedPeer
from .server import QUANTUM
from .stream import HOLD_ANSWER, HOLD_TURN
from .twisted_internals import write

__all__ = ["Session"]

log = Logger()

HANDSHAKE = SessionState.HANDSHAKE
AUTHENTICATING = SessionState.AUTHENTICATING
READY = SessionState.READY
ENDED = SessionState.ENDED

#: Events kept per session, for the dashboard.
EVENT_HISTORY = 20


@implementer(ISession)
class Session(RateLimitedPeer):
    #: The protocol's name on the dashboard and in metrics (each adapter's).
    protocol_name = None

    __slots__ = (
        "id", "state", "path", "origin", "user_agent", "subprotocol",
        "extensions", "opened_at", "events", "messages_in", "close_record", "account",
        "attributes", "allowed_channels", "ip_mismatch", "ticket_check",
        # The ticket's info (what other members see) and whisper patterns, and
        # the server-side subscriptions its resume token remembered.
        "info", "whisper_channels", "server_channels",
        # The resume token its welcome gives (docs/tickets.md), or None.
        "resume_token",
        # The events it waits for its turn with, and whether it read more meanwhile.
        "_waiting", "_read_later",
        # The IP the session is counted under (--max-connections-per-ip).
        "counted_ip",
    )

    def __init__(self, server):
        super().__init__(server)
        self.id = None
        self.state = HANDSHAKE
        self.path = None
        self.origin = None
        self.user_agent = None
        self.subprotocol = None
        self.extensions = ()
        self.opened_at = None
        self.events = None
        self.messages_in = 0
        self.close_record = None
        self.account = None
        self.attributes = {}
        self.allowed_channels = ()
        self.info = None
        self.whisper_channels = ()
        self.server_channels = ()
        self.ip_mismatch = False
        #: The TicketCheck while a ticket is being waited for or redeemed.
        self.ticket_check = None
        self.resume_token = None
        self._waiting = None
        self._read_later = False
        #: The client IP this connection counts against for
        #: --max-connections-per-ip (set by the dispatcher), or None.
        self.counted_ip = None

    def __repr__(self):
        return "<%s %s %s>" % (type(self).__name__, self.id, self.client_ip)

    @property
    def ready(self):
        return self.state is READY

    @property
    def closing(self):
        """Whether a close was sent or received (or the handshake is not
        answered yet)."""
        connection = self.connection
        return connection is None or connection.state is not OPEN

    @property
    def extension_details(self):
        """The negotiated extensions with their agreed parameters (none
        unless the protocol negotiates extensions)."""
        return ()

    # ------------------------------------------------------------ opening

    def refuse(self, kind, response):
        """Answer the handshake with an HTTP refusal and close."""
        self.server.stats.handshakes_refused[kind] += 1
        self.transport.write(response)
        self._close_transport(False)

    def redeem_before_answering(self, credential, accept, outcome, rest):
        """The handshake carried a ticket or resume token (``credential``,
        presence/net/authentication.py): redeem it, then ``accept(outcome,
        rest, True)``, or refuse with the failure's HTTP status."""
        self.ticket_check = TicketCheck(self)
        self.ticket_check.before_answering(credential, accept, outcome, rest)

    def open(self, connection, response, rest, authenticated):
        """Write the handshake's answer ``response`` and open the session on
        the protocol core ``connection``; ``rest`` is what followed the
        handshake. It is ready at once when it redeemed a ticket in its
        handshake or needs none; otherwise it has ``--auth-timeout`` seconds
        to send one."""
        server = self.server
        self.connection = connection
        # Byte counters cover the session's stream, not the handshake.
        write(self.transport, response)
        self.id = server.next_session_id()
        self.opened_at = server.clock.seconds()
        server.session_opened(self)
        if authenticated or server.tickets is None or server.settings.anonymous:
            self.become_ready()
        else:
            self.state = AUTHENTICATING
            self.ticket_check = TicketCheck(self)
            server.deadlines.set(self, server.settings.auth_timeout)
        if rest and connection.state is not CLOSED:
            self.dataReceived(rest)

    def hold_until_answered(self):
        """Read no more from the client until its handshake is answered."""
        self._hold(HOLD_ANSWER)

    def answered(self):
        self._release(HOLD_ANSWER)

    def become_ready(self, queued=None):
        """Authenticated (or needing no ticket): say welcome, tell the
        handler, and deliver the messages the client sent meanwhile
        (``queued``: their events)."""
        server = self.server
        self.state = READY
        server.deadlines.discard(self)
        if self.account is not None:
            welcome = {"type": "welcome", "session": self.id, "account": self.account}
            if self.resume_token is not None:
                welcome["resume"] = self.resume_token
            self.send_document(welcome)
        server.session_ready(self)
        if queued:
            handler = server.handler
            for event in queued:
                if self.closing:
                    break
                try:
                    if event.__class__ is TextMessage:
                        handler.text_received(self, event.text)
                    else:
                        handler.binary_received(self, event.data)
                except Exception:
                    self._handler_failed()
                    break

    # ------------------------------------------------------------ reading

    def dataReceived(self, data):
        connection = self.connection
        if connection is None:
            check = self.ticket_check
            if check is not None and check.held is not None:
                check.hold(data)  # sent before our answer: kept for after it
            return
        if connection.state is CLOSED:
            return  # draining a half-closed connection
        self.bytes_in += len(data)
        self._refill()
        connection.receive_data(data)
        if self._waiting is not None:
            # Read while it waits for its turn (a wrapper's buffered bytes):
            # parsed after what it waits with, in order.
            self._read_later = True
            return
        self._read(connection.events())

    def _read(self, events):
        """Handle the events of what was read, writing the answers at once
        at the end; or, when other sessions are waiting, as many as a turn
        allows, and wait for the next turn with the rest (presence/net/server.py)."""
        connection = self.connection
        batch = self._batch = []
        try:
            finished = self._dispatch(events)
            while finished and self._read_later:
                self._read_later = False
                events = connection.events()
                finished = self._dispatch(events)
            if finished:
                out = connection.data_to_send()
                if out:
                    batch.append(out)
        finally:
            self._batch = None
        if batch:
            self._flush(batch)
        if not finished:
            self._waiting = events
            self._hold(HOLD_TURN)
            self.server.wait_turn(self)
            return
        if self._holds & HOLD_TURN:
            self._release(HOLD_TURN)
        if connection.state is CLOSED:
            self._close_transport(connection.peer_closed)

    def take_turn(self):
        """Its turn came: handle what it waits with."""
        events, self._waiting = self._waiting, None
        if events is not None and self.connected and self.connection.state is not CLOSED:
            self._read(events)

    def _dispatch(self, events):
        """Hand the events to where they go; False when the session must let
        others take their turn before it handles the rest. A failure in the
        handler closes only this session, with 1011."""
        server = self.server
        handler = server.handler
        count = 0
        for event in events:
            kind = event.__class__
            if kind is not ProtocolError and kind is not CloseReceived:
                # Messages, pings and pongs count against --max-message-rate.
                allowance = self._allowance - 1
                self._allowance = allowance
                if allowance < 0:
                    self._rate_exceeded()
                    continue
                if self._inflation is not None and self._inflation_exceeded():
                    continue
            try:
                if kind is TextMessage:
                    self.messages_in += 1
                    if self.state is READY:
                        handler.text_received(self, event.text)
                    else:
                        self._before_ready(event)
                elif kind is BinaryMessage:
                    self.messages_in += 1
                    if self.state is READY:
                        handler.binary_received(self, event.data)
                    else:
                        self._before_ready(event)
                elif kind is Ping:
                    if event.pong:
                        self._write(event.pong)
                elif kind is Pong:
                    self._heartbeat_answered(event.payload)
                elif kind is Malformed:
                    self.server.stats.protocol_errors[event.reason] += 1
                    self._write(event.answer)
                elif kind is ProtocolError:
                    stats = self.server.stats
                    stats.protocol_errors[event.reason] += 1
                    if event.limit is not None:
                        stats.limits_hit[event.limit] += 1
            except Exception:
                self._handler_failed()
                return True
            count += 1
            if count == QUANTUM:
                count = 0
                if server.should_take_turns():
                    return False
        return True

    def _before_ready(self, message):
        """A message (its event) before the session is ready: its auth
        message, or what follows it before the welcome."""
        if self.ticket_check is not None and not self.closing:
            self.ticket_check.message(message)

    def _handler_failed(self):
        log.failure("handler error in session {session}", session=self.id)
        self.close(INTERNAL_ERROR, "internal error")

    # ---------------------------------------------------------- heartbeat

    def note(self, text):
        """Remember an event of the session (the dashboard shows the last
        few)."""
        events = self.events
        if events is None:
            events = self.events = collections.deque(maxlen=EVENT_HISTORY)
        events.append((self.server.clock.seconds(), text))

    # ------------------------------------------------------------- ending

    def deadline_expired(self):
        """The auth timeout passed (no ticket came), or the close timeout: the
        client did not answer our close, or did not let the TCP connection
        go."""
        if self.state is AUTHENTICATING and not self.closing:
            self.server.stats.auth_failures["timeout"] += 1
            self.close(*AUTH_FAILURES["timeout"][1:])
        elif self.id is not None and self.connection.state is not CLOSED:
            self._abort(ABNORMAL_CLOSURE, "close timeout")
        else:
            self.transport.abortConnection()

    def connectionLost(self, reason):
        server = self.server
        server.deadlines.discard(self)
        server.connection_lost(self.counted_ip)
        self.connected = 0
        was_ready = self.state is READY
        self.state = ENDED
        self.ticket_check = None
        self._waiting = None
        if self.id is None:
            ended(self)
            return  # refused at the handshake: never a session
        record = self.connection.connection_lost()
        record.duration = server.clock.seconds() - self.opened_at
        self.close_record = record
        ended(self, record)
        server.session_closed(self, record, was_ready)
