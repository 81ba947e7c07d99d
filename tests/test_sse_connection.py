"""The SSE core (presence/sse/connection.py) byte for byte: POST bodies in,
events out; messages, pings and the close event in, the stream's bytes out.
No Twisted, no clock (docs/protocol.md, "SSE"); and fuzzed, as
tests/test_fuzz.py fuzzes the other protocols' parsers."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from presence.sse.connection import SSEConnection, encode_event
from presence.sse.handshake import (
    PADDING,
    REQUEST,
    STREAM,
    Post,
    Preflight,
    Refused,
    StreamAccepted,
    asks_for_sse,
    request_decision,
    stream_handshake,
)
from presence.wire.events import (
    CLOSED,
    OPEN,
    CloseReceived,
    Malformed,
    Ping,
    Pong,
    ProtocolError,
    TextMessage,
)
from presence.wire.httphead import parse_head
from presence.wire.prepared import PreparedMessage


def head(text):
    return parse_head(text.rstrip("\n").replace("\n", "\r\n").encode("latin-1"))


def events(connection, *bodies):
    for body in bodies:
        connection.receive_data(body)
    return list(connection.events())


# ------------------------------------------------------------ downstream

def test_a_message_is_one_event_of_its_json():
    connection = SSEConnection(1024)
    assert connection.send_data(b'{"type":"hello"}', True) == b'data: {"type":"hello"}\n\n'
    assert connection.send_data(b"\x00", False) is None


def test_a_message_with_an_offset_sets_the_event_id():
    payload = b'{"type":"message","channel":"room:a","offset":42,"data":{"offset":7}}'
    assert encode_event(payload) == b"id: 42\ndata: " + payload + b"\n\n"
    # An "offset" only inside the data is not the message's.
    inner = b'{"type":"message","channel":"room:a","data":{"offset":7}}'
    assert encode_event(inner) == b"data: " + inner + b"\n\n"


def test_a_line_break_in_a_payload_becomes_several_data_lines():
    assert encode_event(b'{"a":\n1,\r\n"b":2}') == b'data: {"a":\ndata: 1,\ndata: "b":2}\n\n'


def test_a_fan_out_is_encoded_once_for_every_sse_session():
    message = PreparedMessage.text('{"type":"message","offset":3,"data":1}')
    first = SSEConnection(1024).send_prepared(message)
    assert first == b'id: 3\ndata: {"type":"message","offset":3,"data":1}\n\n'
    assert SSEConnection(1024).send_prepared(message) is first
    assert SSEConnection(1024).send_prepared(PreparedMessage.binary(b"x")) is None


def test_large_messages_go_out_in_parts_without_a_copy():
    payload = b'{"type":"message","offset":9,"data":"' + b"x" * 20000 + b'"}'
    parts = SSEConnection(1 << 20).send_data_parts(payload, True)
    assert parts[2] is payload
    assert b"".join(parts) == encode_event(payload)


def test_the_heartbeat_is_a_comment_and_a_ping_event():
    assert SSEConnection.heartbeat_ping(7) == (
        b': heartbeat\n\nevent: ping\ndata: {"type":"ping","id":7}\n\n', 7)


def test_the_server_close_is_a_close_event_and_the_last():
    connection = SSEConnection(1024)
    assert connection.send_close(4001, "kicked") == (
        b'event: close\ndata: {"type":"close","code":4001,"reason":"kicked"}\n\n')
    assert connection.state is CLOSED
    assert connection.send_close(1000, "again") == b""
    record = connection.connection_lost()
    assert (record.code, record.reason, record.initiated_by, record.clean) == (
        4001, "kicked", "server", True)


def test_a_stream_lost_without_a_close_is_1006_unclean():
    record = SSEConnection(1024).connection_lost()
    assert (record.code, record.reason, record.initiated_by, record.clean) == (
        1006, "stream closed without a close event", "client", False)


# -------------------------------------------------------------- upstream

def test_a_body_of_one_object_is_one_message_as_sent():
    connection = SSEConnection(1024)
    assert events(connection, b'{"type":"subscribe", "channel":"a"}') == [
        TextMessage('{"type":"subscribe", "channel":"a"}')]


def test_a_body_of_an_array_is_its_messages_in_order():
    connection = SSEConnection(1024)
    assert events(connection, b'[{"type":"a"},{"type":"ping","id":5},{"type":"pong","id":1}]') == [
        TextMessage('{"type":"a"}'),
        Ping(5, b'data: {"type":"pong","id":5}\n\n'),
        Pong(1)]


def test_bodies_that_are_not_json_objects_get_error_events_and_too_many_close_with_1007():
    connection = SSEConnection(16, max_bad_lines=4)
    got = events(connection, b"nope", b"[]", b"[1]", b'{"a":"' + b"x" * 20 + b'"}')
    assert got[:3] == [
        Malformed("body is not JSON", b'data: {"type":"error","reason":"body is not JSON"}\n\n'),
        Malformed("body is an empty array",
                  b'data: {"type":"error","reason":"body is an empty array"}\n\n'),
        Malformed("body is not a JSON object or an array of them",
                  b'data: {"type":"error","reason":"body is not a JSON object or an array of '
                  b'them"}\n\n')]
    assert got[3].reason == "body larger than 16 bytes"
    assert got[4] == ProtocolError(1007, "too many malformed messages")
    assert connection.data_to_send() == (
        b'event: close\ndata: {"type":"close","code":1007,"reason":"too many malformed '
        b'messages"}\n\n')
    assert connection.state is CLOSED


def test_a_client_close_is_answered_and_nothing_after_it_is_read():
    connection = SSEConnection(1024)
    got = events(connection, b'[{"type":"close","code":4000,"reason":"bye"},{"type":"late"}]',
                 b'{"type":"later"}')
    assert got == [CloseReceived(4000, "bye")]
    assert connection.data_to_send() == (
        b'event: close\ndata: {"type":"close","code":4000,"reason":""}\n\n')
    assert connection.peer_closed and connection.state is CLOSED
    record = connection.connection_lost()
    assert (record.code, record.initiated_by, record.clean) == (4000, "client", True)


def test_an_invalid_close_code_fails_the_session_with_1002():
    connection = SSEConnection(1024)
    assert events(connection, b'{"type":"close","code":1005}') == [
        ProtocolError(1002, "invalid close code")]


# -------------------------------------------------------------- requests

def test_which_requests_are_sse():
    assert asks_for_sse(head("GET /sse?ticket=t HTTP/1.1\nHost: h\n")) == STREAM
    assert asks_for_sse(head("POST /sse/abc-1/s3cret HTTP/1.1\nHost: h\n")) == REQUEST
    assert asks_for_sse(head("OPTIONS /sse/abc-1/s3cret HTTP/1.1\nHost: h\n")) == REQUEST
    assert asks_for_sse(head("OPTIONS /sse HTTP/1.1\nHost: h\n")) == REQUEST
    # Anything that asks for an upgrade is not SSE's (firepresence's OPTIONS).
    assert asks_for_sse(head("OPTIONS /sse HTTP/1.1\nHost: h\nUpgrade: firepresence\n")) is None
    assert asks_for_sse(head("GET /ssex HTTP/1.1\nHost: h\n")) is None
    assert asks_for_sse(head("GET / HTTP/1.1\nHost: h\n")) is None


def test_the_stream_answer_keeps_proxies_from_buffering_and_starts_with_padding():
    outcome = stream_handshake(head("GET /sse?ticket=T1 HTTP/1.1\nHost: h\n"
                                    "Accept: text/event-stream\nOrigin: https://app.example\n"))
    assert outcome.__class__ is StreamAccepted
    assert outcome.credential == ("ticket", "T1")
    assert outcome.response == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"X-Accel-Buffering: no\r\nConnection: close\r\n"
        b"Access-Control-Allow-Origin: https://app.example\r\nVary: Origin\r\n\r\n" + PADDING)
    assert PADDING.startswith(b":") and PADDING.endswith(b"\n\n") and len(PADDING) > 2048
    resumed = stream_handshake(head("GET /sse?resume=R1 HTTP/1.0\nAccept: text/event-stream\n"))
    assert resumed.credential == ("resume", "R1")


def test_a_stream_without_accept_event_stream_is_406_and_other_origins_403():
    refused = stream_handshake(head("GET /sse HTTP/1.1\nHost: h\nAccept: text/html\n"))
    assert (refused.__class__, refused.status) == (Refused, 406)
    assert refused.response.endswith(
        b"GET /sse answers a stream of events: send Accept: text/event-stream\n")
    refused = stream_handshake(head("GET /sse HTTP/1.1\nHost: h\nAccept: text/event-stream\n"
                                    "Origin: https://evil.example\n"),
                               frozenset({"https://app.example"}))
    assert (refused.status, refused.reason) == (403, "origin https://evil.example is not allowed")


def test_a_post_names_its_session_and_secret_and_is_bounded():
    post = request_decision(head("POST /sse/abc-1/s3cret HTTP/1.1\nHost: h\nContent-Length: 12\n"
                                 "Origin: https://app.example\n"), None, 100)
    assert post.__class__ is Post
    assert (post.session_id, post.secret, post.length, post.keep_alive) == (
        "abc-1", "s3cret", 12, True)
    assert post.accepted() == (b"HTTP/1.1 202 Accepted\r\n"
                               b"Access-Control-Allow-Origin: https://app.example\r\n"
                               b"Vary: Origin\r\nContent-Length: 0\r\n\r\n")
    assert post.unknown().status == 404
    too_large = request_decision(head("POST /sse/a/b HTTP/1.1\nHost: h\nContent-Length: 101\n"),
                                 None, 100)
    assert (too_large.status, too_large.reason) == (413, "request body larger than 100 bytes")
    chunked = request_decision(head("POST /sse/a/b HTTP/1.1\nHost: h\n"
                                    "Transfer-Encoding: chunked\n"), None, 100)
    assert chunked.status == 411
    assert request_decision(head("POST /sse/a HTTP/1.1\nHost: h\nContent-Length: 1\n"),
                            None, 100).status == 404
    closing = request_decision(head("POST /sse/a/b HTTP/1.0\nContent-Length: 1\n"), None, 100)
    assert not closing.keep_alive and b"Connection: close" in closing.accepted()


def test_a_preflight_is_answered_for_allowed_origins():
    preflight = request_decision(head(
        "OPTIONS /sse/a/b HTTP/1.1\nHost: h\nOrigin: https://app.example\n"
        "Access-Control-Request-Method: POST\n"), frozenset({"https://app.example"}), 100)
    assert preflight.__class__ is Preflight
    assert preflight.response == (
        b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: https://app.example\r\n"
        b"Vary: Origin\r\nAccess-Control-Allow-Methods: GET, POST\r\n"
        b"Access-Control-Allow-Headers: Content-Type\r\nAccess-Control-Max-Age: 600\r\n"
        b"Content-Length: 0\r\n\r\n")
    refused = request_decision(head("OPTIONS /sse/a/b HTTP/1.1\nHost: h\n"
                                    "Origin: https://evil.example\n"),
                               frozenset({"https://app.example"}), 100)
    assert refused.status == 403


def test_a_new_connection_is_open():
    assert SSEConnection(1).state is OPEN


# ------------------------------------------------------------------ fuzzing

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SSE_FIELDS = [b"Host: h", b"Accept: text/event-stream", b"Accept: text/html, */*",
              b"Accept: text/event-stream;q=0.9", b"Origin: https://app.example",
              b"Origin: https://evil.example", b"Content-Length: 12", b"Content-Length: 1000",
              b"Content-Length: x", b"Content-Length: 3", b"Transfer-Encoding: chunked",
              b"Connection: close", b"Connection: keep-alive", b"Upgrade: firepresence"]


@FUZZ
@given(st.sampled_from([b"GET", b"POST", b"OPTIONS"]),
       st.sampled_from([b"/sse", b"/sse?ticket=t", b"/sse?resume=", b"/sse/a/b", b"/sse/a",
                        b"/sse/a/b/c", b"/sse//", b"/sse/%00/x?ticket=1"]),
       st.sampled_from([b"1.1", b"1.0"]), st.lists(st.sampled_from(SSE_FIELDS), max_size=6),
       st.sampled_from([None, frozenset({"https://app.example"})]))
def test_every_sse_head_gets_its_decision_or_a_refusal(method, target, version, fields,
                                                       origins):
    head = parse_head(b"\r\n".join([method + b" " + target + b" HTTP/" + version] + fields))
    asked = asks_for_sse(head)
    if asked == STREAM:
        outcome = stream_handshake(head, origins)
        assert outcome.response.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 4"))
    elif asked == REQUEST:
        outcome = request_decision(head, origins, 100)
        assert isinstance(outcome, (Post, Preflight, Refused))
        if isinstance(outcome, Post):
            assert 0 <= outcome.length <= 100
            assert outcome.accepted().startswith(b"HTTP/1.1 202 ")
    else:
        path = target.split(b"?")[0]
        assert b"Upgrade" in b"".join(fields) or (method, path) == (b"POST", b"/sse") \
            or (method == b"GET" and path != b"/sse")


@FUZZ
@given(st.lists(st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b'{"type":"ping","id":[1]}', b'{"type":"pong"}', b'[{"type":"a"},2]',
                     b'{"type":"close","code":3000}', b'{"type":"close","code":"x"}',
                     b'[[]]', b'{"a":NaN}', b'"\\ud800"', b'{"type":"x","d":"\\ud800"}',
                     b"[" * 70 + b"]" * 70])), max_size=12))
def test_every_body_gives_events_or_a_clean_refusal(bodies):
    connection = SSEConnection(64, max_bad_lines=5)
    for body in bodies:
        connection.receive_data(body)
        for event in connection.events():
            assert isinstance(event, (TextMessage, Ping, Pong, CloseReceived, Malformed,
                                      ProtocolError))
            if isinstance(event, Malformed):
                assert event.answer.startswith(b'data: {"type":"error"')
    out = connection.data_to_send()
    assert out == b"" or out.startswith(b"event: close\n")
    assert connection.connection_lost().code in (1002, 1005, 1006, 1007, 3000)
