"""The Twisted adapter: sockets in, the sans-I/O WebSocket core, an
:class:`~presence.application.Application` out.

One :class:`WebSocketProtocol` per TCP connection reads the request head,
performs the opening handshake, then feeds frames to a
:class:`~presence.websocket.connection.ServerConnection`. It owns what the
core cannot: the clock (handshake, close and heartbeat timeouts), the
transport (direct writes, backpressure), and the record of the session's end.
One :class:`WebSocketFactory` serves every ``--listen`` port and keeps the
registry of open sessions.
"""

import itertools
import os

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from . import fastwrite
from .application import Application
from .deadlines import Deadlines
from .heartbeat import Heartbeat
from .httphead import DEFAULT_MAX_HEAD_SIZE, HeadError, HeadReader, error_response
from .listening import nodelay_inherited
from .stats import ServerStats
from .websocket.close import ABNORMAL_CLOSURE, GOING_AWAY, INTERNAL_ERROR, NORMAL_CLOSURE
from .websocket.connection import CLOSED, DEFAULT_MAX_MESSAGE_SIZE, OPEN, ServerConnection
from .websocket.events import BinaryMessage, Ping, Pong, ProtocolError, TextMessage
from .websocket.extensions import format_extension
from .websocket.frames import OP_BINARY, OP_TEXT
from .websocket.handshake import HandshakeConfig, Rejected, server_handshake

__all__ = ["ServerSettings", "WebSocketFactory", "WebSocketProtocol"]

log = Logger()


class ServerSettings:
    """Limits and timers of a listener. Every limit bounds something a client
    controls; docs/configuration.md explains each default."""

    def __init__(
        self,
        handshake=None,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
        max_head_size=DEFAULT_MAX_HEAD_SIZE,
        handshake_timeout=10.0,
        close_timeout=5.0,
        heartbeat_interval=30.0,
        heartbeat_timeout=10.0,
        max_outgoing_buffer=1024 * 1024,
    ):
        self.handshake = handshake if handshake is not None else HandshakeConfig()
        #: Largest message accepted (bytes, after reassembly); larger: 1009.
        self.max_message_size = max_message_size
        #: Largest request head accepted (bytes); larger: 431.
        self.max_head_size = max_head_size
        #: Seconds a connection may take to send its request head.
        self.handshake_timeout = handshake_timeout
        #: Seconds to wait for the peer's Close (and for the TCP close after
        #: ours) before dropping the connection.
        self.close_timeout = close_timeout
        #: Seconds between heartbeat pings; 0 disables heartbeats.
        self.heartbeat_interval = heartbeat_interval
        #: Seconds a ping may wait for its pong before the session is closed
        #: with 1011 (heartbeat timeout).
        self.heartbeat_timeout = heartbeat_timeout
        #: Bytes that may be queued for a client beyond the transport's own
        #: 64 KiB buffer while it is not reading; past this the client is
        #: dropped as a slow consumer.
        self.max_outgoing_buffer = max_outgoing_buffer


#: Payloads from this size are written as header and payload with one
#: vectored send instead of being copied into one frame first.
_VECTORED_WRITE_SIZE = 16384

# Phases of a WebSocketProtocol (the core has its own states once open).
_HANDSHAKE = 0
_OPEN = 1
_ENDED = 2


@implementer(IPushProducer)
class WebSocketProtocol(Protocol):
    """One client connection: its handshake, then its WebSocket session."""

    #: The transport name shown on the dashboard and in metrics.
    protocol_name = "websocket"

    __slots__ = (
        "factory", "transport", "connected", "id", "_client_ip", "connection", "_phase",
        "_head_reader", "_batch", "_write_paused", "_paused_bytes", "_reading_paused_by_app",
        "path", "origin", "user_agent", "subprotocol", "extensions", "opened_at",
        "ping_sent_at", "_ping_payload", "rtt", "last_heartbeat",
        "messages_in", "messages_out", "bytes_in", "bytes_out", "close_record",
    )

    def __init__(self, factory):
        self.factory = factory
        self.transport = None
        self.connected = 0
        self.id = None
        self._client_ip = None
        self.connection = None
        self._phase = _HANDSHAKE
        self._head_reader = None
        self._batch = None
        self._write_paused = False
        self._paused_bytes = 0
        self._reading_paused_by_app = False
        self.path = None
        self.origin = None
        self.user_agent = None
        self.subprotocol = None
        self.extensions = ()
        self.opened_at = None
        self.ping_sent_at = None
        self._ping_payload = None
        #: Round-trip time of the last answered heartbeat, in seconds.
        self.rtt = None
        #: When the last heartbeat pong arrived (clock seconds).
        self.last_heartbeat = None
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_record = None

    def __repr__(self):
        return "<WebSocketProtocol %s %s>" % (self.id, self.client_ip)

    @property
    def client_ip(self):
        """The client's IP address (the TCP peer's, unless set otherwise).
        Looked up when first asked for: most sessions never are, and building
        the peer address costs a measurable share of a handshake."""
        if self._client_ip is None and self.transport is not None:
            self._client_ip = getattr(self.transport.getPeer(), "host", None)
        return self._client_ip

    @client_ip.setter
    def client_ip(self, address):
        self._client_ip = address

    @property
    def extension_details(self):
        """The negotiated extensions with their agreed parameters, as in the
        handshake's Sec-WebSocket-Extensions answer."""
        connection = self.connection
        if connection is None:
            return ()
        return tuple(format_extension(extension.name, extension.response_params())
                     for extension in connection.extensions)

    # ------------------------------------------------------------- handshake

    def connectionMade(self):
        factory = self.factory
        transport = self.transport
        self._head_reader = HeadReader(factory.settings.max_head_size)
        factory.deadlines.set(self, factory.settings.handshake_timeout)
        transport.registerProducer(self, True)
        if not nodelay_inherited(transport):
            try:
                # Small frames should leave at once; Nagle's algorithm would
                # hold them back waiting for an ACK (see listening.py).
                transport.setTcpNoDelay(True)
            except (AttributeError, OSError):
                pass

    def dataReceived(self, data):
        connection = self.connection
        if connection is None:
            self._handshake_data(data)
            return
        if connection.state is CLOSED:
            return  # draining a half-closed connection
        self.bytes_in += len(data)
        batch = self._batch = []
        try:
            connection.receive_data(data)
            self._dispatch(connection.events())
            out = connection.data_to_send()
            if out:
                batch.append(out)
        finally:
            self._batch = None
        if batch:
            if len(batch) == 1:
                self._write(batch[0])
            elif self._account(sum(map(len, batch))):
                fastwrite.write_sequence(self.transport, batch)
        if connection.state is CLOSED:
            self._close_transport()

    def _handshake_data(self, data):
        if self._phase is not _HANDSHAKE:
            return
        try:
            result = self._head_reader.feed(data)
        except HeadError as error:
            self._refuse(error.status, error.kind, error.reason)
            return
        if result is None:
            return
        head, rest = result
        outcome = server_handshake(head, self.factory.settings.handshake)
        if outcome.__class__ is Rejected:
            self._refuse(outcome.status, outcome.kind, outcome.reason, outcome.response)
            return
        self._open(outcome, rest)

    def _refuse(self, status, kind, reason, response=None):
        factory = self.factory
        factory.stats.handshakes_refused[kind] += 1
        factory.deadlines.discard(self)
        self._phase = _ENDED
        self._head_reader = None
        self.transport.write(response if response is not None else error_response(status, reason))
        self._close_transport()

    def _open(self, accepted, rest):
        factory = self.factory
        factory.deadlines.discard(self)
        self._head_reader = None
        self._phase = _OPEN
        self.connection = ServerConnection(factory.settings.max_message_size, accepted.extensions)
        self.id = factory.next_session_id()
        self.path = accepted.path
        self.origin = accepted.origin
        self.user_agent = accepted.user_agent
        self.subprotocol = accepted.subprotocol
        if accepted.extensions:
            self.extensions = tuple(extension.name for extension in accepted.extensions)
        self.opened_at = factory.clock.seconds()
        # Byte counters cover the WebSocket stream, not the HTTP handshake.
        fastwrite.write(self.transport, accepted.response)
        factory.session_opened(self)
        if rest and self.connection.state is not CLOSED:
            self.dataReceived(rest)

    # --------------------------------------------------------------- events

    def _dispatch(self, events):
        application = self.factory.application
        for event in events:
            kind = event.__class__
            try:
                if kind is TextMessage:
                    self.messages_in += 1
                    application.text_received(self, event.text)
                elif kind is BinaryMessage:
                    self.messages_in += 1
                    application.binary_received(self, event.data)
                elif kind is Ping:
                    if event.pong:
                        self._write(event.pong)
                elif kind is Pong:
                    self._pong_received(event.payload)
                elif kind is ProtocolError:
                    self.factory.stats.protocol_errors[event.reason] += 1
            except Exception:
                log.failure("application error in session {session}", session=self.id)
                self.close(INTERNAL_ERROR, "internal error")
                return

    # ------------------------------------------------------------- sending

    def _account(self, size):
        """Count ``size`` bytes about to be written; False when they would
        take a client that is not reading past the outgoing bound (it is
        then dropped)."""
        self.bytes_out += size
        if self._write_paused:
            self._paused_bytes += size
            if self._paused_bytes > self.factory.settings.max_outgoing_buffer:
                self._slow_consumer()
                return False
        return True

    def _write(self, data):
        """Bytes to the client: batched while a read is being processed (so a
        read that completes many messages answers with one send), otherwise
        written at once."""
        batch = self._batch
        if batch is not None:
            batch.append(data)
        elif self._account(len(data)):
            fastwrite.write(self.transport, data)

    def _send_message(self, opcode, payload):
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return False
        self.messages_out += 1
        if len(payload) < _VECTORED_WRITE_SIZE:
            self._write(connection.send_message(opcode, payload))
            return True
        header, payload = connection.send_message_parts(opcode, payload)
        batch = self._batch
        if batch is not None:
            batch.append(header)
            batch.append(payload)
        elif self._account(len(header) + len(payload)):
            fastwrite.write_sequence(self.transport, [header, payload])
        return True

    def send_text(self, text):
        """Send a text message; returns False when the session is not open."""
        return self._send_message(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data):
        """Send a binary message; returns False when the session is not open."""
        return self._send_message(OP_BINARY, data)

    def send_prepared(self, prepared):
        """Send a :class:`~presence.websocket.connection.PreparedMessage`
        (see :meth:`WebSocketFactory.fan_out`)."""
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return False
        self.messages_out += 1
        frame = prepared.frame if not connection.extensions else connection.send_prepared(prepared)
        if self._batch is None and not self._write_paused:
            self.bytes_out += len(frame)
            fastwrite.write(self.transport, frame)
        else:
            self._write(frame)
        return True

    def close(self, code=NORMAL_CLOSURE, reason=""):
        """Start the closing handshake (7.1.2); the transport is dropped if
        the client does not answer within the close timeout."""
        connection = self.connection
        if connection is None:
            if self.transport is not None and self._phase is _HANDSHAKE:
                self._refuse(503, "server_closing", "server is closing")
            return
        if connection.state is not OPEN:
            return
        self._write(connection.send_close(code, reason))
        if connection.state is not CLOSED:
            self.factory.deadlines.set(self, self.factory.settings.close_timeout)

    # ------------------------------------------------------------ heartbeat

    def send_heartbeat(self, payload, frame, now):
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return
        self.ping_sent_at = now
        self._ping_payload = payload
        self._write(frame)

    def _pong_received(self, payload):
        if self.ping_sent_at is not None and payload == self._ping_payload:
            now = self.factory.clock.seconds()
            self.rtt = now - self.ping_sent_at
            self.last_heartbeat = now
            self.ping_sent_at = None
            self._ping_payload = None

    def heartbeat_timed_out(self):
        self.ping_sent_at = None
        self.factory.stats.heartbeat_timeouts += 1
        self.close(INTERNAL_ERROR, "heartbeat timeout")

    def ping(self, payload=b""):
        """Send an application ping (not part of the heartbeat)."""
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return False
        self._write(connection.send_ping(payload))
        return True

    # ----------------------------------------------------------- flow control

    def pauseProducing(self):
        # The transport's buffer is over its limit: the client is not reading
        # as fast as we write. Stop reading from it too (its own requests
        # would only queue more answers), and start counting what is queued.
        self._write_paused = True
        self._paused_bytes = 0
        self.transport.pauseProducing()

    def resumeProducing(self):
        self._write_paused = False
        self._paused_bytes = 0
        if not self._reading_paused_by_app and self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self):
        pass

    def pause_reading(self):
        """Stop reading from the client until :meth:`resume_reading` (the
        application cannot keep up with its messages)."""
        self._reading_paused_by_app = True
        self.transport.pauseProducing()

    def resume_reading(self):
        self._reading_paused_by_app = False
        if not self._write_paused:
            self.transport.resumeProducing()

    def _slow_consumer(self):
        self.factory.stats.slow_consumers += 1
        limit = self.factory.settings.max_outgoing_buffer
        log.info("session {session} dropped: client not reading, over {limit} bytes queued",
                 session=self.id, limit=limit)
        # No Close frame can reach a client that does not read: the record
        # says 1006 (closed without a close frame) and why.
        self._abort(ABNORMAL_CLOSURE, "slow consumer: more than %d bytes queued" % limit)

    # --------------------------------------------------------------- ending

    def deadline_expired(self):
        """The handshake or close timeout passed."""
        if self._phase is _HANDSHAKE:
            self._phase = _ENDED
            self.factory.stats.handshakes_refused["handshake_timeout"] += 1
            self.transport.abortConnection()
        elif self.connection is not None and self.connection.state is not CLOSED:
            self._abort(ABNORMAL_CLOSURE, "close timeout")
        else:
            # We closed, but the client has not let the TCP connection go.
            self.transport.abortConnection()

    def _abort(self, code, reason):
        connection = self.connection
        if connection is not None:
            connection.abort(code, reason)
        self.transport.abortConnection()

    def _close_transport(self):
        # 7.1.1: the server closes the TCP connection first, once the closing
        # handshake is done (or the connection was failed, or the handshake
        # refused). After a clean closing handshake the client has nothing
        # more to send, so the connection is simply closed. Otherwise a
        # plain TCP connection is half-closed: the FIN follows our last
        # bytes, and whatever the client still sends is read and discarded
        # until it closes too. Closing outright while unread bytes sit in the
        # socket would make the kernel send a reset, and a reset can destroy
        # the client's copy of our last frames (the echo before a failure,
        # the Close and its code) before it reads them. The close timeout
        # bounds how long a client may keep its half open.
        self.factory.deadlines.set(self, self.factory.settings.close_timeout)
        transport = self.transport
        connection = self.connection
        if (isinstance(transport, FileDescriptor)
                and (connection is None or not connection.closed_cleanly)):
            transport.loseWriteConnection()
        else:
            transport.loseConnection()  # TLS and wrappers: close_notify, then close

    def connectionLost(self, reason):
        factory = self.factory
        factory.deadlines.discard(self)
        self.connected = 0
        if self.connection is None:
            if self._phase is _HANDSHAKE:
                factory.stats.handshakes_refused["closed_during_handshake"] += 1
            self._phase = _ENDED
            return
        self._phase = _ENDED
        record = self.connection.connection_lost()
        record.duration = factory.clock.seconds() - self.opened_at
        self.close_record = record
        factory.session_closed(self, record)


class WebSocketFactory(Factory):
    """Builds a :class:`WebSocketProtocol` per connection; keeps the open
    sessions and the sweeps (deadlines, heartbeats) they share."""

    noisy = False  # the service logs what it listens on, once

    def __init__(self, application=None, settings=None, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.application = application if application is not None else Application()
        self.settings = settings if settings is not None else ServerSettings()
        self.clock = clock
        self.stats = ServerStats()
        self.sessions = {}
        self.deadlines = Deadlines(clock)
        self.heartbeat = None
        self._ids = itertools.count(1)
        # Session ids are unique across nodes and restarts: a random prefix
        # per process, then a counter.
        self._id_prefix = os.urandom(4).hex()
        self._stopping = False

    def buildProtocol(self, addr):
        return WebSocketProtocol(self)

    def next_session_id(self):
        return "%s-%x" % (self._id_prefix, next(self._ids))

    def startFactory(self):
        settings = self.settings
        if settings.heartbeat_interval and self.heartbeat is None:
            self.heartbeat = Heartbeat(self.clock, settings.heartbeat_interval,
                                       settings.heartbeat_timeout, self.sessions.values)
            self.heartbeat.start()

    def stopFactory(self):
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        if not self.sessions:
            self.deadlines.stop()

    def session_opened(self, session):
        self.stats.handshakes_accepted += 1
        self.sessions[session.id] = session
        try:
            self.application.session_opened(session)
        except Exception:
            log.failure("application error opening session {session}", session=session.id)
            session.close(INTERNAL_ERROR, "internal error")

    def session_closed(self, session, record):
        self.sessions.pop(session.id, None)
        self.stats.session_closed(session, record)
        try:
            self.application.session_closed(session, record)
        except Exception:
            log.failure("application error closing session {session}", session=session.id)

    def fan_out(self, message, sessions):
        """Send one :class:`~presence.websocket.connection.PreparedMessage`
        to many sessions: encoded once for all sessions without extensions,
        and once per parameter set for those compressing each message on its
        own. Returns how many sessions were open."""
        sent = 0
        send = WebSocketProtocol.send_prepared
        for session in sessions:
            if send(session, message):
                sent += 1
        return sent

    def close_all(self, code=GOING_AWAY, reason="server shutting down"):
        """Start the closing handshake on every session (server shutdown)."""
        for session in list(self.sessions.values()):
            session.close(code, reason)
