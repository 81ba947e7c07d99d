"""Fuzzing what clients send, with hypothesis: every parser either produces
its events (or a head) or refuses cleanly with its documented error, never
another exception, however the bytes are cut into reads.

- the request head (HeadReader, parse_head) and the handshake decisions
  made on it (WebSocket and firepresence);
- the WebSocket frame parser (ServerConnection) on arbitrary bytes and on
  frame-shaped bytes; valid conversations split at every byte boundary;
- permessage-deflate input: compressed messages, and garbage with RSV1;
- firepresence lines (LineReader);
- every JSON message type of the hub, against a real Redis (HubFuzzTests).

Examples are bounded (``FUZZ``) so that the whole file runs in seconds; the
coverage-guided run of the frame and head parsers is bench/fuzz.py
(docs/fuzzing.md). Inputs it found that once broke a parser are kept at the
end of this file as regression tests.
"""

import collections
import json
import zlib

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from bench.echo_server import EchoHandler
from presence.firepresence.handshake import firepresence_handshake
from presence.firepresence.lines import BadLine, Document, LineReader
from presence.net.dispatch import ListenerFactory, choose_session
from presence.net.server import Server
from presence.net.settings import ServerSettings
from presence.websocket.connection import ServerConnection
from presence.websocket.deflate import PerMessageDeflate
from presence.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    encode_close_payload,
    encode_frame,
)
from presence.websocket.handshake import Accepted, HandshakeConfig, Refused, server_handshake
from presence.websocket.mask import unmask_pure
from presence.wire.events import (
    CLOSED,
    OPEN,
    BinaryMessage,
    CloseReceived,
    Ping,
    Pong,
    ProtocolError,
    TextMessage,
)
from presence.wire.httphead import HeadError, HeadReader, RequestHead, parse_head

from .helpers.framing import client_frame, server_frames, upgrade_request
from .helpers.hubs import HubTestCase
from .helpers.waiting import lose, run, until

#: Examples per property: enough to reach every branch of these parsers
#: (checked with coverage), few enough that the file takes seconds.
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                # No "explain" phase: its tracer would hide these runs from coverage.
                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])
#: For properties whose examples each run many parses (every split point).
FUZZ_HEAVY = settings(FUZZ, max_examples=100)


def cut(data, points):
    """``data`` cut at ``points`` (any order, any values in range)."""
    points = sorted(set(points))
    return [data[a:b] for a, b in zip([0] + points, points + [len(data)])]


def cuts_of(data_strategy, max_cuts=12):
    """A strategy of ``(data, chunks)``: data, cut at arbitrary points."""
    return data_strategy.flatmap(lambda data: st.tuples(
        st.just(data),
        st.lists(st.integers(0, len(data)), max_size=max_cuts).map(
            lambda points: cut(data, points))))


# ------------------------------------------------------------ request heads

HEAD_PIECES = [
    b"GET", b"OPTIONS", b"POST", b" ", b"/", b"/chat?ticket=x", b"http://h/p", b"*",
    b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.", b"\r\n", b"\r\n\r\n", b"\r", b"\n",
    b"Host: example.com", b"Upgrade: websocket", b"Upgrade: firepresence/1.0",
    b"Upgrade: firepresence/2.0", b"Connection: Upgrade", b"Sec-WebSocket-Version: 13",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Key: short",
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, x; y=\"1\"",
    b"Sec-WebSocket-Protocol: a, b", b"Origin: https://example.com", b"X-Auth-Token: t",
    b"Content-Length: 5", b"Transfer-Encoding: chunked", b":", b"\t", b" : ", b"\x00",
    b"\x7f", b"\x16\x03\x01", b"\x80", b"\xff\xfe", b"\xc3\xa9",
    b"GET / HTTP/1.1\r\n", b"OPTIONS / HTTP/1.1\r\nHost: h\r\n", b"\r\n folded",
    b"\r\nBad Name: x", b"\r\nNoColon", b"\r\n:empty", b"\r\nX-A: \x01",
]

head_like = st.lists(st.one_of(st.sampled_from(HEAD_PIECES), st.binary(max_size=6)),
                     max_size=40).map(b"".join)


@st.composite
def mutated(draw, base, pieces=()):
    """Bytes from ``base`` with up to four mutations: a byte flipped, set,
    deleted, or one of ``pieces`` inserted."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert"]))
        if kind == "insert" or not data or position == len(data):
            data[position:position] = draw(st.sampled_from(pieces) if pieces
                                           else st.binary(min_size=1, max_size=4))
        elif kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[position] = draw(st.integers(0, 255))
        else:
            del data[position]
    return bytes(data)


def upgrade_head(fields):
    lines = [b"GET /chat HTTP/1.1"] + fields + [b"", b""]
    return b"\r\n".join(lines)


FIELD_NAMES = [b"Host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key",
               b"Sec-WebSocket-Version", b"Sec-WebSocket-Extensions", b"Sec-WebSocket-Protocol",
               b"Origin", b"User-Agent", b"X-Auth-Token", b"Content-Length",
               b"Transfer-Encoding", b"X-Forwarded-For"]
FIELD_VALUES = [b"", b"websocket", b"WebSocket, firepresence", b"firepresence/1.0", b"Upgrade",
                b"keep-alive, Upgrade", b"13", b"8", b"13, 8", b"dGhlIHNhbXBsZSBub25jZQ==",
                b"permessage-deflate", b"permessage-deflate; client_max_window_bits=9",
                b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                b"x-unknown, permessage-deflate; server_max_window_bits=10",
                b"permessage-deflate; client_max_window_bits=\"15\"", b"chat, superchat",
                b"https://example.com", b"null", b"0", b"1"]
field_lines = st.lists(st.tuples(st.sampled_from(FIELD_NAMES), st.one_of(
    st.sampled_from(FIELD_VALUES), st.binary(max_size=20).filter(
        lambda value: b"\r" not in value and b"\n" not in value))).map(
    lambda pair: pair[0] + b": " + pair[1]), max_size=14)
any_head_bytes = st.one_of(
    st.binary(max_size=400), head_like,
    mutated(field_lines.map(upgrade_head), HEAD_PIECES + [
        b"".join(b"X-%d: y\r\n" % i for i in range(101)), b"\r\n folded", b"HTTP/2.0"]))


def read_head(chunks, **limits):
    """Feed ``chunks`` to a HeadReader: ``("head", head, rest)``,
    ``("refused", status)``, or ``("incomplete",)``."""
    reader = HeadReader(**limits)
    for index, chunk in enumerate(chunks):
        try:
            result = reader.feed(chunk)
        except HeadError as error:
            assert error.status in (400, 431, 505), error
            assert isinstance(error.reason, str) and error.reason and error.kind
            return ("refused",)
        if result is not None:
            head, rest = result
            assert isinstance(head, RequestHead)
            rest += b"".join(chunks[index + 1:])
            return ("head", head.method, head.target, head.version, head.fields, rest)
    assert reader.buffered <= limits.get("max_size", 8192) + 3
    return ("incomplete",)


@FUZZ
@given(cuts_of(any_head_bytes), st.sampled_from([64, 200, 8192]))
def test_head_reader_reads_a_head_or_refuses_however_the_bytes_arrive(cuts, max_size):
    data, chunks = cuts
    whole = read_head([data], max_size=max_size)
    split = read_head(chunks, max_size=max_size)
    # The verdict does not depend on the reads (a refusal's status may: a
    # head too long *and* malformed is refused for whichever shows first).
    assert split == whole


@FUZZ
@given(cuts_of(st.lists(field_lines, min_size=1, max_size=3).map(
    lambda heads: b"".join(upgrade_head(fields) for fields in heads))))
def test_heads_of_plausible_fields_read_the_same_however_they_arrive(cuts):
    data, chunks = cuts
    assert read_head(chunks) == read_head([data])


@FUZZ
@given(any_head_bytes)
def test_parse_head_returns_a_head_or_raises_head_error(raw):
    try:
        head = parse_head(raw)
    except HeadError as error:
        assert error.status in (400, 431, 505)
        return
    assert isinstance(head, RequestHead)
    for name, value in head.fields:
        assert name == name.lower() and head.get_all(name)


WEBSOCKET_CONFIGS = [
    HandshakeConfig(),
    HandshakeConfig(subprotocols=["chat"], origins=["https://example.com"],
                    extensions=[PerMessageDeflate()]),
    HandshakeConfig(extensions=[PerMessageDeflate(server_max_window_bits=9,
                                                  client_max_window_bits=10,
                                                  client_context_takeover=True)]),
]


@FUZZ
@given(st.sampled_from([b"GET", b"OPTIONS", b"HEAD"]), st.sampled_from([b"1.1", b"1.0", b"1.9"]),
       field_lines, st.sampled_from(WEBSOCKET_CONFIGS))
def test_every_head_gets_a_session_or_a_refusal_from_the_handshakes(method, version, fields,
                                                                    config):
    raw = b"\r\n".join([method + b" /p?ticket=x HTTP/" + version] + fields)
    try:
        head = parse_head(raw)
    except HeadError:
        return
    session_class = choose_session(head)
    websocket = server_handshake(head, config)
    assert isinstance(websocket, (Accepted, Refused))
    if isinstance(websocket, Refused):
        assert websocket.response.startswith(b"HTTP/1.1 4")
    firepresence = firepresence_handshake(head)
    assert firepresence.response.startswith((b"HTTP/1.1 101 ", b"HTTP/1.1 4"))
    if session_class is None:
        assert not isinstance(websocket, Accepted)


# ------------------------------------------------------------------ frames

MASK = b"\x37\xfa\x21\x3d"
ALLOWED_FAILURES = {1002, 1007, 1008, 1009}


def masked_frame(opcode, payload=b"", fin=True, rsv=0, mask=MASK, masked=True, length_form=None):
    """A client frame; ``length_form`` 7, 16 or 64 forces a length encoding
    (not necessarily the shortest, which the parser must refuse)."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    mask_bit = 0x80 if masked else 0
    if form == 7 and n < 126:
        header = bytes((first, mask_bit | n))
    elif form in (7, 16) and n < 65536:
        header = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if not masked:
        return header + payload
    return header + mask + unmask_pure(mask, payload)


def feed_frames(chunks, connection=None, **options):
    """Feed ``chunks`` to a connection; return its events and what it queued,
    checking the invariants every byte stream must keep."""
    conn = connection if connection is not None else ServerConnection(**options)
    events = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events():
            assert not events or not isinstance(events[-1], (ProtocolError, CloseReceived)), \
                "an event after the end: %r" % (events + [event],)
            assert isinstance(event, (TextMessage, BinaryMessage, Ping, Pong, CloseReceived,
                                      ProtocolError)), event
            events.append(event)
    out = conn.data_to_send()
    if events and isinstance(events[-1], ProtocolError):
        error = events[-1]
        assert error.code in ALLOWED_FAILURES, error
        assert isinstance(error.reason, str) and error.reason
        assert conn.state is CLOSED
        assert out == encode_frame(OP_CLOSE, encode_close_payload(error.code, error.reason))
    elif events and isinstance(events[-1], CloseReceived):
        assert conn.state is CLOSED
    else:
        assert conn.state is not CLOSED and out == b""
    for event in events:
        if isinstance(event, TextMessage):
            assert len(event.text.encode("utf-8")) <= conn.max_message_size
        elif isinstance(event, BinaryMessage):
            assert len(event.data) <= conn.max_message_size
        elif isinstance(event, Ping):
            assert len(event.payload) <= 125
    return events, out


@FUZZ
@given(cuts_of(st.binary(max_size=600)))
def test_arbitrary_bytes_give_events_or_a_clean_protocol_error(cuts):
    data, chunks = cuts
    whole = feed_frames([data], max_message_size=256)
    assert feed_frames(chunks, max_message_size=256) == whole


# Frames whose every header field is drawn: opcodes valid and reserved, RSV
# bits, FIN, masked or not, every length form (minimal or not), payloads of
# valid or invalid UTF-8, close payloads of every length and code.
payloads = st.one_of(
    st.binary(max_size=140),
    st.text(max_size=60).map(lambda text: text.encode("utf-8")),
    st.sampled_from([b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xed\xa0\x80", b"\xf4\x90",
                     b"\xc3", b"\xe2\x82", b"x" * 126, b"y" * 300]),
    st.tuples(st.integers(0, 5100), st.text(max_size=10)).map(
        lambda pair: pair[0].to_bytes(2, "big") + pair[1].encode("utf-8")),
)
# Mostly well-formed headers, so that streams get past their first frame.
drawn_frames = st.builds(
    masked_frame,
    opcode=st.one_of(st.sampled_from([OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING,
                                      OP_PONG]), st.integers(0, 15)),
    payload=st.one_of(payloads, st.sampled_from([b"", b"\x03", b"\x03\xe8", b"\x03\xed",
                                                 b"\x03\xe8\xff"])),
    fin=st.sampled_from([True, True, True, False]),
    rsv=st.sampled_from([0, 0, 0, 0, 0x10, 0x20, 0x40, 0x70]),
    mask=st.binary(min_size=4, max_size=4),
    masked=st.sampled_from([True, True, True, True, True, False]),
    length_form=st.sampled_from([None, None, None, 7, 16, 64]),
)
# A header alone, announcing any length in any form (the payload never comes).
announcing_headers = st.tuples(st.integers(0, 255), st.sampled_from([126, 127]),
                               st.integers(0, 2 ** 64 - 1)).map(
    lambda parts: bytes((parts[0], 0x80 | parts[1])) + parts[2].to_bytes(
        2 if parts[1] == 126 else 8, "big")[-(2 if parts[1] == 126 else 8):] + MASK
    if parts[1] == 127 or parts[2] < 65536 else bytes((parts[0], 0xFE, 0xFF, 0xFF)) + MASK)
frame_streams = st.one_of(
    st.lists(st.one_of(drawn_frames, drawn_frames, drawn_frames, announcing_headers),
             max_size=8).map(b"".join),
    # A valid conversation, damaged in a few places, or cut short by a
    # drawn frame.
    mutated(st.deferred(lambda: conversations()).map(lambda conversation: conversation[0])),
    st.tuples(st.deferred(lambda: conversations()), drawn_frames).map(
        lambda parts: parts[0][0][:len(parts[0][0]) // 2] + parts[1]),
)


@FUZZ
@given(cuts_of(frame_streams, max_cuts=16), st.sampled_from([100, 300, 1 << 20]))
def test_frame_shaped_bytes_give_events_or_a_clean_protocol_error(cuts, limit):
    data, chunks = cuts
    whole = feed_frames([data], max_message_size=limit)
    assert feed_frames(chunks, max_message_size=limit) == whole


@FUZZ
@given(frame_streams)
def test_frame_shaped_bytes_fed_one_byte_at_a_time_give_the_same_events(data):
    whole = feed_frames([data], max_message_size=300)
    assert feed_frames([data[i:i + 1] for i in range(len(data))],
                       max_message_size=300) == whole


# A valid conversation: messages (text with characters of every width,
# binary), each in one frame or several, pings and pongs between fragments,
# payloads in both length forms a small stream can hold, a Close at the end.
message_texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["\u00e9" * 70, "\u20ac\U0001f600" * 20, "a" * 130]),
)


@st.composite
def conversations(draw, compressed=False):
    frames, expected = [], []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            text = draw(message_texts)
            opcode, payload, event = OP_TEXT, text.encode("utf-8"), TextMessage(text)
        else:
            data = draw(st.binary(max_size=140))
            opcode, payload, event = OP_BINARY, data, BinaryMessage(data)
        rsv = 0
        if compressed and draw(st.booleans()):
            compressor = zlib.compressobj(draw(st.integers(0, 9)), zlib.DEFLATED, -15)
            payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            payload = payload[:-4]
            rsv = RSV1
        points = draw(st.lists(st.integers(0, len(payload)), max_size=3))
        pieces = cut(payload, points)
        for index, piece in enumerate(pieces):
            mask = draw(st.binary(min_size=4, max_size=4))
            frames.append(masked_frame(opcode if index == 0 else OP_CONTINUATION, piece,
                                       fin=index == len(pieces) - 1,
                                       rsv=rsv if index == 0 else 0, mask=mask))
            if index == len(pieces) - 1:
                expected.append(event)
            if draw(st.integers(0, 3)) == 0:
                # A control frame between fragments, or between messages.
                ping = draw(st.binary(max_size=125))
                if draw(st.booleans()):
                    frames.append(masked_frame(OP_PING, ping, mask=mask))
                    expected.append(Ping(ping, encode_frame(OP_PONG, ping)))
                else:
                    frames.append(masked_frame(OP_PONG, ping, mask=mask))
                    expected.append(Pong(ping))
    code = draw(st.sampled_from([1000, 1001, 1003, 1011, 3000, 4999]))
    reason = draw(st.text(max_size=20).filter(lambda text: len(text.encode("utf-8")) <= 123))
    frames.append(masked_frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode("utf-8")))
    expected.append(CloseReceived(code, reason))
    return b"".join(frames), expected


@FUZZ_HEAVY
@given(conversations())
def test_a_valid_conversation_split_at_every_byte_boundary_reassembles_exactly(conversation):
    stream, expected = conversation
    assert feed_frames([stream])[0] == expected
    for point in range(1, len(stream)):
        events, out = feed_frames([stream[:point], stream[point:]])
        assert events == expected, "split at %d" % point
        assert out == encode_frame(OP_CLOSE, expected[-1].code.to_bytes(2, "big"))
    assert feed_frames([stream[i:i + 1] for i in range(len(stream))])[0] == expected


# ------------------------------------------------------- permessage-deflate

def deflate_connection(limit=1 << 20, **config):
    extension = PerMessageDeflate(**config).accept([("client_max_window_bits", None)])
    return ServerConnection(max_message_size=limit, extensions=[extension])


deflate_configs = st.sampled_from([{}, {"client_context_takeover": True},
                                   {"client_max_window_bits": 9}])


@FUZZ_HEAVY
@given(conversations(compressed=True), st.data())
def test_compressed_conversations_split_anywhere_reassemble_exactly(conversation, data):
    stream, expected = conversation
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    events, _ = feed_frames(cut(stream, points), deflate_connection())
    assert events == expected


garbage_payloads = st.one_of(
    st.binary(max_size=300),
    # Valid deflate of something larger than the limit (a small bomb).
    st.integers(300, 5000).map(lambda size: zlib.compress(b"\x00" * size)[2:-4]),
    # Valid deflate, then damage.
    st.tuples(st.binary(min_size=1, max_size=200), st.integers(0, 1000), st.integers(1, 255)).map(
        lambda parts: _damaged(parts[0], parts[1], parts[2])),
    # A complete deflate stream (BFINAL), then more bytes.
    st.binary(max_size=50).map(lambda data: zlib.compress(data)[2:-4] + b"\x00\x01garbage"),
)


def _damaged(data, position, xor):
    payload = bytearray(zlib.compress(data)[2:-4])
    payload[position % len(payload)] ^= xor
    return bytes(payload)


@st.composite
def compressed_garbage(draw):
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        payload = draw(garbage_payloads)
        opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
        pieces = cut(payload, draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        for index, piece in enumerate(pieces):
            first = index == 0
            rsv = draw(st.sampled_from([RSV1, RSV1, RSV1, 0, 0x20, RSV1 | 0x40])) if first \
                else draw(st.sampled_from([0, 0, 0, RSV1]))
            frames.append(masked_frame(opcode if first else OP_CONTINUATION, piece,
                                       fin=index == len(pieces) - 1, rsv=rsv,
                                       mask=draw(st.binary(min_size=4, max_size=4))))
    return b"".join(frames)


@FUZZ
@given(cuts_of(compressed_garbage()), deflate_configs)
def test_compressed_garbage_gives_messages_or_1002_1007_1009(cuts, config):
    data, chunks = cuts
    whole, _ = feed_frames([data], deflate_connection(limit=256, **config))
    split, _ = feed_frames(chunks, deflate_connection(limit=256, **config))
    # The same messages, and the same verdict; which fault a garbage
    # message shows first (bad deflate data, invalid UTF-8 in what inflated
    # so far, too much inflated) may depend on how much of it had arrived.
    assert [event for event in split if not isinstance(event, ProtocolError)] == \
        [event for event in whole if not isinstance(event, ProtocolError)]
    for events in (whole, split):
        if events and isinstance(events[-1], ProtocolError):
            assert events[-1].code in (1002, 1007, 1009)
    assert isinstance(whole[-1:][0] if whole else None, ProtocolError) == \
        isinstance(split[-1:][0] if split else None, ProtocolError)


# --------------------------------------------------------- firepresence lines

LINE_PIECES = [b"\n", b"\r\n", b"\r", b" ", b"{", b"}", b"[", b"]", b'"', b":", b",",
               b'{"type":"ping","id":1}', b'{"type":"subscribe","channel":"room:1"}', b"null",
               b"1e999", b"-0", b"NaN", b'"\\ud800"', b"\\", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80",
               b"x" * 40, b"\x00"]
line_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.sampled_from(LINE_PIECES), st.binary(max_size=5)),
             max_size=40).map(b"".join),
    st.lists(st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=8), max_size=5).map(
        lambda documents: b"".join(json.dumps(d).encode() + b"\n" for d in documents)),
)


def read_lines(chunks, max_line):
    reader = LineReader(max_line)
    events = []
    for chunk in chunks:
        for event in reader.receive_data(chunk):
            assert isinstance(event, (Document, BadLine)), event
            if isinstance(event, Document):
                assert isinstance(event.document, dict)
                assert "\n" not in event.text
                assert len(event.text.encode("utf-8")) <= max_line
            else:
                # The reasons LineReader gives, those of wire/jsontext.py's
                # decoder (NaN, nesting: "not JSON Presence takes") included.
                assert event.reason in ("line is not JSON", "line is not a JSON object",
                                        "line is not valid UTF-8",
                                        "line longer than %d bytes" % max_line,
                                        "line is not JSON Presence takes: NaN and Infinity "
                                        "are not JSON",
                                        "line is not JSON Presence takes: nested deeper than "
                                        "64 levels"), event
            events.append(event)
        # An unfinished line is held up to the limit, and no further.
        assert len(reader._buffer) <= max_line
    return events


@FUZZ
@given(cuts_of(line_bytes, max_cuts=16), st.sampled_from([16, 64, 1 << 20]))
def test_line_reader_gives_documents_or_bad_lines_however_the_bytes_arrive(cuts, max_line):
    data, chunks = cuts
    assert read_lines(chunks, max_line) == read_lines([data], max_line)


# ------------------------------------------------------- the hub's messages

# Any JSON value: strings with any code point, lone surrogates included
# (JSON escapes them: "\ud800"), numbers of any size, NaN and the infinities
# (which Python's json reads), nested arrays and objects.
any_character = st.one_of(st.characters(), st.characters(categories=["Cs"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(any_character, max_size=12)
    | st.sampled_from(["\ud800", "a\udfff", "\udbff\udbff", "\ud83d\ude00", "\x00", ""]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12)
channel_names = st.one_of(
    st.text(any_character, max_size=12).map(lambda text: "room:" + text),
    st.sampled_from(["room:1", "room:2", "room:*", "room: spaced", "account:fuzzer",
                     "account:other", "other:1", "", "r" * 201, "room:" + "x" * 195]),
    json_values)
HUB_TYPES = ["subscribe", "unsubscribe", "publish", "members", "ping", "auth", "welcome",
             "message", "close", "pong"]
HUB_FIELDS = {"channel": channel_names, "presence": st.one_of(st.booleans(), json_values),
              "data": json_values, "id": json_values, "ticket": json_values,
              "except": json_values, "channels": json_values}
HUB_TYPE_FIELDS = {"subscribe": ("channel", "presence"), "unsubscribe": ("channel",),
                   "publish": ("channel", "data"), "members": ("channel",), "ping": ("id",),
                   "auth": ("ticket",)}


def as_text(document, ensure_ascii):
    """JSON text a client can send: a lone surrogate travels escaped."""
    text = json.dumps(document, ensure_ascii=ensure_ascii)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(document)
    return text


@st.composite
def hub_messages(draw):
    """Messages as a client sends them: mostly objects with a type and some
    of the hub's fields, each any JSON value; sometimes anything; sometimes
    a plausible conversation about one channel (so that every handler runs
    past its checks)."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return [draw(st.text(max_size=30))]  # not JSON, or JSON but not an object
    if shape == 1:
        return [as_text(draw(json_values), draw(st.booleans()))]
    if shape == 2:
        channel = draw(st.sampled_from(["room:1", "room:2", "room:é"]))
        kinds = ["subscribe"] + draw(st.lists(st.sampled_from(
            ["subscribe", "members", "publish", "unsubscribe"]), max_size=4))
        return [as_text({"type": kind, "channel": channel, "data": draw(json_values),
                         "presence": draw(st.booleans())}, draw(st.booleans()))
                for kind in kinds]
    kind = draw(st.one_of(st.sampled_from(HUB_TYPES), st.sampled_from(HUB_TYPES), json_values))
    message = {"type": kind}
    # The fields this type reads, each usually there; then any others.
    for name in HUB_TYPE_FIELDS.get(kind, ()) if isinstance(kind, str) else ():
        if draw(st.integers(0, 4)):
            message[name] = draw(HUB_FIELDS[name])
    for name in draw(st.lists(st.sampled_from(sorted(HUB_FIELDS)), max_size=2, unique=True)):
        message[name] = draw(HUB_FIELDS[name])
    return [as_text(message, draw(st.booleans()))]


def answers_in(transport):
    """The hub's answers a session was sent (not the channel traffic of the
    other sessions: join and leave events, messages)."""
    return [answer for answer in (json.loads(payload) for _, payload in
                                  server_frames(transport.value()))
            if answer["type"] not in ("join", "leave", "message")]


class HubSessions(HubTestCase):
    """A Hub on a real Redis, and real WebSocket sessions on StringTransports."""

    def setUp(self):
        d = super().setUp()

        def started(_):
            # Examples run one after the other without the reactor: the
            # Redis answers to a whole run are read after it, so the
            # timeout must cover the run.
            self.node = self.start_node(engine_timeout=60)
            self.hub, self.server, self.factory = self.node.hub, self.node.server, self.node.factory
        return d.addCallback(started)

    def open_session(self, channels=("room:*",)):
        return super().open_session(self.node, channels=channels)

    def lose(self, session, transport):
        lose(session, transport)

    def wait_for(self, condition, timeout=10.0):
        return run(until(condition, timeout))


class HubFuzzTests(HubSessions):
    """Every message type of the hub with arbitrary values in every field,
    through a real session to the hub: each message is answered (an error
    for bad input), and the session is never closed for it."""

    @defer.inlineCallbacks
    def test_every_message_is_answered_and_never_closes_the_session(self):
        sessions = []

        @settings(FUZZ, max_examples=400)
        @given(st.lists(st.one_of(hub_messages(), st.binary(max_size=8).map(lambda b: [b])),
                        min_size=1, max_size=3).map(lambda lists: sum(lists, [])))
        @example([json.dumps({"type": kind, "channel": "room:1", "id": 1})
                  for kind in ["subscribe", "members", "publish", "unsubscribe", "ping"]])
        def send(messages):
            session, transport = self.open_session()
            sessions.append((session, transport, messages))
            for message in messages:
                if isinstance(message, bytes):
                    session.dataReceived(client_frame(OP_BINARY, message))
                else:
                    session.dataReceived(client_frame(OP_TEXT, message))
                answers = server_frames(transport.value())
                assert all(opcode == OP_TEXT for opcode, _ in answers), answers
                assert session.connection.state is OPEN, answers[-1:]

        send()
        # publish and members are answered once Redis has answered.
        yield self.wait_for(lambda: all(len(answers_in(transport)) >= len(messages)
                                        for _, transport, messages in sessions))
        kinds = set()
        reasons = collections.Counter()
        for session, transport, messages in sessions:
            answers = answers_in(transport)
            self.assertEqual(len(answers), len(messages), (messages, answers))
            kinds.update(answer["type"] for answer in answers)
            reasons.update(answer.get("reason") for answer in answers)
            self.assertIs(session.connection.state, OPEN)
            self.lose(session, transport)
        self.assertEqual(kinds, {"error", "subscribed", "unsubscribed", "published", "members",
                                 "pong"}, reasons)

    @defer.inlineCallbacks
    def test_an_auth_message_with_any_ticket_closes_with_4401_and_nothing_else(self):
        sessions = []

        @settings(FUZZ, max_examples=200)
        @given(st.one_of(json_values, st.text(any_character, max_size=300)),
               st.lists(hub_messages(), max_size=2).map(lambda lists: sum(lists, [])))
        def send(ticket, after):
            dispatcher = self.factory.buildProtocol(None)
            # Each from an address of its own: past 30 failed tickets from
            # one, the node would refuse its next handshake (429) instead.
            n = len(sessions)
            transport = StringTransport(peerAddress=IPv4Address(
                "TCP", "127.1.%d.%d" % (n // 250, n % 250 + 1), 50000))
            dispatcher.makeConnection(transport)
            dispatcher.dataReceived(upgrade_request())
            transport.clear()
            session = transport.protocol
            sessions.append((session, transport))
            self.addCleanup(self.lose, session, transport)
            session.dataReceived(client_frame(OP_TEXT, as_text(
                {"type": "auth", "ticket": ticket}, False)))
            for message in after:  # queued until the ticket is redeemed
                session.dataReceived(client_frame(OP_TEXT, message))

        send()
        yield self.wait_for(lambda: all(transport.value() for _, transport in sessions))
        for session, transport in sessions:
            (opcode, payload), = server_frames(transport.value())
            self.assertEqual(opcode, OP_CLOSE)
            self.assertEqual(payload[:2], (4401).to_bytes(2, "big"), payload)
            self.assertFalse(session.ready)


# --------------------------------------------- sessions (the Twisted adapters)

def new_server():
    server = Server(EchoHandler(), ServerSettings(max_message_size=300, max_bad_lines=3),
                    Clock())
    return server, ListenerFactory(server)


def open_on(factory, request):
    dispatcher = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 50000))
    dispatcher.makeConnection(transport)
    dispatcher.dataReceived(request)
    return transport


FIREPRESENCE_REQUEST = b"OPTIONS / HTTP/1.1\r\nHost: x\r\nUpgrade: firepresence\r\n\r\n"
control_lines = st.builds(
    lambda kind, fields, ascii_only: as_text(dict(fields, type=kind), ascii_only) + "\n",
    st.sampled_from(["ping", "pong", "close", "message"]),
    st.dictionaries(st.sampled_from(["id", "code", "reason"]),
                    st.one_of(json_values, st.integers(0, 5000)), max_size=3),
    st.booleans()).map(lambda line: line.encode("utf-8"))


@FUZZ
@given(cuts_of(st.lists(st.one_of(control_lines, control_lines, line_bytes),
                        max_size=6).map(b"".join), max_cuts=8))
def test_a_firepresence_session_answers_any_lines_with_lines(cuts):
    _, chunks = cuts
    _, factory = new_server()
    transport = open_on(factory, FIREPRESENCE_REQUEST)
    session = transport.protocol
    head, _, _ = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    transport.clear()
    for chunk in chunks:
        session.dataReceived(chunk)  # never raises
    lines = transport.value().split(b"\n")
    assert lines[-1] == b""
    documents = [json.loads(line.decode("utf-8")) for line in lines[:-1]]
    assert all(isinstance(document, dict) for document in documents)
    closes = [document for document in documents if document.get("type") == "close"]
    assert len(closes) <= 1 and (not closes or documents[-1] is closes[0])
    if closes:
        assert closes[0]["code"] in range(1000, 5000)
        assert transport.disconnecting


@FUZZ
@given(cuts_of(frame_streams, max_cuts=8), st.booleans())
def test_a_websocket_session_answers_any_frames_with_frames(cuts, deflate):
    _, chunks = cuts
    server, factory = new_server()
    if deflate:
        server.settings.handshake = HandshakeConfig(extensions=[PerMessageDeflate()])
    transport = open_on(factory, upgrade_request(
        extra=["Sec-WebSocket-Extensions: permessage-deflate"] if deflate else []))
    session = transport.protocol
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    transport.clear()
    for chunk in chunks:
        session.dataReceived(chunk)  # never raises
    frames = server_frames(transport.value())
    assert all(opcode in (OP_TEXT, OP_BINARY, OP_PONG, OP_CLOSE) for opcode, _ in frames)
    if any(opcode == OP_CLOSE for opcode, _ in frames):
        assert frames[-1][0] == OP_CLOSE
        assert transport.disconnecting


# ------------------------------------------------------------- regressions
# Inputs the fuzzing above found to break something, kept as plain tests.

class HubRegressionTests(HubSessions):
    def send(self, session, transport, *documents):
        transport.clear()
        for document in documents:
            session.dataReceived(client_frame(OP_TEXT, json.dumps(document)))
        return answers_in(transport)

    def test_a_type_that_is_a_list_or_an_object_is_an_unknown_type_not_a_crash(self):
        # Found by the hub fuzz: {"type": []} closed the session with 1011
        # (a list is no dictionary key).
        session, transport = self.open_session()
        self.assertEqual(self.send(session, transport, {"type": []}, {"type": {"a": 1}}),
                         [{"type": "error", "reason": "unknown message type"}] * 2)
        self.assertIs(session.connection.state, OPEN)

    def test_unsubscribe_or_members_of_a_channel_that_is_not_a_string_is_an_error(self):
        # Found by the hub fuzz: a list or object as the channel of
        # unsubscribe or members closed the session with 1011.
        session, transport = self.open_session()
        self.assertEqual(
            self.send(session, transport, {"type": "unsubscribe", "channel": ["room:1"]},
                      {"type": "members", "channel": {"room:1": True}}),
            [{"type": "error", "reason": "not subscribed", "request": "unsubscribe"},
             {"type": "error", "reason": "subscribe to a channel to see its members",
              "request": "members"}])
        self.assertIs(session.connection.state, OPEN)

    @defer.inlineCallbacks
    def test_a_lone_surrogate_escape_anywhere_in_a_message_is_answered_with_an_error(self):
        # Found by the hub fuzz: "\ud800" decodes to a string with no UTF-8
        # form. A ping's id echoed in the pong closed the session with 1011;
        # a publish's data failed in the Redis client, unanswered.
        session, transport = self.open_session()
        refusal = {"type": "error",
                   "reason": "message is not Unicode text: it escapes a lone surrogate"}
        self.assertEqual(self.send(session, transport,
                                   {"type": "ping", "id": "\ud800"},
                                   {"type": "publish", "channel": "room:1", "data": ["a\udfff"]},
                                   {"type": "\udbff"}),
                         [refusal] * 3)
        # A surrogate pair is a character like any other.
        self.send(session, transport, {"type": "publish", "channel": "room:1",
                                       "data": "\ud83d\ude00"})
        yield self.wait_for(lambda: answers_in(transport))
        self.assertEqual(answers_in(transport)[0]["type"], "published")

    @defer.inlineCallbacks
    def test_an_auth_ticket_with_a_lone_surrogate_closes_with_4401(self):
        # Found by the auth fuzz: hashing the ticket for Redis failed, the
        # failure's log line failed too, and the session waited for the
        # auth timeout.
        transport = open_on(self.factory, upgrade_request())
        transport.clear()
        transport.protocol.dataReceived(client_frame(OP_TEXT, '{"type":"auth","ticket":"\\ud800"}'))
        yield self.wait_for(lambda: transport.value())
        (opcode, payload), = server_frames(transport.value())
        self.assertEqual((opcode, payload[:2]), (OP_CLOSE, (4401).to_bytes(2, "big")))
        self.lose(transport.protocol, transport)


def test_a_firepresence_ping_whose_id_has_a_lone_surrogate_is_answered_escaped():
    # Found by the firepresence session fuzz: encoding the pong raised out
    # of dataReceived.
    _, factory = new_server()
    transport = open_on(factory, FIREPRESENCE_REQUEST)
    transport.clear()
    transport.protocol.dataReceived(b'{"type":"ping","id":["\\ud800",1]}\n')
    assert transport.value() == b'{"type":"pong","id":["\\ud800",1]}\n'
    assert json.loads(transport.value()) == {"type": "pong", "id": ["\ud800", 1]}


def test_a_websocket_document_with_a_lone_surrogate_is_sent_escaped():
    _, factory = new_server()
    transport = open_on(factory, upgrade_request())
    transport.clear()
    assert transport.protocol.send_document({"echo": "\udc00é"})
    (_, payload), = server_frames(transport.value())
    assert payload == b'{"echo":"\\udc00\\u00e9"}'


class HubJSONTests(HubSessions):
    """L-1: a message nested too deep, or holding NaN, is answered with an
    error naming why; the session stays open and nothing is logged as a
    failure of the hub."""

    def test_json_no_reader_agrees_on_is_answered_with_an_error(self):
        session, transport = self.open_session()
        for text in ("[" * 100000 + "]" * 100000,
                     '{"type": "publish", "channel": "room:1", "data": NaN}'):
            transport.clear()
            session.dataReceived(client_frame(OP_TEXT, text))
            (opcode, payload), = server_frames(transport.value())
            answer = json.loads(payload)
            self.assertEqual(answer["type"], "error")
            self.assertTrue(answer["reason"].startswith("message is not JSON Presence takes"),
                            answer)
        self.assertIs(session.connection.state, OPEN)
        self.assertEqual(self.flushLoggedErrors(), [])
