"""The closing handshake of a WebSocket connection (RFC 6455 5.5.1, 7), and
the record of how the connection ended.

Either side may start it: the server with :meth:`ClosingHandshake.send_close`
(the state becomes ``CLOSING`` until the client's Close comes back), the
client with its Close, which the server answers by echoing its code. A
connection failed for breaking the protocol (7.1.7) sends its Close and
reads nothing more. Whichever way it went, :meth:`connection_lost` says how
it ended once the transport is gone.
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
from ..wire.events import CLOSED, CLOSING, OPEN, CloseReceived, ProtocolError
from .frames import OP_CLOSE, encode_close_payload, encode_frame
from .message import ProtocolViolation

__all__ = ["ClosingHandshake"]


class ClosingHandshake:
    """The connection's state and the close each side sent."""

    __slots__ = ("state", "close_code", "close_reason", "close_initiator", "_close_sent",
                 "_close_received", "_failed", "_outgoing")

    def __init__(self):
        self.state = OPEN
        self.close_code = None
        self.close_reason = ""
        self.close_initiator = None
        self._close_sent = False
        self._close_received = False
        self._failed = False
        # Frames queued by the parser: the answer to a Close, or the Close
        # that fails the connection.
        self._outgoing = []

    def data_to_send(self):
        """Close frames queued while parsing: the answer to the client's
        Close, or the Close that fails the connection."""
        outgoing = self._outgoing
        if not outgoing:
            return b""
        data = b"".join(outgoing)
        outgoing.clear()
        return data

    def _receive_close(self, payload):
        # 5.5.1 Close; 7.4 status codes.
        if not payload:
            code = NO_STATUS_RECEIVED
            reason = ""
        elif len(payload) == 1:
            raise ProtocolViolation(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        else:
            code = (payload[0] << 8) | payload[1]
            if not is_valid_received_code(code):
                raise ProtocolViolation(PROTOCOL_ERROR, "invalid close code %d" % code)
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolation(INVALID_PAYLOAD,
                                        "close reason is not valid UTF-8") from None
        self._close_received = True
        if self.state is OPEN:
            # The client started the closing handshake: answer, echoing its
            # code (5.5.1), and record its code and reason.
            self.close_code = code
            self.close_reason = reason
            self.close_initiator = CLIENT
            self._outgoing.append(encode_frame(OP_CLOSE, encode_close_payload(code)))
            self._close_sent = True
        self.state = CLOSED
        return CloseReceived(code, reason)

    def _failed_with(self, code, reason, limit=None):
        # 7.1.7 Fail the WebSocket Connection: send a Close frame with the
        # status code, then close the transport without reading further.
        if self.state is OPEN:
            self._outgoing.append(encode_frame(OP_CLOSE, encode_close_payload(code, reason)))
            self._close_sent = True
            self.close_code = code
            self.close_reason = reason
            self.close_initiator = SERVER
        self._failed = True
        self.state = CLOSED
        return ProtocolError(code, reason, limit)

    def send_close(self, code=NORMAL_CLOSURE, reason=""):
        """Start the closing handshake (7.1.2); returns the Close frame, or
        ``b""`` when a Close was already sent."""
        if self.state is not OPEN:
            return b""
        self.state = CLOSING
        self.close_code = code
        self.close_reason = reason = bounded_reason(reason)
        self.close_initiator = SERVER
        self._close_sent = True
        return encode_frame(OP_CLOSE, encode_close_payload(code, reason))

    @property
    def closed_cleanly(self):
        """Both Close frames were exchanged and nothing broke the protocol
        (7.1.5 "the WebSocket closing handshake was completed")."""
        return self._close_sent and self._close_received and not self._failed

    @property
    def peer_closed(self):
        """The client sent its Close: it sends nothing more, so the transport
        can be closed outright (7.1.1)."""
        return self._close_received

    def abort(self, code, reason):
        """The server drops the transport without (finishing) the closing
        handshake, e.g. a peer that stopped reading. Records ``code`` and
        ``reason`` unless a close was already under way."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.close_initiator = SERVER
        self.state = CLOSED

    def connection_lost(self):
        """The transport is gone: return how the connection ended (7.1.5)."""
        clean = self.closed_cleanly
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
            self.close_reason = "connection closed without a close frame"
            self.close_initiator = CLIENT
        self.state = CLOSED
        return CloseRecord(self.close_code, self.close_reason, self.close_initiator, clean)
