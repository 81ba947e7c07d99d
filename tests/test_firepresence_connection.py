"""The firepresence core: the handshake decision and the line reader."""

import json

import pytest

from presence.firepresence.handshake import (
    FirepresenceAccepted,
    asks_for_firepresence,
    firepresence_handshake,
)
from presence.firepresence.lines import BadLine, Document, LineReader, encode_line
from presence.wire.httphead import HeadReader


def head(raw):
    result, rest = HeadReader().feed(raw)
    return result


REQUEST = (b"OPTIONS / HTTP/1.1\r\nHost: presence.example\r\nUpgrade: firepresence\r\n"
           b"X-Auth-Token: t0k3n\r\n\r\n")


def test_a_valid_request_is_answered_101_with_the_version():
    result = firepresence_handshake(head(REQUEST))
    assert isinstance(result, FirepresenceAccepted)
    assert result.response == (b"HTTP/1.1 101 Switching Protocols\r\n"
                               b"Upgrade: firepresence/1.0\r\nConnection: Upgrade\r\n\r\n")
    assert (result.path, result.host, result.auth_token) == ("/", "presence.example", "t0k3n")


@pytest.mark.parametrize("upgrade", ["firepresence", "FirePresence", "firepresence/1.0",
                                     "h2c, firepresence/1.0"])
def test_the_upgrade_token_is_case_insensitive_and_may_carry_the_version(upgrade):
    raw = REQUEST.replace(b"Upgrade: firepresence", b"Upgrade: " + upgrade.encode())
    assert asks_for_firepresence(head(raw))
    assert isinstance(firepresence_handshake(head(raw)), FirepresenceAccepted)


def test_the_auth_token_is_optional():
    raw = REQUEST.replace(b"X-Auth-Token: t0k3n\r\n", b"")
    assert firepresence_handshake(head(raw)).auth_token is None


def test_another_version_is_refused_with_426_naming_ours():
    result = firepresence_handshake(head(REQUEST.replace(b"firepresence", b"firepresence/2.0")))
    assert result.status == 426
    assert b"\r\nUpgrade: firepresence/1.0\r\n" in result.response
    assert result.response.endswith(
        b"unsupported firepresence version 2.0; this server speaks 1.0\n")


@pytest.mark.parametrize("raw, status, kind", [
    (REQUEST.replace(b"OPTIONS", b"GET"), 400, "not_options"),
    (REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"), 400, "http_version"),
    (REQUEST.replace(b"Host: presence.example\r\n", b""), 400, "host"),
    (REQUEST.replace(b"X-Auth", b"Content-Length: 3\r\nX-Auth"), 400, "body"),
    (REQUEST.replace(b"\r\n\r\n", b"\r\nX-Auth-Token: again\r\n\r\n"), 400, "auth_token"),
    (REQUEST.replace(b"OPTIONS /", b"OPTIONS *"), 400, "bad_target"),
])
def test_malformed_requests_are_refused_with_a_body(raw, status, kind):
    result = firepresence_handshake(head(raw))
    assert (result.status, result.kind) == (status, kind)
    assert result.response.endswith(result.reason.encode() + b"\n")


def test_lines_become_documents():
    reader = LineReader(1024)
    assert reader.receive_data(b'{"type":"ping","id":1}\n{"a":"\\n"}\r\n') == [
        Document({"type": "ping", "id": 1}, '{"type":"ping","id":1}'),
        Document({"a": "\n"}, '{"a":"\\n"}'),
    ]


def test_a_line_split_across_reads_is_reassembled():
    reader = LineReader(1024)
    line = b'{"type":"message","data":"h\xc3\xa9llo"}\n'
    events = []
    for i in range(len(line)):
        events += reader.receive_data(line[i:i + 1])
    assert events == [Document({"type": "message", "data": "héllo"}, line[:-1].decode())]


def test_blank_lines_are_ignored():
    assert LineReader(10).receive_data(b"\n  \n\r\n") == []


@pytest.mark.parametrize("line, reason", [
    (b"not json", "line is not JSON"),
    (b"[1, 2]", "line is not a JSON object"),
    (b'"text"', "line is not a JSON object"),
    (b'{"a": 1', "line is not JSON"),
    (b'{"a": "\xff"}', "line is not valid UTF-8"),
])
def test_lines_that_are_not_json_objects_are_bad(line, reason):
    reader = LineReader(1024)
    assert reader.receive_data(line + b'\n{"ok":1}\n') == [BadLine(reason),
                                                          Document({"ok": 1}, '{"ok":1}')]


def test_a_line_over_the_limit_is_reported_once_and_skipped_without_buffering():
    reader = LineReader(16)
    events = reader.receive_data(b'{"a":"' + b"x" * 40)
    assert events == [BadLine("line longer than 16 bytes")]
    assert reader._buffer == b""
    assert reader.receive_data(b"x" * 1000) == []
    assert reader.receive_data(b'xx"}\n{"b":2}\n') == [Document({"b": 2}, '{"b":2}')]


def test_a_complete_line_over_the_limit_is_bad():
    assert LineReader(8).receive_data(b'{"a":"123456"}\n') == [BadLine("line longer than 8 bytes")]


def test_encode_line_is_compact_utf8_with_newlines_escaped():
    line = encode_line({"type": "message", "data": "two\nlines é"})
    assert line == '{"type":"message","data":"two\\nlines é"}\n'.encode("utf-8")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {"type": "message", "data": "two\nlines é"}
