"""The server side of an open firepresence session (docs/protocol.md), as a
sans-I/O state machine of the same shape as the WebSocket core's
``ServerConnection``: bytes in through :meth:`~FirepresenceConnection.receive_data`,
events (presence/wire/events.py) out of :meth:`~FirepresenceConnection.events`,
bytes to write out of the ``send_*`` methods and
:meth:`~FirepresenceConnection.data_to_send`.

Three message types belong to the protocol itself, as control frames do in
WebSocket: ``ping`` and ``pong`` (with an ``id``: the server's heartbeat, and
a client's own liveness check), and ``close`` (with a ``code`` and a
``reason``). Every other line is a message. A line that is not a JSON object
is answered with an ``error`` line (a ``Malformed`` event carries it); after
``max_bad_lines`` of them the session is closed with 1007.

A close line is the last line either way, so the state goes from ``OPEN``
straight to ``CLOSED``: the server's close line ends the session as it is
written, and a client's close line is answered with one carrying its code.
"""

from ..wire.close import (
    ABNORMAL_CLOSURE,
    CLIENT,
    INVALID_PAYLOAD,
    NO_STATUS_RECEIVED,
    NORMAL_CLOSURE,
    PROTOCOL_ERROR,
    SERVER,
    CloseRecord,
    bounded_reason,
    is_valid_received_code,
)
from ..wire.events import (
    CLOSED,
    OPEN,
    CloseReceived,
    InvalidState,
    Malformed,
    Ping,
    Pong,
    ProtocolError,
    TextMessage,
)
from .lines import BadLine, LineReader, encode_line

__all__ = ["FirepresenceConnection", "DEFAULT_MAX_BAD_LINES"]

#: Malformed lines a session may send before it is closed with 1007. A
#: client with a bug gets a few error lines to find it by; a client sending
#: garbage does not get to keep the server answering it.
DEFAULT_MAX_BAD_LINES = 10

#: The cache key of a PreparedMessage's line.
_LINE = "firepresence"


class FirepresenceConnection:
    """One firepresence session after a successful handshake. ``max_line``
    bounds a line in bytes (the server's --max-message-size)."""

    #: Where a PreparedMessage caches its line (every session shares it).
    prepared_key = _LINE

    __slots__ = ("state", "max_bad_lines", "bad_lines", "_reader", "_received", "_outgoing",
                 "_close", "_close_received")

    def __init__(self, max_line, max_bad_lines=DEFAULT_MAX_BAD_LINES):
        self.state = OPEN
        self.max_bad_lines = max_bad_lines
        #: Malformed lines received.
        self.bad_lines = 0
        self._reader = LineReader(max_line)
        self._received = b""
        self._outgoing = []
        # (code, reason, initiated by, clean) once a close line went either
        # way, or the connection was aborted.
        self._close = None
        self._close_received = False

    # ------------------------------------------------------------------ input

    def receive_data(self, data):
        """Feed bytes read from the client; :meth:`events` reads them."""
        if self.state is CLOSED or not data:
            return
        self._received = self._received + data if self._received else data

    def events(self):
        """The events of what has been received, one at a time; none after
        the session closed (a close either way ends it)."""
        data = self._received
        self._received = b""
        if not data:
            return
        for line in self._reader.lines(data):
            if self.state is CLOSED:
                return
            if line.__class__ is BadLine:
                self.bad_lines += 1
                yield Malformed(line.reason, encode_line({"type": "error", "reason": line.reason}))
                if self.bad_lines >= self.max_bad_lines and self.state is OPEN:
                    yield self._fail(INVALID_PAYLOAD, "too many malformed lines")
                    return
                continue
            document = line.document
            kind = document.get("type")
            if kind == "ping":
                ping_id = document.get("id")
                yield Ping(ping_id, encode_line({"type": "pong", "id": ping_id}))
            elif kind == "pong":
                yield Pong(document.get("id"))
            elif kind == "close":
                yield self._receive_close(document)
            else:
                yield TextMessage(line.text)

    def _receive_close(self, document):
        code = document.get("code")
        if code is None:
            code = NO_STATUS_RECEIVED
        elif not (isinstance(code, int) and is_valid_received_code(code)):
            return self._fail(PROTOCOL_ERROR, "invalid close code")
        reason = document.get("reason")
        # Held to the bound of a WebSocket Close's reason (RFC 6455 5.5),
        # as every close record is.
        reason = bounded_reason(reason) if isinstance(reason, str) else ""
        # The client says goodbye: answer with the same code, as a WebSocket
        # server echoes a Close, and let it go.
        self._close = (code, reason, CLIENT, True)
        self._close_received = True
        self._outgoing.append(encode_line({"type": "close", "code": code, "reason": ""}))
        self.state = CLOSED
        return CloseReceived(code, reason)

    def _fail(self, code, reason):
        """The client broke the protocol: the server's close line ends the
        session (a close line is final, so the record says clean)."""
        self._outgoing.append(self.send_close(code, reason))
        return ProtocolError(code, reason)

    # ----------------------------------------------------------------- output

    def data_to_send(self):
        """The close line that answers the client's, or that failed the
        session."""
        outgoing = self._outgoing
        if not outgoing:
            return b""
        data = b"".join(outgoing)
        outgoing.clear()
        return data

    def _check_open(self):
        if self.state is not OPEN:
            raise InvalidState("cannot send a line in state %s" % self.state.name)

    def send_data(self, payload, is_text):
        """One message as a line: ``payload`` is the UTF-8 of one JSON object;
        ``None`` for a binary message, which firepresence does not carry."""
        self._check_open()
        if not is_text:
            return None
        if b"\n" in payload:
            raise ValueError("a firepresence message is one line of JSON")
        return payload + b"\n"

    def send_data_parts(self, payload, is_text):
        """One message as the parts of a vectored write (the line, its LF)."""
        line = self.send_data(payload, is_text)
        return None if line is None else [payload, b"\n"]

    def send_prepared(self, prepared):
        """A :class:`~presence.wire.prepared.PreparedMessage` as a line, made
        once for every firepresence session; ``None`` when it is binary."""
        self._check_open()
        if not prepared.is_text:
            return None
        line = prepared.forms.get(_LINE)
        if line is None:
            line = prepared.forms[_LINE] = prepared.payload + b"\n"
        return line

    @staticmethod
    def heartbeat_ping(number):
        """Heartbeat round ``number``'s ping line, the same for every session:
        ``(line, pong id to expect)``."""
        return encode_line({"type": "ping", "id": number}), number

    def send_close(self, code=NORMAL_CLOSURE, reason=""):
        """The final close line; ``b""`` once the session is closed."""
        if self.state is not OPEN:
            return b""
        reason = bounded_reason(reason)
        self._close = (code, reason, SERVER, True)
        self.state = CLOSED
        return encode_line({"type": "close", "code": code, "reason": reason})

    # ------------------------------------------------------------------ end

    @property
    def peer_closed(self):
        """The client sent its close line: it sends nothing more, so the
        transport can be closed outright."""
        return self._close_received

    def abort(self, code, reason):
        """The server drops the transport without a close line (a client that
        stopped reading). Records ``code`` and ``reason`` unless a close line
        went already."""
        if self._close is None:
            self._close = (code, reason, SERVER, False)
        self.state = CLOSED

    def connection_lost(self):
        """The transport is gone: how the session ended."""
        self.state = CLOSED
        if self._close is None:
            return CloseRecord(ABNORMAL_CLOSURE, "connection closed without a close line",
                               CLIENT, False)
        return CloseRecord(*self._close)
