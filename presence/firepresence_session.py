"""The firepresence transport: one JSON object per line (docs/protocol.md).

A :class:`FirepresenceSession` receives a connection whose request head
asked for ``Upgrade: firepresence`` (presence/dispatch.py). To the rest of the
server it is a session like a WebSocket one: the application receives its
messages as text (each one a JSON object), sends text back, and sees the
same close codes and reasons in its close record.

Three message types belong to the transport itself, as control frames do in
WebSocket: ``ping`` and ``pong`` (with an ``id``; the server's heartbeat, and
a client's own liveness check), and ``close`` (with a ``code`` and a
``reason``). A malformed line is answered with an ``error`` line and
counted; after ``max_bad_lines`` of them the session is closed with 1007.
"""

from .firepresence import (
    BadLine,
    FirepresenceAccepted,
    LineReader,
    encode_line,
    firepresence_handshake,
)
from .session import Session
from .websocket.close import (
    ABNORMAL_CLOSURE,
    CLIENT,
    INVALID_PAYLOAD,
    NO_STATUS_RECEIVED,
    NORMAL_CLOSURE,
    PROTOCOL_ERROR,
    SERVER,
    CloseRecord,
    is_valid_received_code,
)

__all__ = ["FirepresenceSession"]


class FirepresenceSession(Session):
    protocol_name = "firepresence"

    __slots__ = ("reader", "bad_lines", "_close", "_closed")

    def __init__(self, node):
        super().__init__(node)
        self.reader = None
        #: Malformed lines received.
        self.bad_lines = 0
        # (code, reason, initiated_by, clean) once a close line went either way.
        self._close = None
        self._closed = False

    # ------------------------------------------------------------ handshake

    def start(self, head, rest):
        outcome = firepresence_handshake(head)
        if outcome.__class__ is not FirepresenceAccepted:
            self.refuse(outcome.kind, outcome.response)
            return
        if outcome.auth_token is None or self.node.tickets is None:
            self._open(outcome, rest, False)
            return
        self.open_when_redeemed(outcome.auth_token, outcome, rest)

    def _open(self, outcome, rest, authenticated):
        self.reader = LineReader(self.node.settings.max_message_size)
        self.path = outcome.path
        self.user_agent = outcome.user_agent
        self.transport.write(outcome.response)
        self.opened(authenticated)
        if rest:
            self.dataReceived(rest)

    # -------------------------------------------------------------- reading

    def dataReceived(self, data):
        if self.reader is None:
            if self._held is not None:
                self._held += data  # sent before our answer: kept for after it
            return
        if self._closed:
            return  # draining after the close
        self.bytes_in += len(data)
        self._refill()
        batch = self._batch = []
        try:
            for event in self.reader.receive_data(data):
                if self._closed:
                    break
                # Every line counts against --max-message-rate.
                allowance = self._allowance - 1
                self._allowance = allowance
                if allowance < 0:
                    self._rate_exceeded()
                    break
                if event.__class__ is BadLine:
                    self._bad_line(event.reason)
                    continue
                document = event.document
                kind = document.get("type")
                if kind == "ping":
                    self._write(encode_line({"type": "pong", "id": document.get("id")}))
                elif kind == "pong":
                    self._heartbeat_answered(document.get("id"))
                elif kind == "close":
                    self._close_received(document)
                elif self.ready:
                    self._deliver(self.node.application.text_received, event.text)
                else:
                    self.messages_in += 1
                    self.auth_message(document, event.text)
        finally:
            self._batch = None
        if batch:
            self._flush(batch)
        if self._closed:
            # After the client's close, nothing more comes: close outright.
            self._close_transport(self._close[2] == CLIENT)

    def _bad_line(self, reason):
        node = self.node
        node.stats.protocol_errors[reason] += 1
        self.bad_lines += 1
        self._write(encode_line({"type": "error", "reason": reason}))
        if self.bad_lines >= node.settings.max_bad_lines:
            self.close(INVALID_PAYLOAD, "too many malformed lines")

    def _close_received(self, document):
        code = document.get("code")
        if code is None:
            code = NO_STATUS_RECEIVED
        elif not (isinstance(code, int) and is_valid_received_code(code)):
            self.close(PROTOCOL_ERROR, "invalid close code")
            return
        reason = document.get("reason")
        reason = reason if isinstance(reason, str) else ""
        if self._close is None:
            # The client says goodbye: answer with the same code, as a
            # WebSocket server echoes a Close, and let it go.
            self._close = (code, reason, CLIENT, True)
            self._write(encode_line({"type": "close", "code": code, "reason": ""}))
        self._closed = True

    # -------------------------------------------------------------- sending

    def send_text(self, text):
        """Send one JSON object (as text) as a line; False when closed."""
        if self.reader is None or self._close is not None:
            return False
        if "\n" in text:
            raise ValueError("a firepresence message is one line of JSON")
        self.messages_out += 1
        self._write(text.encode("utf-8") + b"\n")
        return True

    def send_document(self, document):
        """Send a JSON-serialisable object as a line."""
        if self.reader is None or self._close is not None:
            return False
        self.messages_out += 1
        self._write(encode_line(document))
        return True

    def send_binary(self, data):
        """firepresence carries JSON only: binary messages are not sent."""
        return False

    def send_prepared(self, prepared):
        if self.reader is None or self._close is not None:
            return False
        line = prepared.line
        if line is None:
            return False  # binary
        self.messages_out += 1
        self._write(line)
        return True

    def close(self, code=NORMAL_CLOSURE, reason=""):
        """Send the final close line, then close the connection."""
        if self.reader is None or self._close is not None:
            return
        self._close = (code, reason, SERVER, True)
        self._write(encode_line({"type": "close", "code": code, "reason": reason}))
        self._closed = True
        if self._batch is None:
            self._close_transport(False)

    def send_heartbeat(self, heartbeat_round, now):
        if self.reader is None or self._close is not None:
            return
        self.ping_sent_at = now
        self._ping_id = heartbeat_round.number
        self._write(heartbeat_round.line)

    # --------------------------------------------------------------- ending

    def _ended(self):
        return self._closed

    def _closing(self):
        return self._close is not None

    def _abort(self, code, reason):
        if self._close is None:
            self._close = (code, reason, SERVER, False)
        self._closed = True
        self.transport.abortConnection()

    def _end_record(self):
        if self._close is None:
            return CloseRecord(ABNORMAL_CLOSURE, "connection closed without a close line",
                               CLIENT, False)
        return CloseRecord(*self._close)
