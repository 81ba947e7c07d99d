"""The server side of an open SSE session (docs/protocol.md, "SSE"), as a
sans-I/O state machine of the same shape as firepresence's
``FirepresenceConnection``: POST bodies in through
:meth:`~SSEConnection.receive_data` (each call one body), events
(presence/wire/events.py) out of :meth:`~SSEConnection.events`, the bytes of
the stream out of the ``send_*`` methods and :meth:`~SSEConnection.data_to_send`.

Downstream, every message is one event of the stream (the WHATWG HTML
standard, "Server-sent events", 9.2): ``data: <JSON>`` and a blank line,
preceded by ``id: <offset>`` when the message carries an ``"offset"`` (a
channel with history), so that a reconnecting ``EventSource`` says where it
was. The heartbeat is a comment line, which keeps proxies from timing the
response out, and a ``ping`` event that the client answers by POSTing a
pong. The server's close is an ``event: close`` and the end of the
response.

Upstream, a body is one JSON object or a JSON array of them. As on
firepresence, three types belong to the protocol (``ping``, ``pong``,
``close``) and every other object is a message for the application; what is
not a JSON object is answered with an ``error`` event (a ``Malformed``
event carries it), and after ``max_bad_lines`` of them the session is
closed with 1007.

A close event is the last event either way, so the state goes from
``OPEN`` straight to ``CLOSED``. The closing and the record of how it ended
are shared with firepresence (presence/wire/documents.py).
"""

from ..wire.documents import DEFAULT_MAX_BAD_LINES, DocumentConnection
from ..wire.events import CLOSED, Ping, Pong, TextMessage
from ..wire.jsontext import JSONError, decode_json, encode_document

__all__ = ["SSEConnection", "encode_event", "DEFAULT_MAX_BAD_LINES"]

#: The cache key of a PreparedMessage's event.
_EVENT = "sse"

_DATA = b"data: "
_END = b"\n\n"


def _event_id(payload):
    """The ``id:`` field of a message: its top-level ``"offset"`` (a
    channel message with history), or None. Looked for only when the bytes
    name an offset at all."""
    if b'"offset"' not in payload:
        return None
    try:
        document = decode_json(payload.decode("utf-8"))
    except (JSONError, UnicodeDecodeError):
        return None
    offset = document.get("offset") if isinstance(document, dict) else None
    if isinstance(offset, int) and not isinstance(offset, bool):
        return b"id: %d\n" % offset
    return None


def _data_lines(payload):
    """``payload`` as data lines: a field ends at CR or LF (9.2.4), so a
    payload holding one is split over several ``data:`` lines, which the
    client joins with LF. Compact JSON holds none."""
    if b"\n" not in payload and b"\r" not in payload:
        return [_DATA, payload, b"\n"]
    lines = payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return [b"".join(_DATA + line + b"\n" for line in lines)]


def encode_event(payload, event=None):
    """One event of the stream: ``event: NAME`` when ``event`` is given,
    ``id:`` when the payload carries an offset, the data, a blank line."""
    parts = [] if event is None else [b"event: " + event + b"\n"]
    event_id = _event_id(payload)
    if event_id is not None:
        parts.append(event_id)
    parts.extend(_data_lines(payload))
    parts.append(b"\n")
    return b"".join(parts)


def _document_event(document, event=None):
    return encode_event(encode_document(document), event)


class SSEConnection(DocumentConnection):
    """One SSE session after its stream was answered. ``max_body`` bounds a
    POST body in bytes (the server's --max-message-size)."""

    #: Where a PreparedMessage caches its event (every session shares it).
    prepared_key = _EVENT

    unit = "an event"
    too_many_malformed = "too many malformed messages"
    lost_without_close = "stream closed without a close event"
    _encode = staticmethod(_document_event)

    __slots__ = ("max_body", "_bodies")

    def __init__(self, max_body, max_bad_lines=DEFAULT_MAX_BAD_LINES):
        super().__init__(max_bad_lines)
        self.max_body = max_body
        self._bodies = []

    # ------------------------------------------------------------------ input

    def receive_data(self, body):
        """One POST body; :meth:`events` reads it."""
        if self.state is CLOSED:
            return
        self._bodies.append(body)

    def events(self):
        """The events of the bodies received, one at a time; none after the
        session closed (a close either way ends it)."""
        bodies = self._bodies
        while bodies and self.state is not CLOSED:
            for event in self._body_events(bodies.pop(0)):
                yield event
                if self.state is CLOSED:
                    bodies.clear()
                    return

    def _body_events(self, body):
        documents = self._documents(body)
        if documents.__class__ is str:
            yield from self._malformed(documents)
            return
        for document, text in documents:
            if not isinstance(document, dict):
                yield from self._malformed("body is not a JSON object or an array of them")
                continue
            kind = document.get("type")
            if kind == "ping":
                ping_id = document.get("id")
                yield Ping(ping_id, _document_event({"type": "pong", "id": ping_id}))
            elif kind == "pong":
                yield Pong(document.get("id"))
            elif kind == "close":
                yield self._receive_close(document)
                return
            else:
                yield TextMessage(text if text is not None else
                                  encode_document(document).decode("utf-8"))

    def _documents(self, body):
        """``[(document, its text or None)]`` of a body, or why it cannot be
        taken (a str)."""
        if len(body) > self.max_body:
            return "body larger than %d bytes" % self.max_body
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return "body is not valid UTF-8"
        try:
            document = decode_json(text)
        except JSONError as error:
            return "body is not JSON" if error.reason == "not JSON" \
                else "body is not JSON Presence takes: %s" % error.reason
        if isinstance(document, list):
            if not document:
                return "body is an empty array"
            return [(item, None) for item in document]
        return [(document, text)]

    # ----------------------------------------------------------------- output

    def send_data(self, payload, is_text):
        """One message as an event: ``payload`` is the UTF-8 of one JSON
        object; ``None`` for a binary message, which SSE does not carry."""
        self._check_open()
        if not is_text:
            return None
        return encode_event(payload)

    def send_data_parts(self, payload, is_text):
        """One message as the parts of a vectored write (the payload is not
        copied next to its field name)."""
        self._check_open()
        if not is_text:
            return None
        event_id = _event_id(payload)
        parts = _data_lines(payload)
        if event_id is not None:
            parts.insert(0, event_id)
        parts.append(b"\n")
        return parts

    def send_prepared(self, prepared):
        """A :class:`~presence.wire.prepared.PreparedMessage` as an event,
        made once for every SSE session; ``None`` when it is binary."""
        self._check_open()
        if not prepared.is_text:
            return None
        event = prepared.forms.get(_EVENT)
        if event is None:
            event = prepared.forms[_EVENT] = encode_event(prepared.payload)
        return event

    @staticmethod
    def heartbeat_ping(number):
        """Heartbeat round ``number``'s comment and ping event, the same for
        every session: ``(bytes, pong id to expect)``."""
        return (b": heartbeat\n\n" + _document_event({"type": "ping", "id": number}, b"ping"),
                number)
