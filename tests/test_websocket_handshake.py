"""The server's opening handshake (RFC 6455 4.2.1, 4.2.2), rule by rule.

Every request is written out as the bytes a client sends; every answer is
checked as the bytes the server writes.
"""

import base64

import pytest

from presence.websocket.extensions import (
    Extension,
    ExtensionFactory,
    format_extension,
    negotiate_extensions,
    parse_extension_offers,
)
from presence.websocket.frames import RSV1
from presence.websocket.handshake import (
    Accepted,
    HandshakeConfig,
    Refused,
    accept_key,
    server_handshake,
)
from presence.wire.httphead import HeadReader

# The sample handshake of RFC 6455 1.2 / 4.2.2.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BASE_FIELDS = [
    b"Host: server.example.com",
    b"Upgrade: websocket",
    b"Connection: Upgrade",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
]


def request(*extra, without=(), request_line=b"GET /chat HTTP/1.1"):
    """The bytes of an upgrade request: ``request_line``, the fields of the
    RFC's sample request except those named in ``without`` (lower case),
    then the ``extra`` field lines."""
    lines = [request_line]
    lines.extend(line for line in BASE_FIELDS
                 if line.split(b":")[0].lower().decode() not in without)
    lines.extend(extra)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def handshake(data, config=None):
    head, rest = HeadReader().feed(data)
    assert rest == b""
    return server_handshake(head, config or HandshakeConfig())


def accepted(data, config=None):
    result = handshake(data, config)
    assert isinstance(result, Accepted), result
    return result


def refused(data, config=None):
    result = handshake(data, config)
    assert isinstance(result, Refused), "expected a refusal, got %r" % result.response
    return result


def response_fields(response):
    """The (name, value) lines of a response head, in order."""
    head = response.split(b"\r\n\r\n")[0].decode("latin-1")
    return [tuple(line.split(": ", 1)) for line in head.split("\r\n")[1:]]


def body_of(response):
    return response.split(b"\r\n\r\n", 1)[1]


def assert_refusal(result, status, kind, *words):
    """``result`` refuses with ``status`` and ``kind``; its body (the reason,
    as text/plain) contains each of ``words``."""
    assert result.status == status
    assert result.kind == kind
    body = body_of(result.response)
    assert body == (result.reason + "\n").encode("utf-8")
    for word in words:
        assert word in result.reason
    assert result.response.startswith(b"HTTP/1.1 %d " % status)
    assert ("Connection", "close") in response_fields(result.response)


# ------------------------------------------------------------- acceptance


def test_the_accept_key_of_the_rfc_sample_key():
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_the_rfc_sample_request_gets_exactly_the_rfc_101_response():
    result = accepted(
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n")

    assert result.response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"\r\n")
    assert result.path == "/chat"
    assert result.host == "server.example.com"
    assert result.origin == "http://example.com"
    assert result.subprotocol is None
    assert result.extensions == []


def test_the_accept_key_is_computed_from_the_request_key():
    key = base64.b64encode(bytes(range(16))).decode()

    result = accepted(request(b"Sec-WebSocket-Key: " + key.encode(),
                              without=("sec-websocket-key",)))

    assert ("Sec-WebSocket-Accept", accept_key(key)) in response_fields(result.response)
    assert accept_key(key) != RFC_ACCEPT


def test_accepted_reports_the_user_agent():
    result = accepted(request(b"User-Agent: test-client/1.0"))

    assert result.user_agent == "test-client/1.0"
    assert accepted(request()).user_agent is None


@pytest.mark.parametrize("upgrade", [b"websocket", b"WebSocket", b"WEBSOCKET", b"h2c, websocket",
                                     b"websocket , foo"])
def test_upgrade_is_read_as_a_case_insensitive_token_list(upgrade):
    accepted(request(b"Upgrade: " + upgrade, without=("upgrade",)))


@pytest.mark.parametrize("connection", [b"Upgrade", b"upgrade", b"keep-alive, Upgrade",
                                        b"Upgrade, keep-alive", b"keep-alive,UPGRADE"])
def test_connection_is_read_as_a_case_insensitive_token_list(connection):
    accepted(request(b"Connection: " + connection, without=("connection",)))


def test_connection_tokens_in_two_header_lines_are_combined():
    accepted(request(b"Connection: keep-alive", b"Connection: Upgrade", without=("connection",)))


def test_a_content_length_of_zero_is_not_a_body():
    accepted(request(b"Content-Length: 0"))


def test_http_versions_after_1_1_are_accepted():
    accepted(request(request_line=b"GET /chat HTTP/1.2"))


@pytest.mark.parametrize("target, path", [
    (b"/", "/"),
    (b"/chat?room=1&user=a", "/chat?room=1&user=a"),
    (b"ws://server.example.com/chat?room=1", "/chat?room=1"),
    (b"wss://server.example.com/chat", "/chat"),
    (b"http://server.example.com:8080/a/b", "/a/b"),
    (b"HTTPS://server.example.com/chat", "/chat"),
    (b"ws://server.example.com", "/"),
    (b"ws://server.example.com?room=1", "/?room=1"),
])
def test_the_path_is_taken_from_origin_form_or_absolute_form_targets(target, path):
    result = accepted(request(request_line=b"GET " + target + b" HTTP/1.1"))

    assert result.path == path


def test_an_absolute_form_target_with_a_query_and_no_path_gives_slash_and_the_query():
    # RFC 3986 3.2: the authority ends at the first "/", "?" or "#"; the
    # "/" inside the query is not the start of the path.
    result = accepted(request(request_line=b"GET ws://server.example.com?next=/admin HTTP/1.1"))

    assert result.path == "/?next=/admin"


# ---------------------------------------------------------------- refusals


def test_a_method_other_than_get_is_refused_with_400():
    result = refused(request(request_line=b"POST /chat HTTP/1.1"))

    assert_refusal(result, 400, "not_get", "GET", "POST")


def test_http_1_0_is_refused_with_400():
    result = refused(request(request_line=b"GET /chat HTTP/1.0"))

    assert_refusal(result, 400, "http_version", "HTTP/1.1")


@pytest.mark.parametrize("target", [b"*", b"server.example.com:80", b"ftp://example.com/chat"])
def test_a_target_that_is_neither_origin_form_nor_absolute_form_is_refused_with_400(target):
    result = refused(request(request_line=b"GET " + target + b" HTTP/1.1"))

    assert_refusal(result, 400, "bad_target", "request target")


def test_a_missing_host_is_refused_with_400():
    result = refused(request(without=("host",)))

    assert_refusal(result, 400, "host", "Host")


def test_two_host_fields_are_refused_with_400():
    result = refused(request(b"Host: other.example.com"))

    assert_refusal(result, 400, "host", "exactly one Host")


def test_an_empty_host_is_refused_with_400():
    result = refused(request(b"Host:", without=("host",)))

    assert_refusal(result, 400, "host", "Host")


@pytest.mark.parametrize("field", [b"Content-Length: 5", b"Transfer-Encoding: chunked",
                                   b"Transfer-Encoding: identity"])
def test_a_request_with_a_body_is_refused_with_400(field):
    result = refused(request(field))

    assert_refusal(result, 400, "body", "body")


def test_a_missing_upgrade_is_refused_with_400():
    result = refused(request(without=("upgrade",)))

    assert_refusal(result, 400, "no_upgrade", "Upgrade: websocket")


def test_an_upgrade_to_another_protocol_is_refused_with_400():
    result = refused(request(b"Upgrade: h2c", without=("upgrade",)))

    assert_refusal(result, 400, "no_upgrade", "Upgrade: websocket")


def test_a_missing_connection_is_refused_with_400():
    result = refused(request(without=("connection",)))

    assert_refusal(result, 400, "no_connection_upgrade", "Connection: Upgrade")


def test_a_connection_without_the_upgrade_token_is_refused_with_400():
    result = refused(request(b"Connection: keep-alive", without=("connection",)))

    assert_refusal(result, 400, "no_connection_upgrade", "Connection: Upgrade")


def test_a_missing_version_is_refused_with_400():
    result = refused(request(without=("sec-websocket-version",)))

    assert_refusal(result, 400, "missing_version", "Sec-WebSocket-Version")
    assert ("Sec-WebSocket-Version", "13") in response_fields(result.response)


@pytest.mark.parametrize("version", [b"8", b"7", b"14", b"13, 8"])
def test_an_unsupported_version_is_refused_with_426_naming_version_13(version):
    result = refused(request(b"Sec-WebSocket-Version: " + version,
                             without=("sec-websocket-version",)))

    assert_refusal(result, 426, "unsupported_version", version.decode(), "13")
    assert result.response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in result.response


def test_the_version_8_refusal_is_exactly_these_bytes():
    result = refused(request(b"Sec-WebSocket-Version: 8", without=("sec-websocket-version",)))

    body = b"unsupported Sec-WebSocket-Version 8; this server speaks 13\n"
    assert result.response == (
        b"HTTP/1.1 426 Upgrade Required\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n"
        b"Connection: close\r\n"
        b"\r\n" % len(body)) + body


def test_two_version_fields_are_refused_even_if_one_is_13():
    result = refused(request(b"Sec-WebSocket-Version: 8"))

    assert result.status == 426


def test_a_missing_key_is_refused_with_400():
    result = refused(request(without=("sec-websocket-key",)))

    assert_refusal(result, 400, "bad_key", "Sec-WebSocket-Key")


@pytest.mark.parametrize("key", [
    b"not base64!!!!!!!!!!!!!!",
    b"dGhlIHNhbXBsZSBub25jZQ",            # padding missing
    b"dGhlIHNhbXBsZSBub25jZQ==x",         # trailing garbage
    base64.b64encode(b"x" * 15),          # 15 bytes
    base64.b64encode(b"x" * 17),          # 17 bytes
    b"",
])
def test_a_key_that_is_not_base64_of_16_bytes_is_refused_with_400(key):
    result = refused(request(b"Sec-WebSocket-Key: " + key, without=("sec-websocket-key",)))

    assert_refusal(result, 400, "bad_key", "Sec-WebSocket-Key", "16 bytes")


def test_two_keys_are_refused_with_400():
    result = refused(request(b"Sec-WebSocket-Key: " + base64.b64encode(b"y" * 16)))

    assert_refusal(result, 400, "bad_key", "exactly one Sec-WebSocket-Key")


# ------------------------------------------------------------------ origin

ALLOWLIST = HandshakeConfig(origins=["https://app.example.com", "http://localhost:8080/"])


def test_an_origin_not_in_the_allowlist_is_refused_with_403():
    result = refused(request(b"Origin: https://evil.example.net"), ALLOWLIST)

    assert_refusal(result, 403, "origin", "https://evil.example.net")
    assert result.response.startswith(b"HTTP/1.1 403 Forbidden\r\n")


@pytest.mark.parametrize("origin", [
    b"https://app.example.com",
    b"HTTPS://App.Example.COM",
    b"https://app.example.com/",
    b"http://localhost:8080",
    b"http://LOCALHOST:8080/",
])
def test_an_allowed_origin_is_compared_case_insensitively_ignoring_a_trailing_slash(origin):
    result = accepted(request(b"Origin: " + origin), ALLOWLIST)

    assert result.origin == origin.decode()


@pytest.mark.parametrize("origin", [
    b"http://app.example.com",            # another scheme
    b"https://app.example.com:8443",      # another port
    b"https://app.example.com.evil.net",  # a suffix
    b"null",
])
def test_an_origin_differing_in_scheme_port_or_host_is_refused(origin):
    result = refused(request(b"Origin: " + origin), ALLOWLIST)

    assert result.status == 403


def test_a_request_without_origin_is_accepted_with_an_allowlist():
    result = accepted(request(), ALLOWLIST)

    assert result.origin is None


def test_without_an_allowlist_any_origin_is_accepted():
    result = accepted(request(b"Origin: https://anything.example.org"), HandshakeConfig())

    assert result.origin == "https://anything.example.org"


def test_an_empty_allowlist_means_any_origin():
    accepted(request(b"Origin: https://anything.example.org"), HandshakeConfig(origins=[]))


# ------------------------------------------------------------ subprotocols

CHAT = HandshakeConfig(subprotocols=["chat.v2", "chat.v1"])


def test_the_servers_preference_order_chooses_the_subprotocol():
    result = accepted(request(b"Sec-WebSocket-Protocol: chat.v1, chat.v2"), CHAT)

    assert result.subprotocol == "chat.v2"
    assert result.response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat.v2\r\n"
        b"\r\n")


def test_subprotocols_offered_in_several_header_lines_are_combined():
    result = accepted(request(b"Sec-WebSocket-Protocol: other",
                              b"Sec-WebSocket-Protocol: chat.v1"), CHAT)

    assert result.subprotocol == "chat.v1"


def test_no_subprotocol_header_when_the_client_offered_none():
    result = accepted(request(), CHAT)

    assert result.subprotocol is None
    assert b"Sec-WebSocket-Protocol" not in result.response


def test_no_subprotocol_header_when_no_offer_matches():
    result = accepted(request(b"Sec-WebSocket-Protocol: mqtt, CHAT.V2"), CHAT)

    assert result.subprotocol is None
    assert b"Sec-WebSocket-Protocol" not in result.response


def test_no_subprotocol_header_when_the_server_has_none():
    result = accepted(request(b"Sec-WebSocket-Protocol: chat.v1"))

    assert result.subprotocol is None
    assert b"Sec-WebSocket-Protocol" not in result.response


# -------------------------------------------------------------- extensions


class ModeExtension(Extension):
    """A test extension: no transformation, answers with its mode."""

    name = "x-mode"
    rsv = RSV1

    def __init__(self, mode):
        self.mode = mode

    def response_params(self):
        return [("mode", self.mode)]


class ModeFactory(ExtensionFactory):
    """Accepts an ``x-mode`` offer whose only parameter is ``mode`` with a
    value in ``modes``; declines any other offer."""

    name = "x-mode"

    def __init__(self, modes=("fast",)):
        self.modes = modes
        self.offers = []

    def accept(self, params):
        self.offers.append(params)
        if len(params) != 1 or params[0][0] != "mode" or params[0][1] not in self.modes:
            return None
        return ModeExtension(params[0][1])


class OtherRsv1Factory(ExtensionFactory):
    """Accepts any ``x-other`` offer, claiming RSV1 as well."""

    name = "x-other"

    def accept(self, params):
        extension = Extension()
        extension.name = "x-other"
        extension.rsv = RSV1
        return extension


def test_without_extension_factories_no_extension_is_accepted():
    result = accepted(request(
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"))

    assert result.extensions == []
    assert b"Sec-WebSocket-Extensions" not in result.response


def test_the_first_acceptable_offer_is_accepted_and_answered():
    factory = ModeFactory()
    result = accepted(
        request(b"Sec-WebSocket-Extensions: "
                b"x-mode; mode=slow, x-mode; mode=fast, x-mode; mode=fast"),
        HandshakeConfig(extensions=[factory]))

    assert factory.offers == [[("mode", "slow")], [("mode", "fast")]]
    assert [ext.mode for ext in result.extensions] == ["fast"]
    assert result.response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Extensions: x-mode; mode=fast\r\n"
        b"\r\n")


def test_offers_of_unconfigured_extensions_are_skipped():
    result = accepted(
        request(b"Sec-WebSocket-Extensions: permessage-deflate",
                b"Sec-WebSocket-Extensions: x-mode; mode=fast"),
        HandshakeConfig(extensions=[ModeFactory()]))

    assert ("Sec-WebSocket-Extensions", "x-mode; mode=fast") in response_fields(result.response)


def test_no_extension_header_when_every_offer_is_declined():
    result = accepted(request(b"Sec-WebSocket-Extensions: x-mode; mode=slow"),
                      HandshakeConfig(extensions=[ModeFactory()]))

    assert result.extensions == []
    assert b"Sec-WebSocket-Extensions" not in result.response


def test_a_quoted_token_value_is_unquoted():
    result = accepted(request(b'Sec-WebSocket-Extensions: x-mode; mode="fast"'),
                      HandshakeConfig(extensions=[ModeFactory()]))

    assert [ext.mode for ext in result.extensions] == ["fast"]


@pytest.mark.parametrize("header", [
    b"x-mode; =1",
    b'x-mode; mode="fa st"',
    b"x-mode; mode=",
    b"x-mode;",
    b"x-mode mode=fast",
    b'x-mode; mode="fast',
])
def test_a_malformed_extension_header_is_declined_without_refusing(header):
    factory = ModeFactory()
    result = accepted(request(b"Sec-WebSocket-Extensions: " + header),
                      HandshakeConfig(extensions=[factory]))

    assert result.extensions == []
    assert b"Sec-WebSocket-Extensions" not in result.response
    assert factory.offers == []


def test_a_malformed_header_line_declines_the_well_formed_lines_too():
    result = accepted(request(b"Sec-WebSocket-Extensions: x-mode; mode=fast",
                              b"Sec-WebSocket-Extensions: x-mode; =1"),
                      HandshakeConfig(extensions=[ModeFactory()]))

    assert result.extensions == []


def test_two_extensions_claiming_the_same_rsv_bit_are_not_both_accepted():
    header, extensions = negotiate_extensions(
        ["x-mode; mode=fast, x-other"], [ModeFactory(), OtherRsv1Factory()])

    assert header == "x-mode; mode=fast"
    assert [ext.name for ext in extensions] == ["x-mode"]


def test_negotiation_without_offers_accepts_nothing():
    assert negotiate_extensions([], [ModeFactory()]) == (None, [])


@pytest.mark.parametrize("values, offers", [
    (["permessage-deflate"], [("permessage-deflate", [])]),
    (["permessage-deflate; client_max_window_bits"],
     [("permessage-deflate", [("client_max_window_bits", None)])]),
    (["permessage-deflate; client_max_window_bits=10; server_no_context_takeover"],
     [("permessage-deflate", [("client_max_window_bits", "10"),
                              ("server_no_context_takeover", None)])]),
    (["a, b; x=1"], [("a", []), ("b", [("x", "1")])]),
    (["a", "b"], [("a", []), ("b", [])]),
    (["A; X=Value"], [("a", [("x", "Value")])]),
    ([" a ;\tx = 1 ,  b\t"], [("a", [("x", "1")]), ("b", [])]),
    (['a; x="10"'], [("a", [("x", "10")])]),
    (['a; x="1\\0"'], [("a", [("x", "10")])]),
    (["a, , b,"], [("a", []), ("b", [])]),
    ([""], []),
])
def test_parse_extension_offers_follows_the_9_1_grammar(values, offers):
    assert parse_extension_offers(values) == offers


@pytest.mark.parametrize("value", [
    "a; =1",
    'a; x="b c"',
    'a; x=""',
    'a; x="1',
    "a; x=",
    "a;",
    "a b",
    "a; x=1 2",
    '"a"',
    "a; x=b/c",
])
def test_parse_extension_offers_refuses_what_the_grammar_does_not_allow(value):
    with pytest.raises(ValueError):
        parse_extension_offers([value])


def test_format_extension_writes_bare_and_valued_parameters():
    assert format_extension("permessage-deflate", [("server_no_context_takeover", None),
                                                   ("client_max_window_bits", "10")]) \
        == "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
    assert format_extension("x", []) == "x"
