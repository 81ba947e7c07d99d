"""What the two protocols of JSON documents share: firepresence (a line
each) and SSE (an event each). A client's close document is answered with
one carrying its code and ends the session; the server's close is final
too, so either way the state goes from ``OPEN`` straight to ``CLOSED``, and
the record of how it ended is kept here. Malformed input is answered with an
error document, and past ``max_bad_lines`` the session is closed with 1007.

A core subclasses :class:`DocumentConnection` and gives how a document is
written on its wire (``_encode``), what its unit is called, and its words
for the ends this class records.
"""

from .close import (
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
from .events import CLOSED, OPEN, CloseReceived, InvalidState, Malformed, ProtocolError

__all__ = ["DocumentConnection", "DEFAULT_MAX_BAD_LINES"]

#: Malformed lines (or bodies) a session may send before it is closed with
#: 1007. A client with a bug gets a few error documents to find it by; a
#: client sending garbage does not get to keep the server answering it.
DEFAULT_MAX_BAD_LINES = 10


class DocumentConnection:
    """The state, the closing and the record of a session of JSON documents.
    A subclass gives ``_encode(document, event=None)``: ``document`` as its
    protocol writes it (``event``: the SSE event name, for the protocols
    that name them)."""

    #: How the protocol calls what it sends ("a line", "an event").
    unit = None
    #: The close reason of too many malformed documents.
    too_many_malformed = None
    #: The record's reason when the transport went without a close.
    lost_without_close = None

    __slots__ = ("state", "max_bad_lines", "bad_lines", "_outgoing", "_close",
                 "_close_received")

    def __init__(self, max_bad_lines=DEFAULT_MAX_BAD_LINES):
        self.state = OPEN
        self.max_bad_lines = max_bad_lines
        #: Malformed documents received.
        self.bad_lines = 0
        self._outgoing = []
        # (code, reason, initiated by, clean) once a close went either way,
        # or the connection was aborted.
        self._close = None
        self._close_received = False

    # ------------------------------------------------------------------ input

    def _malformed(self, reason):
        """The events of a malformed document: its error answer, then the
        session's end once there were too many."""
        self.bad_lines += 1
        yield Malformed(reason, self._encode({"type": "error", "reason": reason}))
        if self.bad_lines >= self.max_bad_lines and self.state is OPEN:
            yield self._fail(INVALID_PAYLOAD, self.too_many_malformed)

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
        self._outgoing.append(self._encode({"type": "close", "code": code, "reason": ""},
                                           b"close"))
        self.state = CLOSED
        return CloseReceived(code, reason)

    def _fail(self, code, reason):
        """The client broke the protocol: the server's close ends the
        session (a close is final, so the record says clean)."""
        self._outgoing.append(self.send_close(code, reason))
        return ProtocolError(code, reason)

    # ----------------------------------------------------------------- output

    def data_to_send(self):
        """The close that answers the client's, or that failed the session."""
        outgoing = self._outgoing
        if not outgoing:
            return b""
        data = b"".join(outgoing)
        outgoing.clear()
        return data

    def _check_open(self):
        if self.state is not OPEN:
            raise InvalidState("cannot send %s in state %s" % (self.unit, self.state.name))

    def send_close(self, code=NORMAL_CLOSURE, reason=""):
        """The final close; ``b""`` once the session is closed."""
        if self.state is not OPEN:
            return b""
        reason = bounded_reason(reason)
        self._close = (code, reason, SERVER, True)
        self.state = CLOSED
        return self._encode({"type": "close", "code": code, "reason": reason}, b"close")

    # ------------------------------------------------------------------ end

    @property
    def peer_closed(self):
        """The client sent its close: it sends nothing more, so the
        transport can be closed outright."""
        return self._close_received

    def abort(self, code, reason):
        """The server drops the transport without a close (a client that
        stopped reading). Records ``code`` and ``reason`` unless a close
        went already."""
        if self._close is None:
            self._close = (code, reason, SERVER, False)
        self.state = CLOSED

    def connection_lost(self):
        """The transport is gone: how the session ended."""
        self.state = CLOSED
        if self._close is None:
            return CloseRecord(ABNORMAL_CLOSURE, self.lost_without_close, CLIENT, False)
        return CloseRecord(*self._close)
