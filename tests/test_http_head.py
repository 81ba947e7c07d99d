"""Reading one HTTP/1.1 request head (presence.httphead), rule by rule.

Each test names the rule it checks and shows the bytes that go in.
"""

import pytest

from presence.wire.httphead import HeadError, HeadReader, error_response, parse_head

UPGRADE_HEAD = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def refusal(data, **limits):
    """The HeadError raised while feeding ``data`` whole to a new reader."""
    with pytest.raises(HeadError) as caught:
        HeadReader(**limits).feed(data)
    return caught.value


def feed_bytewise(reader, data):
    """Feed ``data`` one byte at a time; the first non-None result, or None."""
    for i in range(len(data)):
        result = reader.feed(data[i:i + 1])
        if result is not None:
            return result
    return None


# -------------------------------------------------------- complete heads


def test_a_complete_head_is_returned_with_the_bytes_after_it():
    head, rest = HeadReader().feed(UPGRADE_HEAD + b"\x81\x85first frame")

    assert head.method == "GET"
    assert head.target == "/chat"
    assert head.version == (1, 1)
    assert head.get("host") == "server.example.com"
    assert rest == b"\x81\x85first frame"


def test_nothing_follows_the_head_gives_empty_rest():
    head, rest = HeadReader().feed(UPGRADE_HEAD)

    assert head.get("sec-websocket-version") == "13"
    assert rest == b""


def test_an_incomplete_head_returns_none():
    reader = HeadReader()

    assert reader.feed(b"GET /chat HTTP/1.1\r\nHost: a\r\n") is None
    assert reader.buffered == len(b"GET /chat HTTP/1.1\r\nHost: a\r\n")


def test_a_head_fed_one_byte_at_a_time_is_read_when_its_last_byte_arrives():
    reader = HeadReader()
    for i in range(len(UPGRADE_HEAD) - 1):
        assert reader.feed(UPGRADE_HEAD[i:i + 1]) is None

    head, rest = reader.feed(UPGRADE_HEAD[-1:])

    assert head.target == "/chat"
    assert head.fields == parse_head(UPGRADE_HEAD[:-4]).fields
    assert rest == b""


@pytest.mark.parametrize("split", range(1, len(UPGRADE_HEAD) + 6))
def test_a_head_split_anywhere_reads_the_same_with_the_same_rest(split):
    data = UPGRADE_HEAD + b"extra"
    reader = HeadReader()

    first = reader.feed(data[:split])
    if first is None:
        head, rest = reader.feed(data[split:])
    else:
        head, rest = first
        rest += data[split:]

    assert head.fields == parse_head(UPGRADE_HEAD[:-4]).fields
    assert rest == b"extra"


def test_the_reader_starts_afresh_after_returning_a_head():
    reader = HeadReader()
    reader.feed(UPGRADE_HEAD)

    assert reader.buffered == 0
    head, rest = reader.feed(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head.target == "/again"


def test_an_empty_line_before_the_request_line_is_ignored():
    # RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF)
    # received prior to the request-line.
    head, rest = HeadReader().feed(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")

    assert (head.method, head.target) == ("GET", "/")
    assert head.get("host") == "a"
    assert rest == b""


def test_parse_head_ignores_any_number_of_leading_empty_lines():
    head = parse_head(b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a")

    assert (head.method, head.target) == ("GET", "/")
    assert head.get("host") == "a"


def test_a_head_of_only_empty_lines_is_refused_with_400():
    error = refusal(b"\r\n\r\n")

    assert error.status == 400
    assert error.reason == "empty request"


def test_a_head_with_no_fields_is_read():
    head, rest = HeadReader().feed(b"GET / HTTP/1.1\r\n\r\n")

    assert head.fields == []


# ----------------------------------------------------------------- fields


def test_field_names_are_lower_cased_and_values_stripped():
    head, _ = HeadReader().feed(
        b"GET / HTTP/1.1\r\nHOST:   a.example  \r\nX-Mixed-Case:\tvalue\t\r\n\r\n")

    assert head.fields == [("host", "a.example"), ("x-mixed-case", "value")]


def test_an_empty_field_value_is_an_empty_string():
    head, _ = HeadReader().feed(b"GET / HTTP/1.1\r\nX-Empty:\r\n\r\n")

    assert head.get("x-empty") == ""


def test_field_values_are_decoded_as_latin_1():
    head, _ = HeadReader().feed(b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\n\r\n")

    assert head.get("x-name") == "caf\u00e9"


def test_get_all_returns_every_value_of_a_field_in_order():
    head, _ = HeadReader().feed(
        b"GET / HTTP/1.1\r\nAccept: a\r\nHost: h\r\naccept: b, c\r\n\r\n")

    assert head.get_all("accept") == ["a", "b, c"]
    assert head.get_all("missing") == []


def test_get_joins_repeated_fields_with_comma_space():
    head, _ = HeadReader().feed(
        b"GET / HTTP/1.1\r\nAccept: a\r\nHost: h\r\naccept: b, c\r\n\r\n")

    assert head.get("accept") == "a, b, c"
    assert head.get("host") == "h"


def test_get_of_an_absent_field_returns_the_default():
    head, _ = HeadReader().feed(b"GET / HTTP/1.1\r\n\r\n")

    assert head.get("origin") is None
    assert head.get("origin", "none") == "none"


def test_a_colon_inside_a_value_belongs_to_the_value():
    head, _ = HeadReader().feed(b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")

    assert head.get("host") == "example.com:8080"


# ------------------------------------------------------------------ limits


def test_a_head_growing_past_max_size_without_its_end_is_refused_with_431():
    error = refusal(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 100, max_size=64)

    assert error.status == 431
    assert error.kind == "head_too_large"


def test_a_head_past_max_size_is_refused_as_soon_as_the_limit_is_crossed():
    reader = HeadReader(max_size=64)
    data = b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 100

    assert reader.feed(data[:64]) is None
    with pytest.raises(HeadError) as caught:
        reader.feed(data[64:65])
    assert caught.value.status == 431
    assert caught.value.kind == "head_too_large"


def test_a_complete_head_longer_than_max_size_is_refused_with_431():
    data = b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 100 + b"\r\n\r\n"

    error = refusal(data, max_size=64)

    assert error.status == 431
    assert error.kind == "head_too_large"


def test_a_head_of_exactly_max_size_is_accepted():
    head = b"GET / HTTP/1.1\r\nHost: a"  # the head without its final CRLF CRLF

    result = HeadReader(max_size=len(head)).feed(head + b"\r\n\r\n")

    assert result is not None
    assert result[0].get("host") == "a"


def test_the_size_limit_does_not_depend_on_how_the_bytes_arrive():
    # The same head is accepted whole (previous test); TCP may deliver it a
    # byte at a time, and the verdict must be the same.
    head = b"GET / HTTP/1.1\r\nHost: a"

    result = feed_bytewise(HeadReader(max_size=len(head)), head + b"\r\n\r\n")

    assert result is not None
    assert result[0].get("host") == "a"


@pytest.mark.parametrize("excess", range(-4, 5))
def test_heads_around_the_limit_get_one_verdict_whole_or_byte_by_byte(excess):
    limit = 64
    start = b"GET / HTTP/1.1\r\nX-Pad: "
    head = start + b"p" * (limit + excess - len(start))
    assert len(head) == limit + excess
    data = head + b"\r\n\r\n"

    verdicts = []
    for feed in (lambda reader: reader.feed(data), lambda reader: feed_bytewise(reader, data)):
        try:
            result = feed(HeadReader(max_size=limit))
        except HeadError as error:
            verdicts.append(error.status)
        else:
            verdicts.append("accepted" if result is not None else None)

    assert verdicts == ["accepted" if excess <= 0 else 431] * 2


def test_more_fields_than_max_fields_are_refused_with_431():
    data = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"

    error = refusal(data, max_fields=2)

    assert error.status == 431
    assert error.kind == "head_too_large"


def test_exactly_max_fields_are_accepted():
    head, _ = HeadReader(max_fields=3).feed(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")

    assert [name for name, _ in head.fields] == ["a", "b", "c"]


# ------------------------------------------------------- malformed heads


@pytest.mark.parametrize("request_line", [
    b"GET /",                      # no version
    b"GET / HTTP/1.1 extra",       # trailing garbage
    b"GET  / HTTP/1.1",            # two spaces
    b"GET / http/1.1",             # version is case-sensitive
    b"GET / HTTP/1",               # no minor version
    b"GET / HTTP/11.1",            # two-digit major
    b"G(T / HTTP/1.1",             # method is not a token
    b"GET /a b HTTP/1.1",          # space in the target
    b"GET /\x7f HTTP/1.1",         # DEL in the target
    b"\x00GET / HTTP/1.1",
])
def test_a_malformed_request_line_is_refused_with_400(request_line):
    error = refusal(request_line + b"\r\nHost: a\r\n\r\n")

    assert error.status == 400
    assert error.kind == "malformed_head"


def test_an_http_major_version_other_than_1_is_refused_with_505():
    error = refusal(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")

    assert error.status == 505
    assert "2.0" in error.reason


def test_http_1_0_is_read_and_left_to_the_handshake():
    head, _ = HeadReader().feed(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")

    assert head.version == (1, 0)


def test_bare_lf_line_endings_are_refused_with_400():
    error = refusal(b"GET / HTTP/1.1\nHost: a\n\n")

    assert error.status == 400
    assert "CRLF" in error.reason


def test_a_bare_lf_inside_a_crlf_head_is_refused_with_400():
    error = refusal(b"GET / HTTP/1.1\r\nHost: a\nX-Smuggled: b\r\n\r\n")

    assert error.status == 400


def test_a_bare_lf_terminator_fed_byte_by_byte_is_refused_with_400():
    with pytest.raises(HeadError) as caught:
        feed_bytewise(HeadReader(), b"GET / HTTP/1.1\r\nHost: a\n\n")

    assert caught.value.status == 400


@pytest.mark.parametrize("fold", [b" continued", b"\tcontinued"])
def test_obsolete_line_folding_is_refused_with_400(fold):
    error = refusal(b"GET / HTTP/1.1\r\nX-Folded: first\r\n" + fold + b"\r\nHost: a\r\n\r\n")

    assert error.status == 400
    assert "folding" in error.reason


@pytest.mark.parametrize("line", [b"Host : a", b"Host\t: a"])
def test_whitespace_between_field_name_and_colon_is_refused_with_400(line):
    error = refusal(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n")

    assert error.status == 400
    assert "field name" in error.reason


@pytest.mark.parametrize("line", [b": no name", b"Ho(st: a", b"H\xe9st: a"])
def test_a_field_name_that_is_not_a_token_is_refused_with_400(line):
    error = refusal(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n")

    assert error.status == 400


def test_a_field_without_a_colon_is_refused_with_400():
    error = refusal(b"GET / HTTP/1.1\r\nHost a\r\n\r\n")

    assert error.status == 400
    assert "colon" in error.reason


@pytest.mark.parametrize("char", [b"\x00", b"\x01", b"\x08", b"\x0b", b"\x0c", b"\r", b"\x1f",
                                  b"\x7f"])
def test_control_characters_in_a_field_value_are_refused_with_400(char):
    error = refusal(b"GET / HTTP/1.1\r\nX-Bad: a" + char + b"b\r\n\r\n")

    assert error.status == 400
    assert "control character" in error.reason


def test_a_tab_inside_a_field_value_is_allowed():
    head, _ = HeadReader().feed(b"GET / HTTP/1.1\r\nX-Tab: a\tb\r\n\r\n")

    assert head.get("x-tab") == "a\tb"


def test_a_tls_client_hello_on_the_plain_port_is_refused_at_its_first_bytes():
    client_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"

    error = refusal(client_hello)

    assert error.status == 400
    assert error.kind == "tls_on_plain_port"


def test_a_tls_client_hello_is_recognised_from_its_first_byte_alone():
    error = refusal(b"\x16")

    assert error.kind == "tls_on_plain_port"


def test_head_error_str_is_status_and_reason():
    error = HeadError(400, "malformed request line")

    assert str(error) == "400 malformed request line"
    assert error.kind == "malformed_head"


# ------------------------------------------------------------ the refusal


def test_error_response_is_a_plain_text_refusal_that_closes_the_connection():
    data = error_response(431, "request head larger than 8192 bytes")

    assert data == (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 36\r\n"
        b"Connection: close\r\n"
        b"\r\n"
        b"request head larger than 8192 bytes\n"
    )


def test_error_response_content_length_counts_utf_8_bytes_of_the_body():
    data = error_response(400, "caf\u00e9")

    head, _, body = data.partition(b"\r\n\r\n")
    assert body == "caf\u00e9\n".encode("utf-8")
    assert b"Content-Length: %d\r\n" % len(body) in head + b"\r\n"


def test_error_response_puts_extra_fields_before_the_standard_ones():
    data = error_response(426, "use version 13", [("Sec-WebSocket-Version", "13")])

    assert data.startswith(
        b"HTTP/1.1 426 Upgrade Required\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n")
    assert data.endswith(b"Connection: close\r\n\r\nuse version 13\n")


def test_error_response_of_an_unknown_status_says_error():
    assert error_response(418, "x").startswith(b"HTTP/1.1 418 Error\r\n")


def test_a_bare_lf_anywhere_is_refused_before_the_head_ends():
    # "...\n\r\n" never contains CRLFCRLF: waiting would only end at the 431
    # limit or the handshake timeout.
    reader = HeadReader()

    with pytest.raises(HeadError) as caught:
        reader.feed(b"GET / HTTP/1.1\r\nHost: a\n\r\n")

    assert caught.value.status == 400
