"""The server side of an established WebSocket connection (RFC 6455 sections
5-7), as a sans-I/O state machine.

Bytes from the client go in through :meth:`ServerConnection.receive_data`;
iterating :meth:`ServerConnection.events` parses them into events
(presence/wire/events.py). A ping's answer travels with its ``Ping`` event;
the reply to a Close and the Close that fails a connection (always the last
thing a read produces) collect in ``data_to_send()``. The ``send_*`` methods
return the bytes of the frame to write. Nothing here does I/O or reads a
clock.

Its state (presence/wire/events.py ``ConnectionState``) is ``OPEN`` after the
opening handshake, ``CLOSING`` once this side sent a Close and waits for the
answer, ``CLOSED`` once the closing handshake is done or the connection was
failed (the transport should then be closed): presence/websocket/closing.py.
A message in pieces is reassembled by presence/websocket/message.py.
"""

from ..wire.close import INVALID_PAYLOAD, MESSAGE_TOO_BIG, PROTOCOL_ERROR
from ..wire.events import (
    CLOSED,
    OPEN,
    BinaryMessage,
    InvalidState,
    Ping,
    Pong,
    TextMessage,
)
from .closing import ClosingHandshake
from .frames import (
    FIN,
    MAX_CONTROL_PAYLOAD,
    OP_BINARY,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
    frame_header,
    heartbeat_ping_payload,
)
from .limits import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from .mask import unmask
from .message import IncomingMessage, ProtocolViolation

__all__ = ["ServerConnection"]

#: The cache key of the plain (unextended) frame of a PreparedMessage.
_PLAIN_FRAME = "websocket"


def _plain_frame(prepared):
    return encode_frame(OP_TEXT if prepared.is_text else OP_BINARY, prepared.payload)


def _extended_length(data, pos, length):
    """``(payload start, payload length)`` of a frame whose 7-bit length
    is 126 or 127 (5.2); the length is 0 while the header is incomplete
    (the start then lies past the data)."""
    if length == 126:
        start = pos + 8
        if len(data) < start:
            return start, 0
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 126:
            raise ProtocolViolation(PROTOCOL_ERROR, "payload length not minimally encoded")
        return start, length
    start = pos + 14
    if len(data) < start:
        return start, 0
    length = int.from_bytes(data[pos + 2:pos + 10], "big")
    if length >> 63:
        raise ProtocolViolation(PROTOCOL_ERROR, "most significant bit of payload length set")
    if length < 65536:
        raise ProtocolViolation(PROTOCOL_ERROR, "payload length not minimally encoded")
    return start, length


def _check_frame_start(opcode, fin, rsv, b1, message_open, rsv_allowed):
    """The rules of 5.1-5.5 that the first two bytes of a frame can
    break, for every frame but the start of a plain data message
    (``message_open``: a fragmented message is being received;
    ``rsv_allowed``: the RSV bits the negotiated extensions define)."""
    if not b1 & 0x80:
        raise ProtocolViolation(PROTOCOL_ERROR, "client frame is not masked")  # 5.1
    if opcode >= 8:
        if opcode > OP_PONG:
            raise ProtocolViolation(PROTOCOL_ERROR, "reserved opcode %d" % opcode)
        # 5.5: control frames are not fragmented, carry at most 125
        # bytes, and no extension defines RSV bits for them.
        if not fin:
            raise ProtocolViolation(PROTOCOL_ERROR, "fragmented control frame")
        if rsv:
            raise ProtocolViolation(PROTOCOL_ERROR, "RSV bits set on a control frame")
        if b1 & 0x7F > MAX_CONTROL_PAYLOAD:
            raise ProtocolViolation(PROTOCOL_ERROR, "control frame payload over 125 bytes")
    elif opcode:
        if opcode > OP_BINARY:
            raise ProtocolViolation(PROTOCOL_ERROR, "reserved opcode %d" % opcode)
        if message_open:
            # 5.4: fragments of one message are not interleaved with
            # another data message.
            raise ProtocolViolation(PROTOCOL_ERROR,
                                    "new data frame before the fragmented message ended")
        if rsv & ~rsv_allowed:
            raise ProtocolViolation(PROTOCOL_ERROR,
                                    "RSV bits set without a negotiated extension"
                                    if not rsv_allowed else "RSV bits not negotiated")
    else:
        if not message_open:
            raise ProtocolViolation(PROTOCOL_ERROR,
                                    "continuation frame without a message to continue")
        if rsv:
            # RFC 7692 6.1: RSV1 marks only the first frame of a
            # compressed message; without an extension, 5.2.
            raise ProtocolViolation(PROTOCOL_ERROR, "RSV bits set on a continuation frame")


class ServerConnection(ClosingHandshake):
    """One WebSocket connection after a successful opening handshake."""

    __slots__ = (
        "max_message_size", "max_fragments", "_wire_limit", "extensions", "_rsv_allowed",
        "prepared_key", "_buffer",
        # the data frame whose payload is still arriving
        "_frame_remaining", "_frame_mask", "_frame_offset", "_frame_fin",
        # the message in pieces being reassembled, or None
        "_message",
    )

    def __init__(self, max_message_size=DEFAULT_MAX_MESSAGE_SIZE, extensions=(),
                 max_fragments=DEFAULT_MAX_FRAGMENTS):
        super().__init__()
        self.max_message_size = max_message_size
        #: Frames a message may come in (0: any number).
        self.max_fragments = max_fragments
        # zlib's deflateBound() is n + n/4096 + n/16384 + 13 and a bit.
        self._wire_limit = max_message_size + (max_message_size >> 10) + 64
        self.extensions = tuple(extensions)
        rsv = 0
        for extension in self.extensions:
            rsv |= extension.rsv
        self._rsv_allowed = rsv
        # Connections whose extensions encode every message on its own, with
        # the same parameters, share one encoding of a PreparedMessage; with
        # no extension, that is the plain frame.
        key = tuple(extension.shared_encoding for extension in self.extensions)
        #: Where a PreparedMessage caches this connection's form of it
        #: (None: this connection encodes every message for itself).
        self.prepared_key = None if None in key else (key or _PLAIN_FRAME)
        self._buffer = b""
        self._frame_remaining = 0
        self._frame_mask = None
        self._frame_offset = 0
        self._frame_fin = False
        self._message = None

    # ------------------------------------------------------------------ input

    def receive_data(self, data):
        """Feed bytes read from the client. Nothing is parsed until
        :meth:`events` is iterated."""
        if self.state is CLOSED or not data:
            # 7.1.7: after failing (or closing) nothing more is processed.
            return
        self._buffer = self._buffer + data if self._buffer else data

    def events(self):
        """Parse what has been received, yielding events one at a time.

        Parsing is lazy: each event is yielded before the bytes after it are
        looked at, so whatever the caller sends in answer to a message goes
        out while the connection is still open, ahead of the Close that a
        later protocol error in the same read would queue. A protocol error
        is raised where it is found and fails the connection here, once.
        The common frame is parsed inline, the rarer paths in helpers
        (docs/performance.md measures why)."""
        data = self._buffer
        self._buffer = b""
        pos = 0
        try:
            if self._frame_remaining and data:
                pos = min(len(data), self._frame_remaining)
                event = self._continue_frame(data if pos == len(data) else data[:pos])
                if event is not None:
                    yield event
            end = len(data)
            while end - pos >= 2 and self.state is not CLOSED:
                # 5.2 Base Framing Protocol. The first two bytes say enough
                # to reject a bad frame before the rest of it arrives.
                b0 = data[pos]
                b1 = data[pos + 1]
                opcode = b0 & 0x0F
                rsv = b0 & 0x70
                if rsv or not b1 & 0x80 or opcode > OP_BINARY or not opcode \
                        or self._message is not None:
                    # Anything but the start of a data message without RSV
                    # bits: a control frame, a continuation, a fault.
                    _check_frame_start(opcode, b0 & 0x80, rsv, b1, self._message is not None,
                                       self._rsv_allowed)
                length = b1 & 0x7F
                start = pos + 6
                if length >= 126:
                    start, length = _extended_length(data, pos, length)
                if end < start:
                    break  # the header is not whole yet
                mask = data[start - 4:start]
                if not opcode:
                    # Counted once its header is whole (a header split
                    # across reads is parsed again, and counted then).
                    self._message.count_fragment(self.max_fragments)
                if opcode >= 8:
                    if end - start < length:
                        break  # a control frame is handled whole (at most 131 bytes)
                    pos = start + length
                    yield self._control(opcode, unmask(mask, data[start:pos]) if length else b"")
                    continue
                if rsv or length > self.max_message_size or self._message is not None:
                    self._check_size(length, rsv)  # (a plain frame's check is the test above)
                if end - start >= length:
                    pos = start + length
                    payload = unmask(mask, data[start:pos]) if length else b""
                    if b0 & 0x80 and opcode and not rsv:
                        # The common case: a whole unfragmented message.
                        if opcode == OP_TEXT:
                            try:
                                yield TextMessage(payload.decode("utf-8"))
                            except UnicodeDecodeError:
                                raise ProtocolViolation(
                                    INVALID_PAYLOAD, "invalid UTF-8 in text message") from None
                        else:
                            yield BinaryMessage(payload)
                        continue
                    event = self._message_piece(opcode, rsv, length, payload, b0 & 0x80)
                    if event is not None:
                        yield event
                    continue
                pos = end
                event = self._stream_frame(opcode, rsv, b0 & 0x80, mask, length,
                                           data[start:end])
                if event is not None:
                    yield event
                return
        except ProtocolViolation as violation:
            yield self._fail(violation.code, violation.reason, violation.limit)
        finally:
            if pos < len(data) and self.state is not CLOSED:
                self._keep(data[pos:] if pos else data)

    def _keep(self, rest):
        """What a read left unparsed (an incomplete header or control
        frame), kept ahead of anything received while events were out."""
        self._buffer = rest + self._buffer if self._buffer else rest

    def _check_size(self, length, rsv):
        # 10.4: the size limit is checked as frames announce their length,
        # before their payload is buffered. A compressed message is held to
        # its inflated size as it inflates; on the wire it may exceed the
        # limit by deflate's worst-case expansion (incompressible data in
        # stored blocks).
        message = self._message
        if message is None:
            size, compressed = length, rsv
        else:
            size, compressed = message.size + length, message.extension is not None
        if size > (self._wire_limit if compressed else self.max_message_size):
            raise ProtocolViolation(MESSAGE_TOO_BIG, "message larger than %d bytes"
                                    % self.max_message_size)

    def _message_piece(self, opcode, rsv, length, payload, end_of_message):
        """A frame's payload (or the part of it that is here) for the message
        in pieces; a data frame (``opcode``) starts one. Returns the message
        event when it completes."""
        if opcode:
            extension = None
            if rsv:
                for candidate in self.extensions:
                    if candidate.rsv & rsv:
                        extension = candidate
                        break
            self._message = IncomingMessage(opcode, extension, self.max_message_size,
                                            self.state is not OPEN)
        message = self._message
        message.size += length
        event = message.add(payload, end_of_message)
        if end_of_message:
            self._message = None  # complete, or discarded whole
        return event

    def _stream_frame(self, opcode, rsv, fin, mask, length, available):
        """A data frame whose payload continues in later reads: streamed
        through, so that invalid UTF-8 fails the connection as soon as it
        arrives (8.1) and a large message never sits in the buffer twice."""
        self._frame_remaining = length - len(available)
        self._frame_mask = mask
        self._frame_offset = len(available)
        self._frame_fin = fin
        return self._message_piece(opcode, rsv, length,
                                   unmask(mask, available) if available else b"", False)

    def _continue_frame(self, chunk):
        self._frame_remaining -= len(chunk)
        payload = unmask(self._frame_mask, chunk, self._frame_offset)
        self._frame_offset += len(chunk)
        end_of_message = not self._frame_remaining and self._frame_fin
        event = self._message.add(payload, end_of_message)
        if end_of_message:
            self._message = None  # complete, or discarded whole
        return event

    def _control(self, opcode, payload):
        if opcode == OP_PING:
            # 5.5.2: answer with a Pong carrying the same payload; once our
            # Close is sent, nothing more is sent.
            return Ping(payload, encode_frame(OP_PONG, payload) if self.state is OPEN else b"")
        if opcode == OP_PONG:
            return Pong(payload)  # 5.5.3: unsolicited pongs need no answer
        event = self._receive_close(payload)
        self._buffer = b""
        return event

    def _fail(self, code, reason, limit=None):
        event = self._failed_with(code, reason, limit)
        self._buffer = b""
        self._frame_remaining = 0
        self._message = None
        return event

    # ----------------------------------------------------------------- output

    def send_message_parts(self, opcode, payload):
        """A complete data message (extensions applied) as ``(header,
        payload)``: for a large payload, writing the two parts with one
        vectored send spares a copy of the payload."""
        if self.state is not OPEN:
            raise InvalidState("cannot send a message in state %s" % self.state.name)
        rsv = 0
        for extension in self.extensions:
            bits, payload = extension.encode(payload)
            rsv |= bits
        return frame_header(FIN | rsv | opcode, len(payload)), payload

    def send_message(self, opcode, payload):
        """A complete data message as frame bytes (with extensions applied)."""
        header, payload = self.send_message_parts(opcode, payload)
        return header + payload

    def send_text(self, text):
        return self.send_message(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data):
        return self.send_message(OP_BINARY, data)

    # The protocol-neutral sends every core offers (presence/net/interfaces.py
    # IProtocolConnection).

    def send_data(self, payload, is_text):
        """One message as frame bytes: text (``payload`` is its UTF-8) or
        binary. (Without extensions, the echo's path: framed here at once.)"""
        if self.extensions or self.state is not OPEN:
            return self.send_message(OP_TEXT if is_text else OP_BINARY, payload)
        return frame_header(FIN | (OP_TEXT if is_text else OP_BINARY), len(payload)) + payload

    def send_data_parts(self, payload, is_text):
        """One message as the parts of a vectored write."""
        return list(self.send_message_parts(OP_TEXT if is_text else OP_BINARY, payload))

    def send_prepared(self, prepared):
        """The frame bytes of a :class:`~presence.wire.prepared.PreparedMessage`
        for this connection: shared with every connection that encodes it
        the same way (the plain frame, or one compression per parameter
        set), computed once by the first and cached under ``prepared_key``
        (the session looks it up there first: on the fan-out path, one
        lookup for every connection but the first)."""
        if self.state is not OPEN:
            raise InvalidState("cannot send a message in state %s" % self.state.name)
        key = self.prepared_key
        if key is None:
            # This connection's own compression context: encoded for it alone.
            return self.send_data(prepared.payload, prepared.is_text)
        frame = prepared.forms.get(key)
        if frame is None:
            frame = prepared.forms[key] = (
                _plain_frame(prepared) if key is _PLAIN_FRAME
                else self.send_data(prepared.payload, prepared.is_text))
        return frame

    @staticmethod
    def heartbeat_ping(number):
        """Heartbeat round ``number``'s ping, the same for every connection:
        ``(frame, pong payload to expect)``."""
        payload = heartbeat_ping_payload(number)
        return encode_frame(OP_PING, payload), payload

    def send_ping(self, payload=b""):
        if self.state is not OPEN:
            raise InvalidState("cannot send a ping in state %s" % self.state.name)
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError("ping payload over 125 bytes")
        return encode_frame(OP_PING, payload)
