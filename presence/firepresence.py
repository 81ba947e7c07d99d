"""firepresence: the raw protocol for clients that are not browsers (sans-I/O).

A client asks for it on the same port as WebSocket::

    OPTIONS / HTTP/1.1
    Host: presence.example.com
    Upgrade: firepresence
    X-Auth-Token: <ticket>          (optional)

and is answered ``101 Switching Protocols`` with ``Upgrade: firepresence/1.0``.
From then on both directions carry one JSON object per line, each line ended
by LF. JSON escapes a newline inside a string, so a reader can split on LF and
give each line to a plain JSON parser. docs/protocol.md specifies it whole.

This module is the pure part: the handshake decision and the line reader.
Nothing here does I/O or reads a clock.
"""

import json

from .httphead import error_response, response, split_list

__all__ = [
    "PROTOCOL", "VERSION", "UPGRADE", "FirepresenceAccepted", "firepresence_handshake",
    "LineReader", "Document", "BadLine", "encode_line", "asks_for_firepresence",
]

PROTOCOL = "firepresence"
VERSION = "1.0"
#: The value of the Upgrade field in the server's answer.
UPGRADE = "%s/%s" % (PROTOCOL, VERSION)

_ACCEPT = response(101, "Switching Protocols",
                   [("Upgrade", UPGRADE), ("Connection", "Upgrade")])


def _upgrade_tokens(head):
    tokens = []
    for value in head.get_all("upgrade"):
        tokens.extend(item.lower() for item in split_list(value))
    return tokens


def asks_for_firepresence(head):
    """Whether the request's Upgrade field names firepresence (any version)."""
    return any(token == PROTOCOL or token.startswith(PROTOCOL + "/")
               for token in _upgrade_tokens(head))


class FirepresenceAccepted:
    """The handshake succeeded: write ``response``, then lines."""

    __slots__ = ("response", "path", "host", "auth_token", "user_agent")

    def __init__(self, path, host, auth_token, user_agent):
        self.response = _ACCEPT
        self.path = path
        self.host = host
        self.auth_token = auth_token
        self.user_agent = user_agent


class FirepresenceRejected:
    __slots__ = ("status", "kind", "reason", "response")

    def __init__(self, status, kind, reason, fields=()):
        self.status = status
        self.kind = kind
        self.reason = reason
        self.response = error_response(status, reason, fields)


def firepresence_handshake(head):
    """Validate a firepresence request (see docs/protocol.md)."""
    if head.method != "OPTIONS":
        return FirepresenceRejected(
            400, "not_options", "a firepresence handshake must use OPTIONS, not %s" % head.method)
    if head.version < (1, 1):
        return FirepresenceRejected(400, "http_version",
                                    "a firepresence handshake needs HTTP/1.1 or later")
    if not head.target.startswith("/"):
        return FirepresenceRejected(400, "bad_target", "malformed request target %r" % head.target)
    hosts = head.get_all("host")
    if len(hosts) != 1 or not hosts[0]:
        return FirepresenceRejected(400, "host",
                                    "a firepresence handshake needs exactly one Host header")
    if head.get_all("transfer-encoding") or any(v != "0" for v in head.get_all("content-length")):
        return FirepresenceRejected(400, "body", "a firepresence handshake has no request body")
    versions = [token.partition("/")[2] for token in _upgrade_tokens(head)
                if token == PROTOCOL or token.startswith(PROTOCOL + "/")]
    if not any(version in ("", VERSION) for version in versions):
        return FirepresenceRejected(426, "unsupported_version",
                                    "unsupported firepresence version %s; this server speaks %s"
                                    % (", ".join(versions), VERSION),
                                    [("Upgrade", UPGRADE), ("Connection", "Upgrade")])
    tokens = head.get_all("x-auth-token")
    if len(tokens) > 1:
        return FirepresenceRejected(400, "auth_token", "more than one X-Auth-Token")
    return FirepresenceAccepted(head.target, hosts[0], tokens[0] if tokens else None,
                                head.get("user-agent"))


class Document:
    """A line that is a JSON object: ``document`` parsed, ``text`` as sent."""

    __slots__ = ("document", "text")

    def __init__(self, document, text):
        self.document = document
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Document) and (self.document, self.text) == (
            other.document, other.text)

    def __repr__(self):
        return "Document(%r)" % (self.text,)


class BadLine:
    """A line that cannot be accepted; ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason):
        self.reason = reason

    def __eq__(self, other):
        return isinstance(other, BadLine) and self.reason == other.reason

    def __repr__(self):
        return "BadLine(%r)" % (self.reason,)


_decode = json.JSONDecoder().decode


class LineReader:
    """Splits a byte stream on LF into JSON objects, holding at most
    ``max_line`` bytes of an unfinished line: a longer line is reported once
    as a :class:`BadLine` and the rest of it is skipped up to its LF.

    Empty lines (and lines of only whitespace) are ignored: a client may send
    them to keep a connection alive. A CR before the LF is ignored too."""

    __slots__ = ("max_line", "_buffer", "_skipping")

    def __init__(self, max_line):
        self.max_line = max_line
        self._buffer = b""
        self._skipping = False

    def receive_data(self, data):
        """Return the events the bytes complete, in order."""
        events = []
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif end - start > self.max_line:
                events.append(BadLine("line longer than %d bytes" % self.max_line))
            else:
                event = self._line(data[start:end])
                if event is not None:
                    events.append(event)
            start = end + 1
        rest = len(data) - start
        if rest:
            if self._skipping:
                pass
            elif rest > self.max_line:
                events.append(BadLine("line longer than %d bytes" % self.max_line))
                self._skipping = True
            else:
                self._buffer = data[start:] if start else data
        return events

    @staticmethod
    def _line(line):
        if not line.strip():
            return None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return BadLine("line is not valid UTF-8")
        try:
            document = _decode(text)
        except ValueError:
            return BadLine("line is not JSON")
        if not isinstance(document, dict):
            return BadLine("line is not a JSON object")
        return Document(document, text.rstrip("\r"))


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":")).encode


def encode_line(document):
    """One JSON object as a line: compact, UTF-8, ended by LF. JSON never
    emits a raw newline outside whitespace, and the encoder adds none.

    A string holding a lone surrogate (a client's ``"\\ud800"``, echoed
    back in a pong) has no UTF-8 form: such a document goes out with every
    non-ASCII character escaped, which any JSON reader decodes to the same
    value."""
    try:
        return _encode(document).encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return _encode_ascii(document).encode("ascii") + b"\n"
