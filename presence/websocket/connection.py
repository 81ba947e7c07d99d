"""The server side of an established WebSocket connection (RFC 6455 sections
5-7), as a sans-I/O state machine.

Bytes from the client go in through :meth:`ServerConnection.receive_data`;
iterating :meth:`ServerConnection.events` parses them into events
(presence/wire/events.py). A ping's answer travels with its ``Ping`` event;
the reply to a Close and the Close that fails a connection (always the last
thing a read produces) collect in :meth:`~ServerConnection.data_to_send`.
The ``send_*`` methods return the bytes of the frame to write. Nothing here
does I/O or reads a clock.

Its state (presence/wire/events.py ``ConnectionState``) is ``OPEN`` after the
opening handshake, ``CLOSING`` once this side sent a Close and waits for the
answer, ``CLOSED`` once the closing handshake is done or the connection was
failed (the transport should then be closed).
"""

import codecs

from ..wire.close import (
    ABNORMAL_CLOSURE,
    CLIENT,
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    NO_STATUS_RECEIVED,
    NORMAL_CLOSURE,
    POLICY_VIOLATION,
    PROTOCOL_ERROR,
    SERVER,
    CloseRecord,
    is_valid_received_code,
)
from ..wire.events import (
    CLOSED,
    CLOSING,
    OPEN,
    BinaryMessage,
    CloseReceived,
    InvalidState,
    Ping,
    Pong,
    ProtocolError,
    TextMessage,
)
from .extensions import ExtensionError
from .frames import (
    FIN,
    MAX_CONTROL_PAYLOAD,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_close_payload,
    encode_frame,
    frame_header,
    heartbeat_ping_payload,
)
from .limits import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from .mask import unmask

__all__ = ["ServerConnection"]

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")

#: The cache key of the plain (unextended) frame of a PreparedMessage.
_PLAIN_FRAME = "websocket"


class _Violation(Exception):
    """The client broke the protocol: raised where the parser finds it, and
    turned into the failing of the connection (7.1.7) in one place,
    :meth:`ServerConnection.events`."""

    def __init__(self, code, reason, limit=None):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.limit = limit


def _plain_frame(prepared):
    return encode_frame(OP_TEXT if prepared.is_text else OP_BINARY, prepared.payload)


class ServerConnection:
    """One WebSocket connection after a successful opening handshake."""

    __slots__ = (
        "state", "max_message_size", "max_fragments", "_fragments", "_wire_limit", "extensions",
        "_rsv_allowed", "_encoding_key", "_outgoing", "_buffer",
        # the data frame whose payload is still arriving
        "_frame_remaining", "_frame_mask", "_frame_offset", "_frame_fin",
        # the message being reassembled (fragmented, or split across reads)
        "_message_opcode", "_message_parts", "_message_size", "_message_decoded",
        "_message_decoder", "_message_extension",
        # the closing handshake
        "close_code", "close_reason", "close_initiator", "_close_sent", "_close_received",
        "_failed",
    )

    def __init__(self, max_message_size=DEFAULT_MAX_MESSAGE_SIZE, extensions=(),
                 max_fragments=DEFAULT_MAX_FRAGMENTS):
        self.state = OPEN
        self.max_message_size = max_message_size
        #: Frames a message may come in (0: any number).
        self.max_fragments = max_fragments
        # Frames of the fragmented message in progress.
        self._fragments = 0
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
        self._encoding_key = None if None in key else (key or _PLAIN_FRAME)
        self._outgoing = []
        self._buffer = b""
        self._frame_remaining = 0
        self._frame_mask = None
        self._frame_offset = 0
        self._frame_fin = False
        self._message_opcode = 0
        self._message_parts = None
        self._message_size = 0
        self._message_decoded = 0
        self._message_decoder = None
        self._message_extension = None
        self.close_code = None
        self.close_reason = ""
        self.close_initiator = None
        self._close_sent = False
        self._close_received = False
        self._failed = False

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
        is raised where it is found and fails the connection here, once."""
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
                        or self._message_opcode:
                    # Anything but the start of a data message without RSV
                    # bits: a control frame, a continuation, a fault.
                    self._check_frame_start(opcode, b0 & 0x80, rsv, b1)
                length = b1 & 0x7F
                start = pos + 6
                if length >= 126:
                    start, length = self._extended_length(data, pos, length)
                if end < start:
                    break  # the header is not whole yet
                mask = data[start - 4:start]
                if not opcode:
                    self._count_fragment()
                if opcode >= 8:
                    if end - start < length:
                        break  # a control frame is handled whole (at most 131 bytes)
                    pos = start + length
                    yield self._control(opcode, unmask(mask, data[start:pos]) if length else b"")
                    continue
                self._check_size(length, rsv)
                if end - start >= length:
                    pos = start + length
                    payload = unmask(mask, data[start:pos]) if length else b""
                    if b0 & 0x80 and opcode and not rsv:
                        # The common case: a whole unfragmented message.
                        yield self._whole_message(opcode, payload)
                        continue
                    if opcode:
                        self._start_message(opcode, rsv)
                    self._message_size += length
                    event = self._message_data(payload, b0 & 0x80)
                    if event is not None:
                        yield event
                    continue
                # The payload continues in later reads: stream it through, so
                # that invalid UTF-8 fails the connection as soon as it
                # arrives (8.1) and a large message never sits in the buffer
                # twice.
                pos = end
                event = self._start_streaming(opcode, b0 & 0x80, rsv, mask, length,
                                              data[start:end])
                if event is not None:
                    yield event
                return
        except _Violation as violation:
            yield self._fail(violation.code, violation.reason, violation.limit)
        finally:
            # Keep what was not parsed (an incomplete header or control
            # frame), ahead of anything received while events were out.
            if pos < len(data) and self.state is not CLOSED:
                rest = data[pos:] if pos else data
                self._buffer = rest + self._buffer if self._buffer else rest

    def _check_frame_start(self, opcode, fin, rsv, b1):
        """The rules of 5.1-5.5 that the first two bytes of a frame can
        break, for every frame but the start of a plain data message."""
        if not b1 & 0x80:
            raise _Violation(PROTOCOL_ERROR, "client frame is not masked")  # 5.1
        if opcode >= 8:
            if opcode > OP_PONG:
                raise _Violation(PROTOCOL_ERROR, "reserved opcode %d" % opcode)
            # 5.5: control frames are not fragmented, carry at most 125
            # bytes, and no extension defines RSV bits for them.
            if not fin:
                raise _Violation(PROTOCOL_ERROR, "fragmented control frame")
            if rsv:
                raise _Violation(PROTOCOL_ERROR, "RSV bits set on a control frame")
            if b1 & 0x7F > MAX_CONTROL_PAYLOAD:
                raise _Violation(PROTOCOL_ERROR, "control frame payload over 125 bytes")
        elif opcode:
            if opcode > OP_BINARY:
                raise _Violation(PROTOCOL_ERROR, "reserved opcode %d" % opcode)
            if self._message_opcode:
                # 5.4: fragments of one message are not interleaved with
                # another data message.
                raise _Violation(PROTOCOL_ERROR,
                                 "new data frame before the fragmented message ended")
            if rsv & ~self._rsv_allowed:
                raise _Violation(PROTOCOL_ERROR, "RSV bits set without a negotiated extension"
                                 if not self._rsv_allowed else "RSV bits not negotiated")
        else:
            if not self._message_opcode:
                raise _Violation(PROTOCOL_ERROR,
                                 "continuation frame without a message to continue")
            if rsv:
                # RFC 7692 6.1: RSV1 marks only the first frame of a
                # compressed message; without an extension, 5.2.
                raise _Violation(PROTOCOL_ERROR, "RSV bits set on a continuation frame")

    @staticmethod
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
                raise _Violation(PROTOCOL_ERROR, "payload length not minimally encoded")
            return start, length
        start = pos + 14
        if len(data) < start:
            return start, 0
        length = int.from_bytes(data[pos + 2:pos + 10], "big")
        if length >> 63:
            raise _Violation(PROTOCOL_ERROR, "most significant bit of payload length set")
        if length < 65536:
            raise _Violation(PROTOCOL_ERROR, "payload length not minimally encoded")
        return start, length

    def _count_fragment(self):
        # Counted once its header is whole (a header split across reads is
        # parsed again, and counted then).
        self._fragments += 1
        if self._fragments > self.max_fragments > 0:
            raise _Violation(POLICY_VIOLATION, "message in more than %d fragments"
                             % self.max_fragments, limit="max-fragments")

    def _check_size(self, length, rsv):
        # 10.4: the size limit is checked as frames announce their length,
        # before their payload is buffered. A compressed message is held to
        # its inflated size as it inflates; on the wire it may exceed the
        # limit by deflate's worst-case expansion (incompressible data in
        # stored blocks).
        if self._message_size + length > (
                self._wire_limit if rsv or self._message_extension is not None
                else self.max_message_size):
            raise _Violation(MESSAGE_TOO_BIG, "message larger than %d bytes"
                             % self.max_message_size)

    @staticmethod
    def _whole_message(opcode, payload):
        if opcode == OP_TEXT:
            try:
                return TextMessage(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise _Violation(INVALID_PAYLOAD, "invalid UTF-8 in text message") from None
        return BinaryMessage(payload)

    def _start_streaming(self, opcode, fin, rsv, mask, length, available):
        """A data frame whose payload continues in later reads: the part that
        is here now is decoded at once."""
        if opcode:
            self._start_message(opcode, rsv)
        self._message_size += length
        self._frame_remaining = length - len(available)
        self._frame_mask = mask
        self._frame_offset = len(available)
        self._frame_fin = fin
        if available:
            return self._message_data(unmask(mask, available), False)
        return None

    def _continue_frame(self, chunk):
        self._frame_remaining -= len(chunk)
        payload = unmask(self._frame_mask, chunk, self._frame_offset)
        self._frame_offset += len(chunk)
        return self._message_data(payload, not self._frame_remaining and self._frame_fin)

    def _start_message(self, opcode, rsv):
        self._message_opcode = opcode
        self._fragments = 1
        self._message_parts = []
        self._message_size = 0
        self._message_decoded = 0
        self._message_decoder = _Utf8Decoder() if opcode == OP_TEXT else None
        self._message_extension = None
        if rsv:
            for extension in self.extensions:
                if extension.rsv & rsv:
                    self._message_extension = extension
                    break

    def _message_data(self, payload, end_of_message):
        """One piece of the current message's (unmasked) payload; returns the
        message event when it completes, or ``None``."""
        extension = self._message_extension
        if extension is not None:
            try:
                payload = extension.decode(
                    payload, end_of_message, self.max_message_size - self._message_decoded)
            except ExtensionError as error:
                raise _Violation(error.code, error.reason) from None
            self._message_decoded += len(payload)
            if self._message_decoded > self.max_message_size:
                raise _Violation(MESSAGE_TOO_BIG, "message larger than %d bytes"
                                 % self.max_message_size)
        if self._message_opcode == OP_TEXT:
            try:
                text = self._message_decoder.decode(payload, end_of_message)
            except UnicodeDecodeError:
                raise _Violation(INVALID_PAYLOAD, "invalid UTF-8 in text message") from None
            if text:
                self._message_parts.append(text)
            if end_of_message:
                event = TextMessage("".join(self._message_parts))
                self._end_message()
                return event
        else:
            if payload:
                self._message_parts.append(payload)
            if end_of_message:
                event = BinaryMessage(b"".join(self._message_parts))
                self._end_message()
                return event
        return None

    def _end_message(self):
        self._message_opcode = 0
        self._message_parts = None
        self._message_size = 0
        self._message_decoded = 0
        self._message_decoder = None
        self._message_extension = None

    def _control(self, opcode, payload):
        if opcode == OP_PING:
            # 5.5.2: answer with a Pong carrying the same payload; once our
            # Close is sent, nothing more is sent.
            return Ping(payload, encode_frame(OP_PONG, payload) if self.state is OPEN else b"")
        if opcode == OP_PONG:
            return Pong(payload)  # 5.5.3: unsolicited pongs need no answer
        return self._receive_close(payload)

    def _receive_close(self, payload):
        # 5.5.1 Close; 7.4 status codes.
        if not payload:
            code = NO_STATUS_RECEIVED
            reason = ""
        elif len(payload) == 1:
            raise _Violation(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        else:
            code = (payload[0] << 8) | payload[1]
            if not is_valid_received_code(code):
                raise _Violation(PROTOCOL_ERROR, "invalid close code %d" % code)
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise _Violation(INVALID_PAYLOAD, "close reason is not valid UTF-8") from None
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
        self._buffer = b""
        return CloseReceived(code, reason)

    def _fail(self, code, reason, limit=None):
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
        self._buffer = b""
        self._frame_remaining = 0
        self._end_message()
        return ProtocolError(code, reason, limit)

    # ----------------------------------------------------------------- output

    def data_to_send(self):
        """Close frames queued by :meth:`events`: the answer to the client's
        Close, or the Close that fails the connection."""
        outgoing = self._outgoing
        if not outgoing:
            return b""
        data = b"".join(outgoing)
        outgoing.clear()
        return data

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
        binary."""
        return self.send_message(OP_TEXT if is_text else OP_BINARY, payload)

    def send_data_parts(self, payload, is_text):
        """One message as the parts of a vectored write."""
        return list(self.send_message_parts(OP_TEXT if is_text else OP_BINARY, payload))

    def send_prepared(self, prepared):
        """The frame bytes of a :class:`~presence.wire.prepared.PreparedMessage`
        for this connection: shared with every connection that encodes it
        the same way (the plain frame, or one compression per parameter
        set), computed once by the first. On the fan-out path: one lookup
        for every connection but the first."""
        if self.state is not OPEN:
            raise InvalidState("cannot send a message in state %s" % self.state.name)
        key = self._encoding_key
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

    def send_close(self, code=NORMAL_CLOSURE, reason=""):
        """Start the closing handshake (7.1.2); returns the Close frame, or
        ``b""`` when a Close was already sent."""
        if self.state is not OPEN:
            return b""
        self.state = CLOSING
        self.close_code = code
        self.close_reason = reason
        self.close_initiator = SERVER
        self._close_sent = True
        return encode_frame(OP_CLOSE, encode_close_payload(code, reason))

    # ------------------------------------------------------------------ end

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
