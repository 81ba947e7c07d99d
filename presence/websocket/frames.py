"""Frame constants and server-side frame encoding (RFC 6455 section 5.2).

Server frames are never masked (5.1), so one encoded frame is a plain byte
string that can be written unchanged to any number of connections: fan-out
encodes once.
"""

import struct

from ..wire.close import NO_STATUS_RECEIVED, cut_reason

__all__ = [
    "OP_CONTINUATION", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "FIN", "RSV1", "RSV2", "RSV3", "MAX_CONTROL_PAYLOAD",
    "frame_header", "encode_frame", "encode_text", "encode_binary", "encode_close_payload",
    "heartbeat_ping_payload",
]

# 5.2 Base Framing Protocol: opcodes
OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10

# 5.5: all control frames MUST have a payload length of 125 bytes or less.
MAX_CONTROL_PAYLOAD = 125

_pack_code = struct.Struct("!H").pack
_pack_round = struct.Struct("!4sQ").pack
_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack


def frame_header(first_byte, length):
    """The header of an unmasked frame: ``first_byte`` holds FIN, RSV and the
    opcode; the payload length uses the shortest encoding (5.2)."""
    if length < 126:
        return bytes((first_byte, length))
    if length < 65536:
        return _pack_16(first_byte, 126, length)
    return _pack_64(first_byte, 127, length)


def encode_frame(opcode, payload, fin=True, rsv=0):
    """One complete unmasked frame."""
    return frame_header((FIN if fin else 0) | rsv | opcode, len(payload)) + payload


def encode_text(text):
    """A single-frame text message (uncompressed), ready for any connection."""
    return encode_frame(OP_TEXT, text.encode("utf-8"))


def encode_binary(data):
    """A single-frame binary message (uncompressed), ready for any connection."""
    return encode_frame(OP_BINARY, data)


def encode_close_payload(code, reason=""):
    """The payload of a Close frame (5.5.1): the code in network byte order,
    then the reason as UTF-8, cut on a character boundary to fit 123 bytes."""
    if code is None or code == NO_STATUS_RECEIVED:
        return b""
    return _pack_code(code) + cut_reason(reason)


def heartbeat_ping_payload(round_number):
    """The payload of a heartbeat round's ping, 12 bytes: a marker and the
    round number (5.5.2 allows any payload of up to 125 bytes; the peer must
    echo it in its pong, which is how the answer is matched to the round)."""
    return _pack_round(b"hb01", round_number)
