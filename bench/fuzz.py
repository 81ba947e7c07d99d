"""Coverage-guided fuzzing of the parsers that read what clients send, with
atheris (libFuzzer for Python), for a bounded time.

usage: python bench/fuzz.py [TARGET ...] [--seconds N] [--out DIR]

TARGET is ``frames`` (the WebSocket frame parser, with and without
permessage-deflate) or ``head`` (the request-head reader and the handshake
decisions made on the head); both by default, one after the other, each for
``--seconds`` (default 120). Atheris is a development tool, not a dependency
of Presence: ``pip install atheris`` into the venv first (docs/fuzzing.md).

Each input is turned into a stream and the places where it is cut into
reads; a target checks what tests/test_fuzz.py checks (events or a clean
protocol error, never another exception; the same verdict however the bytes
arrive). Any failure stops the run and leaves the input in
``DIR/TARGET/crash-*``: replay it with ``python bench/fuzz.py TARGET --replay
FILE``, and add it to tests/test_fuzz.py as a regression test. The corpus
(``DIR/TARGET/corpus``, seeded with valid inputs) carries over to the next
run. The summary line of each target gives its executions and crashes.
"""

import argparse
import os
import re
import subprocess
import sys
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TARGETS = ("frames", "head")


# ------------------------------------------------------------------ targets

def decode(data):
    """An input as ``(flags, chunks, stream)``: its first byte is flags for
    the target, its second the number of cuts (0-8), then two bytes per cut
    (where the stream is cut into reads), then the stream. (Atheris's
    FuzzedDataProvider takes integers from the end of the input, which
    would eat the end of a seed's stream.)"""
    if len(data) < 2:
        return 0, [data], data
    flags, count = data[0], data[1] % 9
    stream = data[2 + 2 * count:]
    points = sorted({int.from_bytes(data[index:index + 2], "big") % (len(stream) + 1)
                     for index in range(2, 2 + 2 * count, 2)})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    return flags, chunks, stream


def seed(flags, stream, *points):
    """An input for ``decode``."""
    return bytes((flags, len(points))) + b"".join(
        point.to_bytes(2, "big") for point in points) + stream


def frames_target():
    from presence.websocket.connection import ServerConnection
    from presence.websocket.deflate import PerMessageDeflate
    from presence.websocket.frames import OP_CLOSE, encode_close_payload, encode_frame
    from presence.wire.events import (
        CLOSED,
        BinaryMessage,
        CloseReceived,
        Ping,
        Pong,
        ProtocolError,
        TextMessage,
    )

    limits = (125, 300, 4096, 1 << 20)
    events_allowed = (TextMessage, BinaryMessage, Ping, Pong, CloseReceived, ProtocolError)

    def connection(limit, deflate, takeover):
        extensions = []
        if deflate:
            config = PerMessageDeflate(client_context_takeover=takeover)
            extensions.append(config.accept([("client_max_window_bits", None)]))
        return ServerConnection(max_message_size=limit, extensions=extensions)

    def feed(conn, chunks):
        events = []
        for chunk in chunks:
            conn.receive_data(chunk)
            for event in conn.events():
                if events and isinstance(events[-1], (ProtocolError, CloseReceived)):
                    raise AssertionError("an event after the end: %r" % (event,))
                if not isinstance(event, events_allowed):
                    raise AssertionError("not an event: %r" % (event,))
                events.append(event)
        out = conn.data_to_send()
        if events and isinstance(events[-1], ProtocolError):
            error = events[-1]
            assert error.code in (1002, 1007, 1008, 1009), error
            assert conn.state is CLOSED
            assert out == encode_frame(OP_CLOSE, encode_close_payload(error.code, error.reason))
        elif not (events and isinstance(events[-1], CloseReceived)):
            assert conn.state is not CLOSED and out == b""
        for event in events:
            if isinstance(event, TextMessage):
                assert len(event.text.encode("utf-8")) <= conn.max_message_size
            elif isinstance(event, BinaryMessage):
                assert len(event.data) <= conn.max_message_size
        return events

    def test_one_input(data):
        flags, chunks, stream = decode(data)
        limit = limits[flags & 3]
        deflate = bool(flags & 4)
        takeover = bool(flags & 8)
        whole = feed(connection(limit, deflate, takeover), [stream])
        split = feed(connection(limit, deflate, takeover), chunks)
        if deflate:
            # Which fault of a garbage compressed message shows first may
            # depend on how much of it had arrived (tests/test_fuzz.py).
            def kept(events):
                return [event for event in events if not isinstance(event, ProtocolError)]
            assert kept(split) == kept(whole), (whole, split)
            assert isinstance((whole or [None])[-1], ProtocolError) == \
                isinstance((split or [None])[-1], ProtocolError)
        else:
            assert split == whole, (whole, split)

    return test_one_input


def frames_seeds():
    from presence.websocket.frames import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, RSV1
    from presence.websocket.mask import unmask_pure

    def frame(opcode, payload=b"", fin=True, rsv=0, mask=b"\x37\xfa\x21\x3d"):
        first = (0x80 if fin else 0) | rsv | opcode
        n = len(payload)
        if n < 126:
            header = bytes((first, 0x80 | n))
        elif n < 65536:
            header = bytes((first, 0xFE)) + n.to_bytes(2, "big")
        else:
            header = bytes((first, 0xFF)) + n.to_bytes(8, "big")
        return header + mask + unmask_pure(mask, payload)

    def deflated(data):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]

    hello = "Hello, wörld".encode("utf-8")
    return [
        seed(0, frame(OP_TEXT, hello) + frame(OP_CLOSE, b"\x03\xe8bye")),
        seed(3, frame(OP_BINARY, b"ab", fin=False) + frame(OP_PING, b"p") + frame(0, b"cd")
             + frame(OP_CLOSE), 5, 9),
        seed(4, frame(OP_TEXT, deflated(hello * 20), rsv=RSV1), 7),
        seed(12, frame(OP_TEXT, deflated(hello)[:3], fin=False, rsv=RSV1)
             + frame(0, deflated(hello)[3:]) + frame(OP_TEXT, deflated(b"x" * 5000), rsv=RSV1),
             3, 11, 20),
        seed(1, frame(OP_BINARY, b"y" * 200) + frame(OP_TEXT, b"\xce\xba\xed\xa0\x80")),
    ]


def head_target():
    from presence.firepresence.handshake import firepresence_handshake
    from presence.net.dispatch import choose_session
    from presence.websocket.deflate import PerMessageDeflate
    from presence.websocket.handshake import Accepted, HandshakeConfig, Refused, server_handshake
    from presence.wire.httphead import HeadError, HeadReader, RequestHead

    configs = [HandshakeConfig(),
               HandshakeConfig(subprotocols=["chat", "v2"], origins=["https://example.com"],
                               extensions=[PerMessageDeflate()])]
    sizes = (64, 512, 8192)

    def read(chunks, max_size):
        reader = HeadReader(max_size=max_size)
        for index, chunk in enumerate(chunks):
            try:
                result = reader.feed(chunk)
            except HeadError as error:
                assert error.status in (400, 431, 505), error
                return ("refused",)
            if result is not None:
                head, rest = result
                assert isinstance(head, RequestHead)
                return ("head", head, rest + b"".join(chunks[index + 1:]))
        return ("incomplete",)

    def test_one_input(data):
        flags, chunks, raw = decode(data)
        max_size = sizes[flags % 3]
        config = configs[(flags >> 2) & 1]
        whole = read([raw], max_size)
        split = read(chunks, max_size)
        if whole[0] == "head":
            assert split[0] == "head", (whole, split)
            a, b = whole[1], split[1]
            assert (a.method, a.target, a.version, a.fields, whole[2]) == \
                (b.method, b.target, b.version, b.fields, split[2])
            head = a
            choose_session(head)
            outcome = server_handshake(head, config)
            assert isinstance(outcome, (Accepted, Refused))
            assert firepresence_handshake(head).response.startswith(b"HTTP/1.1 ")
        else:
            assert split == whole, (whole, split)

    return test_one_input


def head_seeds():
    upgrade = (b"GET /chat?ticket=abc HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n"
               b"Sec-WebSocket-Protocol: v2, chat\r\n"
               b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
    firepresence = (b"OPTIONS / HTTP/1.1\r\nHost: h\r\nUpgrade: firepresence/1.0\r\n"
                    b"X-Auth-Token: t\r\n\r\n{\"type\":\"ping\"}\n")
    return [seed(6, upgrade), seed(2, upgrade, 16, 200), seed(0, firepresence, 40),
            seed(1, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"), seed(0, b"\x16\x03\x01\x02\x00")]


FACTORIES = {"frames": (frames_target, frames_seeds, 8192),
             "head": (head_target, head_seeds, 4096)}


# ------------------------------------------------------------------ driver

def run_one(target, seconds, out, replay=None):
    """In this process: instrument Presence, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["presence"]):
        import presence.net.dispatch  # noqa: F401  (the handshakes, the head, the frames)
        import presence.websocket.connection  # noqa: F401
        import presence.websocket.deflate  # noqa: F401
    make_target, make_seeds, max_len = FACTORIES[target]
    test_one_input = make_target()
    if replay is not None:
        with open(replay, "rb") as stream:
            test_one_input(stream.read())
        print("replayed %s: no failure" % replay)
        return
    directory = os.path.join(out, target)
    corpus = os.path.join(directory, "corpus")
    os.makedirs(corpus, exist_ok=True)
    for index, seed in enumerate(make_seeds()):
        with open(os.path.join(corpus, "seed-%d" % index), "wb") as stream:
            stream.write(seed)
    atheris.Setup([sys.argv[0], corpus, "-max_total_time=%d" % seconds,
                   "-max_len=%d" % max_len, "-timeout=10", "-rss_limit_mb=4096",
                   "-print_final_stats=1", "-artifact_prefix=" + directory + "/"],
                  test_one_input)
    atheris.Fuzz()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help="frames, head (default: both)")
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "fuzz"))
    parser.add_argument("--replay", help="run one input (a crash file) through TARGET")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    targets = args.targets or list(TARGETS)
    for target in targets:
        if target not in TARGETS:
            parser.error("unknown target %r (choose from %s)" % (target, ", ".join(TARGETS)))
    if args.child or args.replay:
        run_one(targets[0], args.seconds, args.out, args.replay)
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        sys.exit("atheris is not installed: .venv/bin/pip install atheris (docs/fuzzing.md)")
    failed = False
    for target in targets:
        os.makedirs(os.path.join(args.out, target), exist_ok=True)
        log_path = os.path.join(args.out, target, "fuzz.log")
        started = time.monotonic()
        with open(log_path, "w") as log:
            code = subprocess.call([sys.executable, os.path.abspath(__file__), target,
                                    "--child", "--seconds", str(args.seconds), "--out", args.out],
                                   stdout=log, stderr=subprocess.STDOUT)
        elapsed = time.monotonic() - started
        with open(log_path) as log:
            text = log.read()
        runs = re.findall(r"stat::number_of_executed_units: (\d+)", text)
        coverage = re.findall(r"cov: (\d+) ft: (\d+)", text)
        crashes = sorted(name for name in os.listdir(os.path.join(args.out, target))
                         if name.startswith(("crash-", "timeout-", "oom-", "leak-")))
        corpus_size = len(os.listdir(os.path.join(args.out, target, "corpus")))
        print("%s: %d s, %s executions (%s/s), coverage %s edges / %s features, corpus %d, "
              "exit %d, crashes: %s" % (
                  target, round(elapsed), runs[-1] if runs else "?",
                  int(int(runs[-1]) / elapsed) if runs else "?",
                  coverage[-1][0] if coverage else "?", coverage[-1][1] if coverage else "?",
                  corpus_size, code, ", ".join(crashes) or "none"), flush=True)
        if code != 0 or crashes:
            failed = True
            print("  log: %s" % log_path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
