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
The closing and the record of how it ended are shared with SSE
(presence/wire/documents.py).
"""

from ..wire.documents import DEFAULT_MAX_BAD_LINES, DocumentConnection
from ..wire.events import CLOSED, Ping, Pong, TextMessage
from .lines import BadLine, LineReader, encode_line

__all__ = ["FirepresenceConnection", "DEFAULT_MAX_BAD_LINES"]

#: The cache key of a PreparedMessage's line.
_LINE = "firepresence"


def _line(document, event=None):
    return encode_line(document)


class FirepresenceConnection(DocumentConnection):
    """One firepresence session after a successful handshake. ``max_line``
    bounds a line in bytes (the server's --max-message-size)."""

    #: Where a PreparedMessage caches its line (every session shares it).
    prepared_key = _LINE

    unit = "a line"
    too_many_malformed = "too many malformed lines"
    lost_without_close = "connection closed without a close line"
    _encode = staticmethod(_line)

    __slots__ = ("_reader", "_received")

    def __init__(self, max_line, max_bad_lines=DEFAULT_MAX_BAD_LINES):
        super().__init__(max_bad_lines)
        self._reader = LineReader(max_line)
        self._received = b""

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
                yield from self._malformed(line.reason)
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

    # ----------------------------------------------------------------- output

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
