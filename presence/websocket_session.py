"""The WebSocket transport: the Twisted side of the sans-I/O core.

A :class:`WebSocketSession` receives a connection whose request head asked
for ``Upgrade: websocket`` (presence/dispatch.py), answers the opening
handshake, then feeds frames to a
:class:`~presence.websocket.connection.ServerConnection` and its events to the
application. It owns what the core cannot: the transport, the clock and the
record of the session's end (the rest is shared with firepresence in
presence/session.py).
"""

import json
from urllib.parse import parse_qs, urlsplit

from twisted.logger import Logger

from . import fastwrite
from .session import Session
from .websocket.close import INTERNAL_ERROR, NORMAL_CLOSURE, POLICY_VIOLATION
from .websocket.connection import CLOSED, OPEN, ServerConnection
from .websocket.events import (
    BinaryMessage,
    CloseReceived,
    Ping,
    Pong,
    ProtocolError,
    TextMessage,
)
from .websocket.extensions import format_extension
from .websocket.frames import OP_BINARY, OP_TEXT
from .websocket.handshake import Rejected, server_handshake

__all__ = ["WebSocketSession"]

log = Logger()

#: Payloads from this size are written as header and payload with one
#: vectored send instead of being copied into one frame first.
_VECTORED_WRITE_SIZE = 16384

_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_json_ascii = json.JSONEncoder(separators=(",", ":")).encode


def _ticket_in(path):
    """The ``ticket`` query parameter of a request target, or None."""
    if "ticket=" not in path:
        return None
    values = parse_qs(urlsplit(path).query).get("ticket")
    return values[0] if values else None


class WebSocketSession(Session):
    protocol_name = "websocket"

    __slots__ = ("connection", "subprotocol", "extensions")

    def __init__(self, node):
        super().__init__(node)
        self.connection = None
        self.subprotocol = None
        #: Names of the negotiated extensions.
        self.extensions = ()

    @property
    def extension_details(self):
        """The negotiated extensions with their agreed parameters, as in the
        handshake's Sec-WebSocket-Extensions answer."""
        connection = self.connection
        if connection is None:
            return ()
        return tuple(format_extension(extension.name, extension.response_params())
                     for extension in connection.extensions)

    # ------------------------------------------------------------ handshake

    def start(self, head, rest):
        node = self.node
        outcome = server_handshake(head, node.settings.handshake)
        if outcome.__class__ is Rejected:
            self.refuse(outcome.kind, outcome.response)
            return
        ticket = _ticket_in(outcome.path) if node.tickets is not None else None
        if ticket is None:
            self._open(outcome, rest, False)
            return
        self.open_when_redeemed(ticket, outcome, rest)

    def _open(self, outcome, rest, authenticated):
        node = self.node
        self.connection = ServerConnection(node.settings.max_message_size, outcome.extensions,
                                           node.settings.max_fragments)
        self.path = outcome.path
        self.origin = outcome.origin
        self.user_agent = outcome.user_agent
        self.subprotocol = outcome.subprotocol
        if outcome.extensions:
            self.extensions = tuple(extension.name for extension in outcome.extensions)
        # Byte counters cover the WebSocket stream, not the HTTP handshake.
        fastwrite.write(self.transport, outcome.response)
        self.opened(authenticated)
        if rest and self.connection.state is not CLOSED:
            self.dataReceived(rest)

    # -------------------------------------------------------------- reading

    def dataReceived(self, data):
        connection = self.connection
        if connection is None:
            if self._held is not None:
                self._held += data  # sent before our answer: kept for after it
            return
        if connection.state is CLOSED:
            return  # draining a half-closed connection
        self.bytes_in += len(data)
        self._refill()
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
            self._flush(batch)
        if connection.state is CLOSED:
            self._close_transport(connection.closed_cleanly)

    def _dispatch(self, events):
        application = self.node.application
        for event in events:
            kind = event.__class__
            if kind is not ProtocolError and kind is not CloseReceived:
                # Messages, pings and pongs count against --max-message-rate.
                allowance = self._allowance - 1
                self._allowance = allowance
                if allowance < 0:
                    self._rate_exceeded()
                    continue
            try:
                if kind is TextMessage:
                    self.messages_in += 1
                    if self.ready:
                        application.text_received(self, event.text)
                    else:
                        self._before_ready(event.text)
                elif kind is BinaryMessage:
                    self.messages_in += 1
                    if self.ready:
                        application.binary_received(self, event.data)
                    else:
                        self._before_ready(None)
                elif kind is Ping:
                    if event.pong:
                        self._write(event.pong)
                elif kind is Pong:
                    self._heartbeat_answered(event.payload)
                elif kind is ProtocolError:
                    self.node.stats.protocol_errors[event.reason] += 1
                    if event.code == POLICY_VIOLATION:  # more than --max-fragments
                        self.node.stats.limits_hit["max-fragments"] += 1
            except Exception:
                log.failure("application error in session {session}", session=self.id)
                self.close(INTERNAL_ERROR, "internal error")
                return

    def _before_ready(self, text):
        """A message before the session is authenticated: its auth message,
        or what follows it before the welcome."""
        document = None
        if text is not None:
            try:
                document = json.loads(text)
            except ValueError:
                document = None
        if not isinstance(document, dict):
            document = {}
        self.auth_message(document, text)

    # -------------------------------------------------------------- sending

    def send_document(self, document):
        """Send a JSON-serialisable object as a text message."""
        text = _encode_json(document)
        try:
            payload = text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (from a client's "\\ud800") has no UTF-8
            # form: escaped, the document is the same to any JSON reader.
            payload = _encode_json_ascii(document).encode("ascii")
        return self._send_message(OP_TEXT, payload)

    def _send_message(self, opcode, payload):
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return False
        self.messages_out += 1
        if len(payload) < _VECTORED_WRITE_SIZE:
            self._write(connection.send_message(opcode, payload))
        else:
            self._write_parts(list(connection.send_message_parts(opcode, payload)))
        return True

    def send_text(self, text):
        """Send a text message; returns False when the session is not open."""
        return self._send_message(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data):
        """Send a binary message; returns False when the session is not open."""
        return self._send_message(OP_BINARY, data)

    def send_prepared(self, prepared):
        """Send a :class:`~presence.websocket.connection.PreparedMessage`
        (see :meth:`presence.node.Node.fan_out`)."""
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

    def ping(self, payload=b""):
        """Send an application ping (not part of the heartbeat)."""
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return False
        self._write(connection.send_ping(payload))
        return True

    def close(self, code=NORMAL_CLOSURE, reason=""):
        """Start the closing handshake (7.1.2); the transport is dropped if
        the client does not answer within the close timeout."""
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return
        self._write(connection.send_close(code, reason))
        if connection.state is not CLOSED:
            self.node.deadlines.set(self, self.node.settings.close_timeout)

    def send_heartbeat(self, heartbeat_round, now):
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return
        self.ping_sent_at = now
        self._ping_id = heartbeat_round.payload
        self._write(heartbeat_round.frame)

    # --------------------------------------------------------------- ending

    def _ended(self):
        return self.connection.state is CLOSED

    def _closing(self):
        return self.connection is None or self.connection.state is not OPEN

    def _abort(self, code, reason):
        if self.connection is not None:
            self.connection.abort(code, reason)
        self.transport.abortConnection()

    def _end_record(self):
        return self.connection.connection_lost()
