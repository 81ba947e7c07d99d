"""JSON from clients, backends and Redis is JSON every reader agrees on
(presence/wire/jsontext.py): NaN and Infinity are refused (a browser's
JSON.parse would drop the message), so is nesting past 64 levels (encoding
it again would fail later, far from the cause), and each refusal is a clear
answer, never a traceback or a closed session."""

import json

import pytest

from presence.wire.jsontext import MAX_DEPTH, JSONError, decode_json, encode_json

from .helpers.transports import Harness


def nested(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text, reason", [
    ("NaN", "NaN and Infinity are not JSON"),
    ('{"a": [Infinity]}', "NaN and Infinity are not JSON"),
    ('{"a": -Infinity}', "NaN and Infinity are not JSON"),
    (nested(MAX_DEPTH + 1), "nested deeper than 64 levels"),
    (nested(100000), "nested deeper than 64 levels"),
    ('{"a": ' + nested(MAX_DEPTH) + "}", "nested deeper than 64 levels"),
    ("{'a': 1}", "not JSON"),
])
def test_what_decoding_refuses(text, reason):
    with pytest.raises(JSONError) as refused:
        decode_json(text)
    assert refused.value.reason == reason


def test_what_decoding_takes():
    assert decode_json(nested(MAX_DEPTH)) is not None
    assert decode_json('{"a": 1, "a": 2}') == {"a": 2}  # RFC 8259 leaves it to readers...
    with pytest.raises(JSONError):  # ...so requests to the API must not
        decode_json('{"a": 1, "a": 2}', unique_keys=True)


def test_nan_is_never_written():
    with pytest.raises(ValueError):
        encode_json({"rtt": float("nan")})


class HubInputTests(Harness):
    """The handler here echoes; the hub's own answers are tested through
    the hub's vocabulary (tests/test_fuzz.py); this checks the protocols'
    answers to such JSON on the wire."""

    def test_a_firepresence_line_nested_too_deep_is_an_error_line_not_a_dropped_session(self):
        session, transport = self.open_firepresence()
        session.dataReceived(nested(100000).encode() + b"\n" + b'{"id": NaN}\n' + b'{"ok":1}\n')
        lines = [json.loads(line) for line in transport.value().splitlines()]
        self.assertEqual(lines, [
            {"type": "error", "reason": "line is not JSON Presence takes: nested deeper than "
                                        "64 levels"},
            {"type": "error", "reason": "line is not JSON Presence takes: NaN and Infinity "
                                        "are not JSON"},
            {"ok": 1}])
        self.assertTrue(transport.connected and not transport.disconnecting)
