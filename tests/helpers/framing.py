"""Bytes clients send and servers answer, for tests that feed the server or a
protocol core: WebSocket frames and handshakes, firepresence's handshake, and
the two drivers of a core (receive, assert_failed)."""

import base64
import os
import struct

from presence.websocket.mask import unmask_pure
from presence.wire.events import CLOSED, ProtocolError

SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3

# The masking key of the examples in RFC 6455 5.7.
MASK = b"\x37\xfa\x21\x3d"


def client_frame(opcode, payload=b"", fin=True, rsv=0, mask=MASK):
    """One masked client frame (5.2, 5.3), minimal length encoding."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    return header + mask + unmask_pure(mask, payload)


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode("utf-8")


def server_close_frame(code, reason=b""):
    """The Close frame the server sends (unmasked, 5.5.1)."""
    return struct.pack("!BBH", 0x88, 2 + len(reason), code) + reason


def server_frames(data):
    """``(opcode, payload)`` of each (unmasked, unfragmented) server frame in
    ``data``."""
    frames = []
    while data:
        length, start = data[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(data[2:10], "big"), 10
        frames.append((data[0] & 0x0F, data[start:start + length]))
        data = data[start + length:]
    return frames


def upgrade_request(path="/", key=SAMPLE_KEY, extra=(), host="example.com"):
    """A valid opening handshake (4.1), with ``extra`` header lines."""
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: %s" % host,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: 13",
    ]
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def random_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


#: A firepresence handshake with a ticket, and the server's acceptance.
FIREPRESENCE = (b"OPTIONS / HTTP/1.1\r\nHost: presence.example\r\nUpgrade: firepresence\r\n"
                b"X-Auth-Token: t0k3n\r\n\r\n")
FIREPRESENCE_ACCEPTED = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: firepresence/1.0\r\n"
                         b"Connection: Upgrade\r\n\r\n")


def receive(conn, data):
    """Feed ``data`` to a protocol core: the events it yields."""
    conn.receive_data(data)
    return list(conn.events())


def assert_failed(conn, events, code):
    """The last event fails the connection with ``code``; the Close frame
    carrying that code and reason is queued and the connection is CLOSED."""
    assert events, "no event"
    error = events[-1]
    assert isinstance(error, ProtocolError), events
    assert error.code == code, error
    assert conn.data_to_send() == server_close_frame(code, error.reason.encode("utf-8"))
    assert conn.state is CLOSED
