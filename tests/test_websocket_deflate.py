"""permessage-deflate (RFC 7692), rule by rule: the offers a client makes and
the answer the server writes (section 7.1), then compressed messages in both
directions (sections 6 and 7.2).

Client payloads are built the way 7.2.1 says a client builds them: raw
DEFLATE, flushed with an empty stored block, the final ``00 00 ff ff``
removed. Server payloads are checked the way 7.2.2 says a client reads them:
the tail appended again, then inflated.
"""

import json
import random
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presence.websocket.connection import ServerConnection
from presence.websocket.deflate import DeflateExtension, PerMessageDeflate
from presence.websocket.extensions import format_extension, parse_extension_offers
from presence.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    RSV2,
    RSV3,
    encode_frame,
)
from presence.websocket.handshake import Accepted, HandshakeConfig, server_handshake
from presence.wire.events import OPEN, BinaryMessage, CloseReceived, InvalidState, Ping, TextMessage
from presence.wire.httphead import HeadReader
from presence.wire.prepared import PreparedMessage

from .helpers.framing import assert_failed, client_frame, receive, upgrade_request

MiB = 1024 * 1024

# 7.2.1: the empty stored block a sync flush ends with, removed on the wire.
TAIL = b"\x00\x00\xff\xff"

# Something JSON-shaped and long enough to be compressed (min_size is 128).
DOCUMENT = json.dumps({"type": "presence", "channel": "room:lobby",
                       "members": [{"account": "user-%d" % i, "online": True}
                                   for i in range(20)]})

# "Hello" as the examples of RFC 7692 7.2.3 compress it.
RFC_HELLO = bytes.fromhex("f248cdc9c90700")             # 7.2.3.1
RFC_HELLO_AGAIN = bytes.fromhex("f200110000")           # 7.2.3.2, context kept
RFC_HELLO_STORED = bytes.fromhex("000500faff48656c6c6f00")  # 7.2.3.3
RFC_HELLO_BFINAL = bytes.fromhex("f348cdc9c9070000")    # 7.2.3.4
RFC_HELLO_TWO_BLOCKS = bytes.fromhex("f24805000000ffffcac9c90700")  # 7.2.3.5


# ------------------------------------------------------------------ helpers


def deflate(data, compressor=None, wbits=15, level=6):
    """What a client sends for ``data`` (7.2.1): raw DEFLATE, sync-flushed,
    the tail removed. Pass ``compressor`` to keep its context."""
    if compressor is None:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload, decompressor=None, wbits=15):
    """What a client reads from a compressed payload (7.2.2). Pass
    ``decompressor`` to keep its context."""
    if decompressor is None:
        decompressor = zlib.decompressobj(-wbits)
    return decompressor.decompress(payload + TAIL)


def inflate_within(payload, wbits, decompressor=None):
    """Inflate like a client whose window is ``wbits`` bits and no more:
    output is taken 64 bytes at a time, so that every back-reference must
    reach into the window (within one call, zlib also resolves references
    into that call's output, whatever its window)."""
    if decompressor is None:
        decompressor = zlib.decompressobj(-wbits)
    data = payload + TAIL
    out = []
    while True:
        chunk = decompressor.decompress(data, 64)
        out.append(chunk)
        data = decompressor.unconsumed_tail
        if not data and len(chunk) < 64:
            return b"".join(out)


def negotiated(offer=(), **config):
    """The extension agreed when a server configured with ``config``
    accepts an offer with parameters ``offer``."""
    extension = PerMessageDeflate(**config).accept(list(offer))
    assert isinstance(extension, DeflateExtension)
    return extension


def deflate_connection(offer=(), max_message_size=MiB, **config):
    return ServerConnection(max_message_size=max_message_size,
                            extensions=[negotiated(offer, **config)])


def compressed(opcode, payload, fin=True):
    """A client data frame with RSV1 set: the first frame of a compressed
    message (6.1)."""
    return client_frame(opcode, payload, fin=fin, rsv=RSV1)


def server_frame(frame):
    """``(first byte, payload)`` of exactly one unmasked server frame."""
    first, length = frame[0], frame[1]
    assert not length & 0x80, "server frames are not masked"
    if length == 126:
        length, start = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, start = int.from_bytes(frame[2:10], "big"), 10
    else:
        start = 2
    assert len(frame) == start + length
    return first, frame[start:]


def handshake(*values, deflate_config=None):
    """The result of an upgrade request whose ``Sec-WebSocket-Extensions``
    lines carry ``values``, to a server with permessage-deflate."""
    head, rest = HeadReader().feed(upgrade_request(
        extra=["Sec-WebSocket-Extensions: " + value for value in values]))
    assert rest == b""
    factory = deflate_config or PerMessageDeflate()
    result = server_handshake(head, HandshakeConfig(extensions=[factory]))
    assert isinstance(result, Accepted), result
    return result


def answer(*values, **config):
    """The ``Sec-WebSocket-Extensions`` value of the server's 101 answer to
    an offer of ``values``, or ``None`` when the answer has none (the
    connection is accepted either way)."""
    result = handshake(*values, deflate_config=PerMessageDeflate(**config))
    head = result.response.split(b"\r\n\r\n")[0].decode("latin-1")
    found = [line.split(": ", 1)[1] for line in head.split("\r\n")[1:]
             if line.lower().startswith("sec-websocket-extensions:")]
    assert len(found) <= 1
    if not found:
        assert result.extensions == []
        return None
    assert [type(ext) for ext in result.extensions] == [DeflateExtension]
    return found[0]


def accept(offer, **config):
    """``PerMessageDeflate(**config).accept`` of the one offer in header
    value ``offer``."""
    [(name, params)] = parse_extension_offers([offer])
    assert name == "permessage-deflate"
    return PerMessageDeflate(**config).accept(params)


PLAIN_ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


# --------------------------------------------------------- negotiation 7.1


def test_a_plain_offer_is_answered_with_no_context_takeover_in_both_directions():
    result = handshake("permessage-deflate")

    assert result.response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
        b"client_no_context_takeover\r\n"
        b"\r\n")
    [extension] = result.extensions
    assert extension.compress_bits == 15
    assert extension.inflate_bits == 15
    assert not extension.keep_context
    assert not extension.client_keeps_context


def test_accept_answers_a_plain_offer_with_both_no_context_takeover_parameters():
    extension = PerMessageDeflate().accept([])

    assert extension.name == "permessage-deflate"
    assert extension.rsv == RSV1
    assert extension.response_params() == [("server_no_context_takeover", None),
                                           ("client_no_context_takeover", None)]


def test_extension_and_parameter_names_are_case_insensitive():
    assert answer("PerMessage-Deflate; Server_Max_Window_Bits=10") \
        == PLAIN_ANSWER + "; server_max_window_bits=10"


@pytest.mark.parametrize("server_context_takeover", [False, True])
def test_an_offered_server_no_context_takeover_is_always_answered(server_context_takeover):
    # 7.1.1.1: a server that accepts it must include it in the answer.
    header = answer("permessage-deflate; server_no_context_takeover",
                    server_context_takeover=server_context_takeover)

    assert header == PLAIN_ANSWER
    assert not accept("permessage-deflate; server_no_context_takeover",
                      server_context_takeover=server_context_takeover).keep_context


@pytest.mark.parametrize("client_context_takeover", [False, True])
def test_an_offered_client_no_context_takeover_is_answered(client_context_takeover):
    header = answer("permessage-deflate; client_no_context_takeover",
                    client_context_takeover=client_context_takeover)

    assert header == PLAIN_ANSWER
    assert not accept("permessage-deflate; client_no_context_takeover",
                      client_context_takeover=client_context_takeover).client_keeps_context


@pytest.mark.parametrize("bits", range(9, 16))
def test_server_max_window_bits_9_to_15_is_accepted_and_answered_with_its_value(bits):
    offer = "permessage-deflate; server_max_window_bits=%d" % bits

    assert answer(offer) == PLAIN_ANSWER + "; server_max_window_bits=%d" % bits
    assert accept(offer).compress_bits == bits


@pytest.mark.parametrize("configured, offered, answered", [
    (12, 15, 12),
    (12, 13, 12),
    (12, 12, 12),
    (12, 10, 10),
    (9, 15, 9),
])
def test_server_max_window_bits_is_answered_with_the_smaller_of_offer_and_configuration(
        configured, offered, answered):
    offer = "permessage-deflate; server_max_window_bits=%d" % offered

    assert answer(offer, server_max_window_bits=configured) \
        == PLAIN_ANSWER + "; server_max_window_bits=%d" % answered
    assert accept(offer, server_max_window_bits=configured).compress_bits == answered


def test_without_server_max_window_bits_in_the_offer_the_configured_window_is_used_silently():
    # 7.1.2.1: any inflater reads a stream compressed with a smaller window.
    assert answer("permessage-deflate", server_max_window_bits=10) == PLAIN_ANSWER
    assert accept("permessage-deflate", server_max_window_bits=10).compress_bits == 10


def test_server_max_window_bits_8_is_declined_because_zlib_cannot_deflate_with_8_bits():
    assert accept("permessage-deflate; server_max_window_bits=8") is None
    assert answer("permessage-deflate; server_max_window_bits=8") is None


def test_client_max_window_bits_without_a_value_is_not_answered_when_the_client_window_is_15():
    offer = "permessage-deflate; client_max_window_bits"

    assert answer(offer) == PLAIN_ANSWER
    assert accept(offer).inflate_bits == 15


@pytest.mark.parametrize("configured", range(9, 15))
def test_client_max_window_bits_without_a_value_is_answered_with_a_configured_smaller_window(
        configured):
    offer = "permessage-deflate; client_max_window_bits"

    assert answer(offer, client_max_window_bits=configured) \
        == PLAIN_ANSWER + "; client_max_window_bits=%d" % configured
    assert accept(offer, client_max_window_bits=configured).inflate_bits == configured


@pytest.mark.parametrize("configured, offered, answered", [
    (15, 15, 15),
    (15, 10, 10),
    (15, 8, 8),
    (12, 14, 12),
    (12, 9, 9),
    (9, 15, 9),
])
def test_client_max_window_bits_with_a_value_is_answered_with_the_smaller_of_both(
        configured, offered, answered):
    offer = "permessage-deflate; client_max_window_bits=%d" % offered

    assert answer(offer, client_max_window_bits=configured) \
        == PLAIN_ANSWER + "; client_max_window_bits=%d" % answered
    assert accept(offer, client_max_window_bits=configured).inflate_bits == answered


@pytest.mark.parametrize("offer", [
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover; server_max_window_bits=12",
])
def test_client_max_window_bits_is_never_answered_when_the_offer_lacks_it(offer):
    # 7.1.2.2: the client may then use up to 15 bits, so the inflater must too.
    header = answer(offer, client_max_window_bits=9)

    assert "client_max_window_bits" not in header
    assert accept(offer, client_max_window_bits=9).inflate_bits == 15


def test_with_server_context_takeover_configured_the_answer_omits_server_no_context_takeover():
    assert answer("permessage-deflate", server_context_takeover=True) \
        == "permessage-deflate; client_no_context_takeover"
    assert accept("permessage-deflate", server_context_takeover=True).keep_context


def test_with_client_context_takeover_configured_the_answer_omits_client_no_context_takeover():
    assert answer("permessage-deflate", client_context_takeover=True) \
        == "permessage-deflate; server_no_context_takeover"
    assert accept("permessage-deflate", client_context_takeover=True).client_keeps_context


def test_with_context_takeover_in_both_directions_a_plain_offer_gets_a_plain_answer():
    # RFC 7692 7.1.3: the simplest answer is the same as the simplest offer.
    assert answer("permessage-deflate", server_context_takeover=True,
                  client_context_takeover=True) == "permessage-deflate"


def test_the_rfc_fallback_offer_is_accepted_with_its_first_option():
    # RFC 7692 7.1.3: a small server window preferred, no limit as fallback.
    header = answer("permessage-deflate; client_max_window_bits; server_max_window_bits=10, "
                    "permessage-deflate; client_max_window_bits")

    assert header == PLAIN_ANSWER + "; server_max_window_bits=10"


def test_a_quoted_window_bits_value_is_read_as_its_token():
    assert answer('permessage-deflate; server_max_window_bits="10"') \
        == PLAIN_ANSWER + "; server_max_window_bits=10"


INVALID_OFFERS = [
    # 7.1: an unknown parameter, or a parameter repeated, invalidates the offer.
    "permessage-deflate; foo",
    "permessage-deflate; foo=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    "permessage-deflate; client_max_window_bits; client_max_window_bits",
    "permessage-deflate; client_max_window_bits=10; client_max_window_bits",
    # 7.1.2.1: server_max_window_bits needs a value, a decimal 8-15 without
    # leading zeros; client_max_window_bits the same when it has one.
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=010",
    "permessage-deflate; server_max_window_bits=+9",
    "permessage-deflate; server_max_window_bits=-9",
    "permessage-deflate; server_max_window_bits=abc",
    "permessage-deflate; server_max_window_bits=0",
    'permessage-deflate; server_max_window_bits="010"',
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; client_max_window_bits=16",
    "permessage-deflate; client_max_window_bits=010",
    "permessage-deflate; client_max_window_bits=+9",
    "permessage-deflate; client_max_window_bits=abc",
    # 7.1.1: the no_context_takeover parameters have no value.
    "permessage-deflate; server_no_context_takeover=1",
    'permessage-deflate; server_no_context_takeover="x"',
    "permessage-deflate; client_no_context_takeover=true",
]


@pytest.mark.parametrize("offer", INVALID_OFFERS)
def test_accept_declines_an_invalid_offer(offer):
    assert accept(offer) is None


@pytest.mark.parametrize("offer", INVALID_OFFERS)
def test_an_invalid_offer_is_declined_and_the_connection_accepted_without_extensions(offer):
    result = handshake(offer)

    assert result.extensions == []
    assert b"sec-websocket-extensions" not in result.response.lower()


@pytest.mark.parametrize("values, answered", [
    (["permessage-deflate; server_max_window_bits=8, permessage-deflate; "
      + "server_max_window_bits=10"],
     PLAIN_ANSWER + "; server_max_window_bits=10"),
    (["permessage-deflate; foo, permessage-deflate"], PLAIN_ANSWER),
    (["permessage-deflate; server_max_window_bits=10, permessage-deflate"],
     PLAIN_ANSWER + "; server_max_window_bits=10"),
    (["permessage-deflate; client_max_window_bits=9, permessage-deflate"],
     PLAIN_ANSWER + "; client_max_window_bits=9"),
    (["permessage-deflate; server_max_window_bits",
      "permessage-deflate; client_max_window_bits=11"],
     PLAIN_ANSWER + "; client_max_window_bits=11"),
])
def test_of_several_offers_the_first_acceptable_in_the_clients_order_is_answered(
        values, answered):
    assert answer(*values) == answered


def test_only_one_offer_is_accepted():
    result = handshake("permessage-deflate; server_max_window_bits=10, permessage-deflate")

    assert [ext.compress_bits for ext in result.extensions] == [10]


def test_the_answer_is_the_agreed_parameters_formatted():
    extension = accept("permessage-deflate; client_max_window_bits=10; server_max_window_bits=12")

    assert format_extension(extension.name, extension.response_params()) \
        == PLAIN_ANSWER + "; server_max_window_bits=12; client_max_window_bits=10"


@pytest.mark.parametrize("config", [
    {"server_max_window_bits": 8},
    {"server_max_window_bits": 16},
    {"server_max_window_bits": 0},
    {"client_max_window_bits": 7},
    {"client_max_window_bits": 16},
    {"compression_level": -1},
    {"compression_level": 10},
    {"memory_level": 0},
    {"memory_level": 10},
    # zlib-based clients (browsers among them) cannot compress with 8 bits.
    {"client_max_window_bits": 8},
])
def test_the_configuration_refuses_out_of_range_settings(config):
    with pytest.raises(ValueError):
        PerMessageDeflate(**config)


@pytest.mark.parametrize("config", [
    {"server_max_window_bits": 9},
    {"client_max_window_bits": 9},
    {"compression_level": 0},
    {"compression_level": 9},
    {"memory_level": 1},
    {"memory_level": 9},
])
def test_the_configuration_accepts_the_ends_of_each_range_and_works_with_them(config):
    (name, value), = config.items()
    assert getattr(PerMessageDeflate(**config), name) == value
    # Negotiated with a client that lets the server choose its window...
    extension = accept("permessage-deflate; client_max_window_bits", **config)
    assert extension.inflate_bits == config.get("client_max_window_bits", 15)
    # ...what the server sends is read by a client with the server's window.
    rsv, payload = extension.encode(DOCUMENT.encode())
    assert rsv == RSV1
    assert inflate_within(payload, config.get("server_max_window_bits", 15)) \
        == DOCUMENT.encode()


# ---------------------------------------------------- receiving: 6.1, 7.2.2


def test_the_rfc_compressed_hello_is_a_text_message():
    # RFC 7692 7.2.3.1, masked as a client sends it.
    conn = deflate_connection()

    assert receive(conn, compressed(OP_TEXT, RFC_HELLO)) == [TextMessage("Hello")]
    assert conn.state == OPEN


def test_the_rfc_fragmented_compressed_hello_is_a_text_message():
    # RFC 7692 7.2.3.1: RSV1 on the first frame only.
    conn = deflate_connection()

    events = receive(conn, compressed(OP_TEXT, RFC_HELLO[:3], fin=False)
                     + client_frame(OP_CONTINUATION, RFC_HELLO[3:]))

    assert events == [TextMessage("Hello")]


@pytest.mark.parametrize("payload", [RFC_HELLO_STORED, RFC_HELLO_BFINAL, RFC_HELLO_TWO_BLOCKS],
                         ids=["stored block", "BFINAL set", "two blocks"])
def test_the_other_rfc_encodings_of_hello_are_text_messages(payload):
    # RFC 7692 7.2.3.3-7.2.3.5.
    conn = deflate_connection()

    assert receive(conn, compressed(OP_TEXT, payload)) == [TextMessage("Hello")]


@pytest.mark.parametrize("payload", [b"", b"\x00"], ids=["no bytes", "empty stored block"])
def test_a_compressed_empty_message_is_an_empty_message(payload):
    conn = deflate_connection()

    assert receive(conn, compressed(OP_TEXT, payload) + compressed(OP_BINARY, payload)) \
        == [TextMessage(""), BinaryMessage(b"")]


def test_a_compressed_text_message_is_inflated():
    conn = deflate_connection()

    assert receive(conn, compressed(OP_TEXT, deflate(DOCUMENT.encode()))) \
        == [TextMessage(DOCUMENT)]


def test_a_compressed_binary_message_is_inflated():
    data = bytes(range(256)) * 40
    conn = deflate_connection()

    assert receive(conn, compressed(OP_BINARY, deflate(data))) == [BinaryMessage(data)]


@pytest.mark.parametrize("opcode, message, event", [
    (OP_TEXT, ("h\u00e9llo w\u00f6rld \u20ac " * 20).encode(),
     TextMessage("h\u00e9llo w\u00f6rld \u20ac " * 20)),
    (OP_BINARY, bytes(range(256)) * 2, BinaryMessage(bytes(range(256)) * 2)),
])
def test_a_compressed_frame_split_at_every_byte_is_delivered_intact(opcode, message, event):
    frame = compressed(opcode, deflate(message))

    for split in range(len(frame) + 1):
        conn = deflate_connection()
        events = receive(conn, frame[:split]) + receive(conn, frame[split:])
        assert events == [event], "split at %d" % split


def test_a_compressed_frame_fed_one_byte_at_a_time_is_delivered_intact():
    frame = compressed(OP_TEXT, deflate(DOCUMENT.encode()))
    conn = deflate_connection()
    events = []
    for i in range(len(frame)):
        events.extend(receive(conn, frame[i:i + 1]))

    assert events == [TextMessage(DOCUMENT)]


def test_a_fragmented_compressed_message_has_rsv1_on_its_first_frame_only():
    payload = deflate(DOCUMENT.encode())
    a, b = len(payload) // 3, 2 * len(payload) // 3
    conn = deflate_connection()

    events = receive(conn, compressed(OP_TEXT, payload[:a], fin=False)
                     + client_frame(OP_CONTINUATION, payload[a:b], fin=False)
                     + client_frame(OP_PING, b"between")
                     + client_frame(OP_CONTINUATION, payload[b:]))

    assert events == [Ping(b"between", b"\x8a\x07between"), TextMessage(DOCUMENT)]


def test_a_fragmented_compressed_message_split_at_every_byte_is_delivered_intact():
    payload = deflate(DOCUMENT.encode())
    stream = (compressed(OP_TEXT, payload[:20], fin=False)
              + client_frame(OP_CONTINUATION, b"", fin=False)
              + client_frame(OP_CONTINUATION, payload[20:]))

    for split in range(len(stream) + 1):
        conn = deflate_connection()
        events = receive(conn, stream[:split]) + receive(conn, stream[split:])
        assert events == [TextMessage(DOCUMENT)], "split at %d" % split


@pytest.mark.parametrize("first_rsv", [RSV1, 0], ids=["compressed", "uncompressed"])
def test_rsv1_on_a_continuation_frame_fails_with_1002(first_rsv):
    payload = deflate(DOCUMENT.encode()) if first_rsv else DOCUMENT.encode()
    conn = deflate_connection()

    events = receive(conn, client_frame(OP_TEXT, payload[:10], fin=False, rsv=first_rsv)
                     + client_frame(OP_CONTINUATION, payload[10:], rsv=RSV1))

    assert_failed(conn, events, 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_rsv1_on_a_control_frame_fails_with_1002(opcode):
    conn = deflate_connection()

    assert_failed(conn, receive(conn, client_frame(opcode, b"", rsv=RSV1)), 1002)


@pytest.mark.parametrize("rsv", [RSV2, RSV3, RSV1 | RSV2, RSV1 | RSV3])
def test_rsv2_or_rsv3_fails_with_1002_even_with_deflate_negotiated(rsv):
    conn = deflate_connection()

    assert_failed(conn, receive(conn, client_frame(OP_TEXT, RFC_HELLO, rsv=rsv)), 1002)


def test_rsv1_fails_with_1002_when_deflate_was_not_negotiated():
    conn = ServerConnection()

    assert_failed(conn, receive(conn, compressed(OP_TEXT, RFC_HELLO)), 1002)


def test_an_uncompressed_message_is_delivered_as_it_is_with_deflate_negotiated():
    # 6.1: RSV1 clear means the message is not compressed.
    conn = deflate_connection()

    events = receive(conn, client_frame(OP_TEXT, b"Hello")
                     + client_frame(OP_BINARY, RFC_HELLO)
                     + client_frame(OP_TEXT, b"Hel", fin=False)
                     + client_frame(OP_CONTINUATION, b"lo"))

    assert events == [TextMessage("Hello"), BinaryMessage(RFC_HELLO), TextMessage("Hello")]


def test_compressed_and_uncompressed_messages_may_alternate():
    conn = deflate_connection()

    events = receive(conn, compressed(OP_TEXT, RFC_HELLO) + client_frame(OP_TEXT, b"plain")
                     + compressed(OP_TEXT, RFC_HELLO))

    assert events == [TextMessage("Hello"), TextMessage("plain"), TextMessage("Hello")]


def test_data_that_is_not_deflate_fails_with_1007():
    # BFINAL 1, BTYPE 11: a reserved block type.
    conn = deflate_connection()

    assert_failed(conn, receive(conn, compressed(OP_BINARY, b"\xff\xff\xff\xff")), 1007)


def test_data_that_is_not_deflate_fails_in_the_first_fragment_before_the_last_arrives():
    conn = deflate_connection()

    assert_failed(conn, receive(conn, compressed(OP_BINARY, b"\xff" * 10, fin=False)), 1007)


def test_a_compressed_text_message_that_inflates_to_invalid_utf_8_fails_with_1007():
    conn = deflate_connection()

    assert_failed(conn, receive(conn, compressed(OP_TEXT, deflate(b"ok \xce\xba\xff"))), 1007)


def test_a_compressed_binary_message_may_inflate_to_anything():
    conn = deflate_connection()

    assert receive(conn, compressed(OP_BINARY, deflate(b"ok \xce\xba\xff"))) \
        == [BinaryMessage(b"ok \xce\xba\xff")]


# ------------------------------------------------ the size limit, inflated


def test_a_decompression_bomb_fails_with_1009_without_being_inflated_in_memory():
    bomb = deflate(bytes(16 * MiB))
    assert len(bomb) < 20 * 1024  # about 16 KiB on the wire for 16 MiB of zeros
    frame = compressed(OP_BINARY, bomb)
    conn = deflate_connection(max_message_size=MiB)

    tracemalloc.start()
    try:
        events = receive(conn, frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert_failed(conn, events, 1009)
    assert peak < 4 * MiB, "peak %d bytes allocated" % peak


def test_a_decompression_bomb_arriving_in_pieces_fails_with_1009_within_bounded_memory():
    bomb = deflate(bytes(16 * MiB))
    frame = compressed(OP_BINARY, bomb)
    conn = deflate_connection(max_message_size=MiB)
    events = []

    tracemalloc.start()
    try:
        for i in range(0, len(frame), 4096):  # each read would inflate to 4 MiB
            events.extend(receive(conn, frame[i:i + 4096]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert_failed(conn, events, 1009)
    assert peak < 4 * MiB, "peak %d bytes allocated" % peak


def test_a_compressed_message_inflating_to_exactly_the_limit_is_accepted():
    conn = deflate_connection(max_message_size=1000)

    assert receive(conn, compressed(OP_BINARY, deflate(b"x" * 1000))) \
        == [BinaryMessage(b"x" * 1000)]


def test_a_compressed_message_inflating_to_one_byte_over_the_limit_fails_with_1009():
    conn = deflate_connection(max_message_size=1000)

    assert_failed(conn, receive(conn, compressed(OP_BINARY, deflate(b"x" * 1001))), 1009)


def test_a_fragmented_compressed_message_of_exactly_the_limit_is_accepted():
    payload = deflate(bytes(range(200)) * 5)
    conn = deflate_connection(max_message_size=1000)

    events = receive(conn, compressed(OP_BINARY, payload[:5], fin=False)
                     + client_frame(OP_CONTINUATION, payload[5:]))

    assert events == [BinaryMessage(bytes(range(200)) * 5)]


def test_the_inflated_limit_applies_across_the_fragments_of_a_message():
    # Each fragment inflates to 400 bytes: the third takes the message past 1000.
    client = zlib.compressobj(6, zlib.DEFLATED, -15)
    pieces = [client.compress(b"y" * 400) + client.flush(zlib.Z_SYNC_FLUSH) for _ in range(3)]
    pieces[-1] = pieces[-1][:-4]
    conn = deflate_connection(max_message_size=1000)

    events = receive(conn, compressed(OP_BINARY, pieces[0], fin=False)
                     + client_frame(OP_CONTINUATION, pieces[1], fin=False))
    assert events == []
    events = receive(conn, client_frame(OP_CONTINUATION, pieces[2]))

    assert_failed(conn, events, 1009)


def test_the_inflated_limit_applies_to_each_message_separately():
    frame = compressed(OP_BINARY, deflate(b"z" * 1000))
    conn = deflate_connection(max_message_size=1000)

    assert receive(conn, frame * 3) == [BinaryMessage(b"z" * 1000)] * 3


# ------------------------------------------------- client context takeover


def test_with_client_context_takeover_a_message_may_refer_to_the_previous_one():
    # RFC 7692 7.2.3.2: the second "Hello" is a back-reference into the first.
    extension = negotiated(client_context_takeover=True)
    assert ("client_no_context_takeover", None) not in extension.response_params()
    conn = ServerConnection(extensions=[extension])

    events = receive(conn, compressed(OP_TEXT, RFC_HELLO) + compressed(OP_TEXT, RFC_HELLO_AGAIN))

    assert events == [TextMessage("Hello"), TextMessage("Hello")]


def test_with_client_context_takeover_the_clients_compressor_may_run_on_across_messages():
    client = zlib.compressobj(6, zlib.DEFLATED, -15)
    first = deflate(DOCUMENT.encode(), compressor=client)
    second = deflate(DOCUMENT.encode(), compressor=client)
    assert len(second) < len(first)
    extension = negotiated(client_context_takeover=True)
    conn = ServerConnection(extensions=[extension])

    events = receive(conn, compressed(OP_TEXT, first) + client_frame(OP_TEXT, b"plain")
                     + compressed(OP_TEXT, second[:5], fin=False)
                     + client_frame(OP_CONTINUATION, second[5:]))

    assert events == [TextMessage(DOCUMENT), TextMessage("plain"), TextMessage(DOCUMENT)]
    assert extension._inflater is not None  # kept for the next message


def test_with_client_no_context_takeover_the_inflater_is_freed_after_each_message():
    extension = negotiated()
    conn = ServerConnection(extensions=[extension])

    assert receive(conn, compressed(OP_TEXT, RFC_HELLO[:3], fin=False)) == []
    assert extension._inflater is not None  # while the message arrives
    assert receive(conn, client_frame(OP_CONTINUATION, RFC_HELLO[3:])) == [TextMessage("Hello")]
    assert extension._inflater is None
    assert receive(conn, compressed(OP_TEXT, RFC_HELLO)) == [TextMessage("Hello")]
    assert extension._inflater is None


def test_with_client_no_context_takeover_each_message_starts_from_an_empty_window():
    # The second "Hello" of RFC 7692 7.2.3.2 refers back into a window that,
    # without context takeover, is empty.
    conn = deflate_connection()

    events = receive(conn, compressed(OP_TEXT, RFC_HELLO) + compressed(OP_TEXT, RFC_HELLO_AGAIN))

    assert events[0] == TextMessage("Hello")
    assert_failed(conn, events, 1007)


def test_with_client_no_context_takeover_independent_messages_all_decode():
    conn = deflate_connection()
    messages = ["first " * 30, "second " * 30, DOCUMENT]

    events = receive(conn, b"".join(compressed(OP_TEXT, deflate(m.encode())) for m in messages))

    assert events == [TextMessage(m) for m in messages]


def test_a_client_keeping_to_an_agreed_10_bit_window_is_understood_however_its_bytes_arrive():
    # Fed a byte at a time, every back-reference is resolved from the
    # inflater's window, which must hold the 1024 bytes the client may use.
    block = random.Random(1).randbytes(600)
    extension = negotiated([("client_max_window_bits", "10")])
    assert extension.inflate_bits == 10
    conn = ServerConnection(extensions=[extension])
    frame = compressed(OP_BINARY, deflate(block * 3, wbits=10))
    events = []
    for i in range(len(frame)):
        events.extend(receive(conn, frame[i:i + 1]))

    assert events == [BinaryMessage(block * 3)]


# -------------------------------------------------------- sending: 7.2.1


def test_a_text_message_of_at_least_min_size_is_sent_compressed_with_rsv1():
    conn = deflate_connection()

    first, payload = server_frame(conn.send_text(DOCUMENT))

    assert first == 0xC1  # FIN, RSV1, text
    assert len(payload) < len(DOCUMENT)
    assert inflate(payload) == DOCUMENT.encode()


def test_a_binary_message_of_at_least_min_size_is_sent_compressed_with_rsv1():
    data = bytes(range(256)) * 4
    conn = deflate_connection()

    first, payload = server_frame(conn.send_binary(data))

    assert first == 0xC2  # FIN, RSV1, binary
    assert inflate(payload) == data


def test_a_message_of_exactly_min_size_is_compressed_and_one_byte_shorter_is_not():
    conn = deflate_connection(min_size=100)

    assert conn.send_binary(b"a" * 99) == b"\x82\x63" + b"a" * 99
    first, payload = server_frame(conn.send_binary(b"a" * 100))
    assert first == 0xC2
    assert inflate(payload) == b"a" * 100


def test_a_message_shorter_than_the_default_min_size_of_128_is_sent_uncompressed():
    conn = deflate_connection()

    assert conn.send_text("Hello") == b"\x81\x05Hello"
    assert server_frame(conn.send_text("x" * 127))[0] == 0x81
    assert server_frame(conn.send_text("x" * 128))[0] == 0xC1


def test_an_empty_message_is_sent_uncompressed_even_with_min_size_0():
    conn = deflate_connection(min_size=0)

    assert conn.send_text("") == b"\x81\x00"
    assert conn.send_binary(b"") == b"\x82\x00"


def test_hello_is_sent_as_in_the_rfc_example():
    # RFC 7692 7.2.3.1: the payload is the compressed data without its tail.
    conn = deflate_connection(min_size=0)

    assert conn.send_text("Hello") == b"\xc1\x07" + RFC_HELLO


def test_a_large_compressed_message_uses_the_64_bit_length_form():
    data = random.Random(2).randbytes(70000)  # incompressible: stays over 65535
    conn = deflate_connection()

    frame = conn.send_binary(data)

    assert frame[:2] == b"\xc2\x7f"
    payload = server_frame(frame)[1]
    assert inflate(payload) == data


def test_send_message_parts_applies_deflate_too():
    conn = deflate_connection()

    header, payload = conn.send_message_parts(OP_TEXT, DOCUMENT.encode())

    assert header + payload == conn.send_text(DOCUMENT)
    assert header[0] == 0xC1


# ------------------------------------------------ server context takeover


def test_without_server_context_takeover_the_same_message_compresses_to_the_same_bytes():
    conn = deflate_connection()

    first = conn.send_text(DOCUMENT)
    second = conn.send_text(DOCUMENT)

    assert first == second
    assert inflate(server_frame(second)[1]) == DOCUMENT.encode()


def test_without_server_context_takeover_hello_twice_is_the_rfc_bytes_twice():
    conn = deflate_connection(min_size=0)

    assert conn.send_text("Hello") == conn.send_text("Hello") == b"\xc1\x07" + RFC_HELLO


def test_without_server_context_takeover_connections_share_one_compressor():
    factory = PerMessageDeflate()
    one = ServerConnection(extensions=[factory.accept([])])
    two = ServerConnection(extensions=[factory.accept([])])

    frames = [one.send_text(DOCUMENT), two.send_text("other " * 40), two.send_text(DOCUMENT),
              one.send_binary(bytes(300)), one.send_text(DOCUMENT)]

    assert len(factory._shared) == 1
    assert frames[0] == frames[2] == frames[4]
    expected = [DOCUMENT.encode(), b"other " * 40, DOCUMENT.encode(), bytes(300),
                DOCUMENT.encode()]
    for frame, data in zip(frames, expected):
        assert inflate(server_frame(frame)[1]) == data  # each on its own


def test_with_server_context_takeover_hello_twice_is_the_rfc_bytes_of_7_2_3_2():
    conn = deflate_connection(server_context_takeover=True, min_size=0)

    assert conn.send_text("Hello") == b"\xc1\x07" + RFC_HELLO
    assert conn.send_text("Hello") == b"\xc1\x05" + RFC_HELLO_AGAIN


def test_with_server_context_takeover_a_repeated_message_is_shorter_and_needs_the_context():
    conn = deflate_connection(server_context_takeover=True)

    first = server_frame(conn.send_text(DOCUMENT))[1]
    second = server_frame(conn.send_text(DOCUMENT))[1]

    assert len(second) < len(first)
    client = zlib.decompressobj(-15)
    assert inflate(first, client) == DOCUMENT.encode()
    assert inflate(second, client) == DOCUMENT.encode()
    with pytest.raises(zlib.error):
        inflate(second)  # a fresh window has nothing to refer back to


def test_each_connection_with_server_context_takeover_has_its_own_context():
    factory = PerMessageDeflate(server_context_takeover=True)
    one = ServerConnection(extensions=[factory.accept([])])
    two = ServerConnection(extensions=[factory.accept([])])

    first = one.send_text(DOCUMENT)

    assert two.send_text(DOCUMENT) == first
    assert factory._shared == {}


# ------------------------------------------------------ PreparedMessage


def test_a_prepared_message_is_compressed_once_for_connections_with_the_same_parameters():
    factory = PerMessageDeflate()
    conns = [ServerConnection(extensions=[factory.accept([])]) for _ in range(3)]
    prepared = PreparedMessage.text(DOCUMENT)

    frames = [conn.send_prepared(prepared) for conn in conns]

    assert frames[0] is frames[1] is frames[2]
    first, payload = server_frame(frames[0])
    assert first == 0xC1
    assert inflate(payload) == DOCUMENT.encode()
    assert frames[0] == conns[0].send_text(DOCUMENT)


def test_a_prepared_message_goes_uncompressed_to_a_connection_without_extensions():
    prepared = PreparedMessage.text(DOCUMENT)
    conn = ServerConnection()

    frame = conn.send_prepared(prepared)

    assert frame is ServerConnection().send_prepared(prepared)  # encoded once, for every one
    assert frame == encode_frame(OP_TEXT, DOCUMENT.encode())


def test_a_short_prepared_message_goes_uncompressed_to_a_deflate_connection():
    factory = PerMessageDeflate()
    prepared = PreparedMessage.binary(b"tiny")

    assert ServerConnection(extensions=[factory.accept([])]).send_prepared(prepared) \
        == b"\x82\x04tiny"


def test_a_prepared_message_is_compressed_for_each_connection_keeping_its_context():
    shared = ServerConnection(extensions=[negotiated()])
    factory = PerMessageDeflate(server_context_takeover=True)
    keeping = ServerConnection(extensions=[factory.accept([])])
    prepared = PreparedMessage.text(DOCUMENT)
    cached = shared.send_prepared(prepared)

    first = keeping.send_prepared(prepared)
    second = keeping.send_prepared(PreparedMessage.text(DOCUMENT))

    assert first is not cached
    client = zlib.decompressobj(-15)
    assert inflate(server_frame(first)[1], client) == DOCUMENT.encode()
    assert len(second) < len(first)  # the connection's own context was used
    assert inflate(server_frame(second)[1], client) == DOCUMENT.encode()


def test_a_prepared_message_is_encoded_separately_for_a_smaller_server_window():
    # Over 1024 bytes apart, the repeat is a match only for a 15-bit window.
    block = random.Random(3).randbytes(2000)
    factory = PerMessageDeflate()
    wide = [ServerConnection(extensions=[factory.accept([])]) for _ in range(2)]
    narrow = [ServerConnection(extensions=[factory.accept([("server_max_window_bits", "10")])])
              for _ in range(2)]
    prepared = PreparedMessage.binary(block * 2)

    wide_frames = [conn.send_prepared(prepared) for conn in wide]
    narrow_frames = [conn.send_prepared(prepared) for conn in narrow]

    assert wide_frames[0] is wide_frames[1]
    assert narrow_frames[0] is narrow_frames[1]
    assert narrow_frames[0] != wide_frames[0]
    assert inflate_within(server_frame(narrow_frames[0])[1], 10) == block * 2
    assert inflate(server_frame(wide_frames[0])[1]) == block * 2
    with pytest.raises(zlib.error):
        inflate_within(server_frame(wide_frames[0])[1], 10)


def test_a_prepared_message_is_encoded_separately_for_another_configuration():
    fast = PerMessageDeflate(compression_level=1)
    best = PerMessageDeflate(compression_level=9)
    prepared = PreparedMessage.text(DOCUMENT)

    one = ServerConnection(extensions=[fast.accept([])]).send_prepared(prepared)
    two = ServerConnection(extensions=[best.accept([])]).send_prepared(prepared)

    assert one is not two
    assert len(prepared.forms) == 2
    assert inflate(server_frame(one)[1]) == inflate(server_frame(two)[1]) == DOCUMENT.encode()


def test_a_cached_prepared_message_cannot_be_sent_after_close():
    factory = PerMessageDeflate()
    one = ServerConnection(extensions=[factory.accept([])])
    two = ServerConnection(extensions=[factory.accept([])])
    prepared = PreparedMessage.text(DOCUMENT)
    one.send_prepared(prepared)
    two.send_close()

    with pytest.raises(InvalidState):
        two.send_prepared(prepared)


# ------------------------------------------------------------ round trips


def compressed_messages(draw, takeover):
    """Client frames for some messages, compressed (with one compressor
    when ``takeover``, else one per message) or not, fragmented anyhow; and
    the events they must produce."""
    client = zlib.compressobj(6, zlib.DEFLATED, -15)
    frames = []
    events = []
    for _ in range(draw(st.integers(0, 5))):
        opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
        if opcode == OP_TEXT:
            message = draw(st.text(max_size=60)).encode("utf-8") * draw(st.integers(1, 5))
            events.append(TextMessage(message.decode("utf-8")))
        else:
            message = draw(st.binary(max_size=200)) * draw(st.integers(1, 3))
            events.append(BinaryMessage(message))
        rsv = draw(st.sampled_from([RSV1, RSV1, 0]))
        if rsv and takeover:
            payload = deflate(message, compressor=client)
        elif rsv:
            payload = deflate(message, wbits=draw(st.integers(9, 15)),
                              level=draw(st.integers(0, 9)))
        else:
            payload = message
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
        for i, piece in enumerate(pieces):
            frames.append(client_frame(opcode if i == 0 else OP_CONTINUATION, piece,
                                       fin=i == len(pieces) - 1, rsv=rsv if i == 0 else 0,
                                       mask=draw(st.binary(min_size=4, max_size=4))))
    frames.append(client_frame(OP_CLOSE, b"\x03\xe8"))
    events.append(CloseReceived(1000, ""))
    return b"".join(frames), events


@settings(max_examples=100, deadline=None)
@given(st.booleans(), st.data())
def test_any_messages_compressed_fragmented_and_split_anyhow_arrive_intact(takeover, data):
    stream, expected = compressed_messages(data.draw, takeover)
    points = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    conn = deflate_connection(client_context_takeover=takeover)
    events = []
    for a, b in zip([0] + points, points + [len(stream)]):
        events.extend(receive(conn, stream[a:b]))

    assert events == expected
    assert conn.data_to_send() == b"\x88\x02\x03\xe8"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=700), st.integers(1, 4), st.sampled_from([9, 12, 15]), st.booleans())
def test_any_message_the_server_sends_inflates_within_the_agreed_window(chunk, repeat, bits,
                                                                        takeover):
    data = chunk * repeat  # repeats up to 700 bytes back: beyond a 9-bit window
    conn = deflate_connection([("server_max_window_bits", str(bits))], min_size=0,
                              server_context_takeover=takeover)
    client = zlib.decompressobj(-bits)

    for _ in range(2):
        first, payload = server_frame(conn.send_binary(data))
        if data:
            assert first == 0xC2
            assert inflate_within(payload, bits, client) == data
        else:
            assert (first, payload) == (0x82, b"")


def test_an_incompressible_message_at_the_limit_is_accepted():
    # Deflate may expand incompressible data a little: the wire size of a
    # compressed message is not held to the inflated limit.
    payload = random.Random(7).randbytes(1000)
    wire = deflate(payload)
    assert len(wire) > 1000
    conn = deflate_connection(max_message_size=1000)

    assert receive(conn, compressed(OP_BINARY, wire)) == [BinaryMessage(payload)]


def test_a_window_value_in_non_ascii_digits_is_declined():
    assert PerMessageDeflate().accept([("server_max_window_bits", "\u0669")]) is None


# ------------------------------------------------- after this side's Close


def test_a_compressed_message_after_the_servers_close_is_not_inflated():
    # RFC 6455 5.5.1: after its Close an endpoint reads on only for the
    # peer's Close; inflating what comes meanwhile would be work for no
    # one, which a client could ask for at will (up to about 1000:1).
    conn = deflate_connection()
    [extension] = conn.extensions
    assert receive(conn, compressed(OP_TEXT, deflate(DOCUMENT.encode()))) == [TextMessage(DOCUMENT)]
    inflated = extension.inflated_bytes
    assert inflated == len(DOCUMENT)
    conn.send_close(1000)
    bomb = deflate(b" " * MiB)
    after = (compressed(OP_TEXT, bomb) * 5 + compressed(OP_BINARY, bomb, fin=False)
             + client_frame(OP_CONTINUATION, b""))
    assert receive(conn, after) == []
    assert extension.inflated_bytes == inflated
    events = receive(conn, client_frame(OP_CLOSE, b"\x03\xe8"))
    assert [type(event) for event in events] == [CloseReceived]
