"""Reading one HTTP/1.1 request head (RFC 9112 sections 2-5), with limits.

Pure: bytes in, a parsed head (or a precise refusal) out. Every listener reads
exactly one request head per connection before the connection becomes a
WebSocket (or, later, another upgraded protocol), so this is the only HTTP
parsing the client port does. It is deliberately strict: a presence server has
no reason to accept the ambiguous forms (obs-fold, whitespace before the colon,
bare LF line ends, a body on an upgrade request) that request smuggling relies
on.
"""

import re

__all__ = ["HeadError", "RequestHead", "HeadReader", "DEFAULT_MAX_HEAD_SIZE", "Refused",
           "error_response"]

#: Bytes of request line plus header fields accepted before refusing with 431.
#: Browsers send 0.5-2 KiB for a WebSocket upgrade (cookies are the bulk); 8 KiB
#: is what common proxies default to, and bounds the memory a connection that
#: has not yet been authenticated can hold.
DEFAULT_MAX_HEAD_SIZE = 8192

#: Header fields accepted before refusing with 431.
DEFAULT_MAX_HEADER_COUNT = 100

# RFC 9110 5.6.2: token = 1*tchar
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9112 3: request-line = method SP request-target SP HTTP-version
_REQUEST_LINE = re.compile(
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\Z")
# Bytes allowed in a request head: HTAB, CR and LF (as CRLF, counted
# separately), SP, VCHAR and obs-text (RFC 9110 5.5, RFC 9112 2.2).
_HEAD_CHARS = bytes([9, 10, 13]) + bytes(range(32, 127)) + bytes(range(128, 256))


class HeadError(Exception):
    """The request head cannot be accepted; answer with ``status`` and say
    why (``reason``). ``kind`` is a fixed label for counting refusals."""

    def __init__(self, status, reason, kind="malformed_head"):
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.kind = kind

    def __str__(self):
        return "%d %s" % (self.status, self.reason)


class RequestHead:
    """A parsed request head. Field names are lower-cased; values are text
    decoded as ISO-8859-1 (RFC 9110 5.5) with surrounding whitespace removed.
    ``fields`` keeps them in order; lookups by name use an index."""

    __slots__ = ("method", "target", "version", "fields", "index")

    def __init__(self, method, target, version, fields, index=None):
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields
        if index is None:
            index = {}
            for name, value in fields:
                if name in index:
                    index[name].append(value)
                else:
                    index[name] = [value]
        #: Field name -> its values in order.
        self.index = index

    def get_all(self, name):
        """Every value of field ``name`` (lower-case), in order."""
        return self.index.get(name, [])

    def get(self, name, default=None):
        """The value of field ``name``; several occurrences are joined with
        ", " as RFC 9110 5.3 allows for list-valued fields."""
        values = self.index.get(name)
        if not values:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def __repr__(self):
        return "<RequestHead %s %s HTTP/%d.%d>" % (
            self.method, self.target, self.version[0], self.version[1])


class HeadReader:
    """Accumulates bytes until one complete request head has arrived.

    ``feed(data)`` returns ``None`` while the head is incomplete, then
    ``(head, rest)`` where ``rest`` holds whatever bytes followed the head.
    It raises :class:`HeadError` as soon as the head is known to be
    unacceptable, including when it grows past ``max_size`` bytes.
    """

    __slots__ = ("max_size", "max_fields", "_buffer")

    def __init__(self, max_size=DEFAULT_MAX_HEAD_SIZE, max_fields=DEFAULT_MAX_HEADER_COUNT):
        self.max_size = max_size
        self.max_fields = max_fields
        self._buffer = b""

    @property
    def buffered(self):
        """Bytes received so far (for accounting)."""
        return len(self._buffer)

    def feed(self, data):
        searched = max(0, len(self._buffer) - 3)
        buffer = self._buffer + data if self._buffer else data
        end = buffer.find(b"\r\n\r\n", searched)
        if end < 0:
            if buffer.count(b"\n") != buffer.count(b"\r\n"):
                # A bare LF: this head would never end with CRLFCRLF.
                raise HeadError(400, "request head lines must end with CRLF")
            # The limit counts the head without its final CRLFCRLF, whose
            # first bytes may already be here; refuse as soon as the head is
            # certainly too long, however the bytes arrive.
            if len(buffer) - _partial_terminator(buffer) > self.max_size:
                raise HeadError(431, "request head larger than %d bytes" % self.max_size,
                                "head_too_large")
            if buffer[:1] in (b"\x16", b"\x80"):
                # A TLS ClientHello (or SSLv2 hello) on a plain-text port: say
                # so rather than waiting for a head that never comes.
                raise HeadError(400, "TLS handshake received on a plain-text port",
                                "tls_on_plain_port")
            self._buffer = buffer
            return None
        if end > self.max_size:
            raise HeadError(431, "request head larger than %d bytes" % self.max_size,
                            "head_too_large")
        self._buffer = b""
        return parse_head(buffer[:end], self.max_fields), buffer[end + 4:]


def _partial_terminator(buffer):
    """How many bytes at the end of ``buffer`` could begin a CRLFCRLF."""
    if buffer.endswith(b"\r\n\r"):
        return 3
    if buffer.endswith(b"\r\n"):
        return 2
    return 1 if buffer.endswith(b"\r") else 0


def parse_head(raw, max_fields=DEFAULT_MAX_HEADER_COUNT):
    """Parse a request head without its final empty line."""
    # RFC 9110 5.5: field values are VCHAR, obs-text, SP and HTAB; lines end
    # with CRLF. Anything else anywhere in a head (a control character, a CR
    # or LF that is not part of a CRLF) is refused.
    crlf = raw.count(b"\r\n")
    if raw.translate(None, _HEAD_CHARS) or raw.count(b"\r") != crlf \
            or raw.count(b"\n") != crlf:
        _refuse_bad_characters(raw)
    lines = raw.decode("latin-1").split("\r\n")
    # RFC 9112 2.2: a server SHOULD ignore at least one empty line received
    # before the request-line.
    while lines and lines[0] == "":
        del lines[0]
    if not lines:
        raise HeadError(400, "empty request")
    match = _REQUEST_LINE.match(lines[0])
    if match is None:
        raise HeadError(400, "malformed request line")
    method, target, major, minor = match.groups()
    version = (int(major), int(minor))
    if version[0] != 1:
        raise HeadError(505, "HTTP version %d.%d not supported" % version, "http_version")
    if len(lines) - 1 > max_fields:
        raise HeadError(431, "more than %d header fields" % max_fields, "head_too_large")
    fields = []
    index = {}
    token = _TOKEN.match
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or token(name) is None:
            if line[:1] in (" ", "\t"):
                # RFC 9112 5.2: obsolete line folding; rejecting it is allowed.
                raise HeadError(400, "obsolete line folding in header field")
            if not colon:
                raise HeadError(400, "header field without a colon")
            # Includes whitespace between the name and the colon, which
            # RFC 9112 5.1 requires a server to reject with 400.
            raise HeadError(400, "malformed header field name")
        name = name.lower()
        value = value.strip(" \t")
        fields.append((name, value))
        if name in index:
            index[name].append(value)
        else:
            index[name] = [value]
    return RequestHead(method, target, version, fields, index)


def _refuse_bad_characters(raw):
    for line in raw.split(b"\r\n"):
        if b"\n" in line:
            raise HeadError(400, "request head lines must end with CRLF")
        name, colon, value = line.partition(b":")
        if colon and (value.translate(None, _HEAD_CHARS) or b"\r" in value) \
                and _TOKEN.match(name.decode("latin-1")) is not None:
            raise HeadError(400, "control character in header field %s" % name.decode("ascii"))
    raise HeadError(400, "control character in request head")


def split_list(value):
    """Elements of a comma-separated list field (RFC 9110 5.6.1), empty
    elements dropped."""
    return [item.strip(" \t") for item in value.split(",") if item.strip(" \t")]


def response(status, reason_phrase, fields=(), body=b""):
    """Serialise an HTTP/1.1 response head (and body) to bytes."""
    lines = ["HTTP/1.1 %d %s" % (status, reason_phrase)]
    lines.extend("%s: %s" % field for field in fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


#: Reason phrases for the statuses this server sends.
REASON_PHRASES = {
    101: "Switching Protocols",
    200: "OK",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def error_response(status, message, fields=()):
    """A refusal: status line, the extra ``fields``, and ``message`` as a
    plain-text body; the connection is closed after it."""
    body = (message + "\n").encode("utf-8")
    return response(
        status,
        REASON_PHRASES.get(status, "Error"),
        list(fields) + [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
        body,
    )


class Refused:
    """A request every protocol's handshake refuses: write ``response`` (an
    HTTP error with a plain-text body saying why) and close. ``reason`` is
    that one-line explanation; ``kind`` a fixed label for counting
    refusals (ServerStats.handshakes_refused)."""

    __slots__ = ("status", "kind", "reason", "response")

    def __init__(self, status, kind, reason, fields=()):
        self.status = status
        self.kind = kind
        self.reason = reason
        self.response = error_response(status, reason, fields)

    def __repr__(self):
        return "<Refused %d %s>" % (self.status, self.reason)
