"""The server side of an established WebSocket connection (RFC 6455 sections
5-7), as a sans-I/O state machine.

Bytes from the client go in through :meth:`ServerConnection.receive_data`;
iterating :meth:`ServerConnection.events` parses them into events. A ping's
answer travels with its :class:`~presence.websocket.events.Ping` event; the
reply to a Close and the Close that fails a connection (always the last thing
a read produces) collect in :meth:`~ServerConnection.data_to_send`. The
``send_*`` methods return the bytes of the frame to write. Nothing here does
I/O or reads a clock.

States: ``OPEN`` (after the opening handshake), ``CLOSING`` (this side sent a
Close and waits for the answer), ``CLOSED`` (the closing handshake is done or
the connection was failed: the transport should now be closed).
"""

import codecs

from .close import (
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
    encode_close_payload,
    is_valid_received_code,
)
from .events import BinaryMessage, CloseReceived, Ping, Pong, ProtocolError, TextMessage
from .extensions import ExtensionError
from .frames import (
    FIN,
    MAX_CONTROL_PAYLOAD,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
    frame_header,
)
from .mask import unmask

__all__ = ["ServerConnection", "PreparedMessage", "OPEN", "CLOSING", "CLOSED", "InvalidState",
           "DEFAULT_MAX_MESSAGE_SIZE", "DEFAULT_MAX_FRAGMENTS"]

OPEN = "OPEN"
CLOSING = "CLOSING"
CLOSED = "CLOSED"

#: Largest message accepted, in bytes, after reassembly (and decompression).
#: A message is buffered whole before it is delivered, so this bounds the
#: memory one client can make the server hold. Presence messages are small
#: JSON documents; 1 MiB leaves ample room.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024

#: Frames one message may come in. Each fragment costs a header to parse and
#: a piece to keep until the message is whole (about 50 bytes of Python
#: object for a 1-byte fragment), and empty fragments never bring a message
#: closer to the size limit: without this bound, one message could hold the
#: server busy forever, or cost 50 times its size. Browsers send one frame
#: per message; libraries that fragment do so in pieces of kilobytes.
DEFAULT_MAX_FRAGMENTS = 1024

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class PreparedMessage:
    """A message encoded once for many connections (fan-out).

    Server frames are unmasked (5.1), so the uncompressed frame is the same
    bytes for every connection. A connection whose extensions encode every
    message on its own (permessage-deflate without server context takeover)
    shares its encoding with every connection that has the same parameters:
    it is computed once, by the first of them, and cached here."""

    __slots__ = ("opcode", "payload", "frame", "_encoded", "_line")

    def __init__(self, opcode, payload):
        self.opcode = opcode
        self.payload = payload
        self.frame = encode_frame(opcode, payload)
        self._encoded = None
        self._line = None

    @property
    def line(self):
        """The message as a firepresence line (its text and LF), or ``None``
        for a binary message, which firepresence does not carry."""
        if self.opcode != OP_TEXT:
            return None
        line = self._line
        if line is None:
            line = self._line = self.payload + b"\n"
        return line

    @classmethod
    def text(cls, text):
        return cls(OP_TEXT, text.encode("utf-8"))

    @classmethod
    def binary(cls, data):
        return cls(OP_BINARY, data)


class InvalidState(RuntimeError):
    """A send was attempted in a state that does not allow it (5.5.1: after
    sending a Close frame, an endpoint sends no more data frames)."""


class ServerConnection:
    """One WebSocket connection after a successful opening handshake."""

    __slots__ = (
        "state", "max_message_size", "max_fragments", "_fragments", "_wire_limit", "extensions",
        "_rsv_allowed",
        "_encoding_key", "_outgoing", "_buffer",
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
        # the same parameters, share one encoding of a PreparedMessage.
        key = tuple(extension.shared_encoding for extension in self.extensions)
        self._encoding_key = None if None in key else key
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
        later protocol error in the same read would queue."""
        data = self._buffer
        self._buffer = b""
        pos = 0
        try:
            if self._frame_remaining and data:
                remaining = self._frame_remaining
                if len(data) <= remaining:
                    pos = len(data)
                    event = self._continue_frame(data)
                else:
                    pos = remaining
                    event = self._continue_frame(data[:remaining])
                if event is not None:
                    yield event
            end = len(data)
            while end - pos >= 2 and self.state is not CLOSED:
                # 5.2 Base Framing Protocol. The first two bytes say enough
                # to reject a bad frame before the rest of it arrives.
                b0 = data[pos]
                b1 = data[pos + 1]
                opcode = b0 & 0x0F
                fin = b0 & 0x80
                rsv = b0 & 0x70
                if not b1 & 0x80:
                    yield self._fail(PROTOCOL_ERROR, "client frame is not masked")  # 5.1
                    return
                if opcode >= 8:
                    if opcode > OP_PONG:
                        yield self._fail(PROTOCOL_ERROR, "reserved opcode %d" % opcode)
                        return
                    # 5.5: control frames are not fragmented, carry at most
                    # 125 bytes, and no extension defines RSV bits for them.
                    if not fin:
                        yield self._fail(PROTOCOL_ERROR, "fragmented control frame")
                        return
                    if rsv:
                        yield self._fail(PROTOCOL_ERROR, "RSV bits set on a control frame")
                        return
                    if b1 & 0x7F > MAX_CONTROL_PAYLOAD:
                        yield self._fail(PROTOCOL_ERROR, "control frame payload over 125 bytes")
                        return
                elif opcode:
                    if opcode > OP_BINARY:
                        yield self._fail(PROTOCOL_ERROR, "reserved opcode %d" % opcode)
                        return
                    if self._message_opcode:
                        # 5.4: fragments of one message are not interleaved
                        # with another data message.
                        yield self._fail(PROTOCOL_ERROR,
                                         "new data frame before the fragmented message ended")
                        return
                    if rsv & ~self._rsv_allowed:
                        yield self._fail(PROTOCOL_ERROR,
                                         "RSV bits set without a negotiated extension"
                                         if not self._rsv_allowed else "RSV bits not negotiated")
                        return
                else:
                    if not self._message_opcode:
                        yield self._fail(PROTOCOL_ERROR,
                                         "continuation frame without a message to continue")
                        return
                    if rsv:
                        # RFC 7692 6.1: RSV1 marks only the first frame of a
                        # compressed message; without an extension, 5.2.
                        yield self._fail(PROTOCOL_ERROR, "RSV bits set on a continuation frame")
                        return
                length = b1 & 0x7F
                if length < 126:
                    start = pos + 6
                    if end < start:
                        break
                elif length == 126:
                    start = pos + 8
                    if end < start:
                        break
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    if length < 126:
                        yield self._fail(PROTOCOL_ERROR, "payload length not minimally encoded")
                        return
                else:
                    start = pos + 14
                    if end < start:
                        break
                    length = int.from_bytes(data[pos + 2:pos + 10], "big")
                    if length >> 63:
                        yield self._fail(PROTOCOL_ERROR,
                                         "most significant bit of payload length set")
                        return
                    if length < 65536:
                        yield self._fail(PROTOCOL_ERROR, "payload length not minimally encoded")
                        return
                mask = data[start - 4:start]
                if not opcode:
                    # Counted once its header is whole (a header split
                    # across reads is parsed again).
                    self._fragments += 1
                    if self._fragments > self.max_fragments > 0:
                        yield self._fail(POLICY_VIOLATION, "message in more than %d fragments"
                                         % self.max_fragments)
                        return
                if opcode >= 8:
                    if end - start < length:
                        break  # a control frame is handled whole (at most 131 bytes)
                    pos = start + length
                    yield self._control(opcode, unmask(mask, data[start:pos]) if length else b"")
                    continue
                # 10.4: the size limit is checked as frames announce their
                # length, before their payload is buffered. A compressed
                # message is held to its inflated size as it inflates; on the
                # wire it may exceed the limit by deflate's worst-case
                # expansion (incompressible data in stored blocks).
                if self._message_size + length > (
                        self._wire_limit if rsv or self._message_extension is not None
                        else self.max_message_size):
                    yield self._fail(MESSAGE_TOO_BIG, "message larger than %d bytes"
                                     % self.max_message_size)
                    return
                available = end - start
                if available >= length:
                    pos = start + length
                    payload = unmask(mask, data[start:pos]) if length else b""
                    if fin and opcode and not rsv:
                        # The common case: a whole unfragmented message.
                        if opcode == OP_TEXT:
                            try:
                                text = payload.decode("utf-8")
                            except UnicodeDecodeError:
                                yield self._fail(INVALID_PAYLOAD, "invalid UTF-8 in text message")
                                return
                            yield TextMessage(text)
                        else:
                            yield BinaryMessage(payload)
                        continue
                    if opcode:
                        self._start_message(opcode, rsv)
                    self._message_size += length
                    event = self._message_data(payload, fin)
                    if event is not None:
                        yield event
                    continue
                # The payload continues in later reads: stream it through, so
                # that invalid UTF-8 fails the connection as soon as it
                # arrives (8.1) and a large message never sits in the buffer
                # twice.
                if opcode:
                    self._start_message(opcode, rsv)
                self._message_size += length
                self._frame_remaining = length - available
                self._frame_mask = mask
                self._frame_offset = available
                self._frame_fin = fin
                pos = end
                if available:
                    event = self._message_data(unmask(mask, data[start:end]), False)
                    if event is not None:
                        yield event
                return
        finally:
            # Keep what was not parsed (an incomplete header or control
            # frame), ahead of anything received while events were out.
            if pos < len(data) and self.state is not CLOSED:
                rest = data[pos:] if pos else data
                self._buffer = rest + self._buffer if self._buffer else rest

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
        message event when it completes, a failure, or ``None``."""
        extension = self._message_extension
        if extension is not None:
            try:
                payload = extension.decode(
                    payload, end_of_message, self.max_message_size - self._message_decoded)
            except ExtensionError as error:
                return self._fail(error.code, error.reason)
            self._message_decoded += len(payload)
            if self._message_decoded > self.max_message_size:
                return self._fail(MESSAGE_TOO_BIG, "message larger than %d bytes"
                                  % self.max_message_size)
        if self._message_opcode == OP_TEXT:
            try:
                text = self._message_decoder.decode(payload, end_of_message)
            except UnicodeDecodeError:
                return self._fail(INVALID_PAYLOAD, "invalid UTF-8 in text message")
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
            return self._fail(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        else:
            code = (payload[0] << 8) | payload[1]
            if not is_valid_received_code(code):
                return self._fail(PROTOCOL_ERROR, "invalid close code %d" % code)
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                return self._fail(INVALID_PAYLOAD, "close reason is not valid UTF-8")
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

    def _fail(self, code, reason):
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
        return ProtocolError(code, reason)

    # ----------------------------------------------------------------- output

    def data_to_send(self):
        """Close frames queued by :meth:`receive_data`: the answer to the
        client's Close, or the Close that fails the connection."""
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
            raise InvalidState("cannot send a message in state %s" % self.state)
        rsv = 0
        for extension in self.extensions:
            bits, payload = extension.encode(payload)
            rsv |= bits
        return frame_header(FIN | rsv | opcode, len(payload)), payload

    def send_message(self, opcode, payload):
        """A complete data message as frame bytes (with extensions applied)."""
        header, payload = self.send_message_parts(opcode, payload)
        return header + payload

    def send_prepared(self, prepared):
        """The frame bytes of a :class:`PreparedMessage` for this connection."""
        extensions = self.extensions
        if not extensions:
            if self.state is not OPEN:
                raise InvalidState("cannot send a message in state %s" % self.state)
            return prepared.frame
        key = self._encoding_key
        if key is None:
            return self.send_message(prepared.opcode, prepared.payload)
        encoded = prepared._encoded
        if encoded is None:
            encoded = prepared._encoded = {}
        frame = encoded.get(key)
        if frame is None:
            frame = encoded[key] = self.send_message(prepared.opcode, prepared.payload)
        elif self.state is not OPEN:
            raise InvalidState("cannot send a message in state %s" % self.state)
        return frame

    def send_text(self, text):
        return self.send_message(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data):
        return self.send_message(OP_BINARY, data)

    def send_ping(self, payload=b""):
        if self.state is not OPEN:
            raise InvalidState("cannot send a ping in state %s" % self.state)
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
