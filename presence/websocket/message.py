"""A data message that arrives in pieces (RFC 6455 5.4 fragmentation, or one
frame split across reads), and the protocol violation the parser raises.

The common message (one frame, whole in one read) never needs this: the
parser delivers it at once (presence/websocket/connection.py). A message in
pieces is decoded as it arrives: each piece is inflated (RFC 7692) and, for
text, run through an incremental UTF-8 decoder at once, so invalid UTF-8
fails the connection (1007) as soon as it arrives (8.1), and the message is
never buffered twice. Its size is bounded as it grows.
"""

import codecs

from ..wire.close import INVALID_PAYLOAD, MESSAGE_TOO_BIG, POLICY_VIOLATION
from ..wire.events import BinaryMessage, TextMessage
from .extensions import ExtensionError
from .frames import OP_TEXT

__all__ = ["IncomingMessage", "ProtocolViolation"]

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class ProtocolViolation(Exception):
    """The client broke the protocol: raised where the parser finds it, and
    turned into the failing of the connection (7.1.7) in one place,
    ``ServerConnection.events``. ``limit`` names the operator limit it went
    past, if that was the fault."""

    def __init__(self, code, reason, limit=None):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.limit = limit


class IncomingMessage:
    """The message being reassembled: its ``opcode``, the bytes its frames
    announced so far (``size``, on the wire), its ``fragments``, and the
    extension that decodes it (the one whose RSV bit its first frame set),
    or None. A ``discarded`` message (one arriving after this side's Close)
    is parsed through and dropped: neither inflated nor decoded, since
    nothing will read it (RFC 6455 5.5.1), so a client cannot make the
    server inflate while it waits for the client's Close."""

    __slots__ = ("opcode", "size", "fragments", "extension", "discarded", "_max_size", "_parts",
                 "_decoded", "_decoder")

    def __init__(self, opcode, extension, max_size, discarded=False):
        self.opcode = opcode
        self.discarded = discarded
        self.size = 0
        self.fragments = 1
        self.extension = extension
        self._max_size = max_size
        self._parts = []
        self._decoded = 0
        self._decoder = _Utf8Decoder() if opcode == OP_TEXT else None

    def count_fragment(self, max_fragments):
        """One more frame of this message; more than ``max_fragments`` (0:
        any number) fails the connection with 1008."""
        self.fragments += 1
        if self.fragments > max_fragments > 0:
            raise ProtocolViolation(POLICY_VIOLATION, "message in more than %d fragments"
                                    % max_fragments, limit="max-fragments")

    def add(self, payload, end_of_message):
        """One piece of the (unmasked) payload; returns the message event
        when it completes, else None."""
        if self.discarded:
            return None
        extension = self.extension
        if extension is not None:
            try:
                payload = extension.decode(payload, end_of_message,
                                           self._max_size - self._decoded)
            except ExtensionError as error:
                raise ProtocolViolation(error.code, error.reason) from None
            self._decoded += len(payload)
            if self._decoded > self._max_size:
                raise ProtocolViolation(MESSAGE_TOO_BIG, "message larger than %d bytes"
                                        % self._max_size)
        if self._decoder is not None:
            try:
                text = self._decoder.decode(payload, end_of_message)
            except UnicodeDecodeError:
                raise ProtocolViolation(INVALID_PAYLOAD, "invalid UTF-8 in text message") from None
            if text:
                self._parts.append(text)
            if end_of_message:
                return TextMessage("".join(self._parts))
        else:
            if payload:
                self._parts.append(payload)
            if end_of_message:
                return BinaryMessage(b"".join(self._parts))
        return None
