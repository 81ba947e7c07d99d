"""Which requests on a client port are SSE's, and the decisions on their
heads (docs/protocol.md, "SSE"):

- ``GET /sse?ticket=T`` with ``Accept: text/event-stream`` opens a stream
  (:func:`stream_handshake`): ``200`` and the headers that keep proxies
  from buffering it, or a refusal with a plain-text body;
- ``POST /sse/SESSION/SECRET`` carries messages upstream
  (:func:`request_decision`), its body at most ``--max-message-size``;
- ``OPTIONS`` on those paths is a CORS preflight, answered ``204``. An
  ``OPTIONS`` with ``Upgrade: firepresence`` is firepresence's, not this:
  nothing that asks for an upgrade is SSE's.

``--origin`` applies as it does to WebSocket: a request with an ``Origin``
not on the list is refused ``403``; an allowed one is named in
``Access-Control-Allow-Origin``, so that a page of another origin can read
the stream and its POSTs' answers (no cookie is needed: the secret in the
path is the capability).
"""

from urllib.parse import parse_qs, urlsplit

from ..wire.httphead import Refused, response, split_list

__all__ = ["STREAM_PATH", "STREAM", "REQUEST", "asks_for_sse", "stream_handshake",
           "request_decision", "keeps_alive", "StreamAccepted", "Refused", "Preflight",
           "Post", "PADDING", "STREAM_HEAD"]

#: The path of the stream; a session's POSTs go to STREAM_PATH/ID/SECRET.
STREAM_PATH = "/sse"
_POST_PREFIX = STREAM_PATH + "/"
#: What :func:`asks_for_sse` answers: the stream (a session), or one of
#: SSE's plain requests (a POST, a preflight).
STREAM = "stream"
REQUEST = "request"

#: The stream's first bytes: a comment of 2 KiB, so that a proxy (or an
#: old browser) that holds back a response's first bytes lets them go.
PADDING = b":" + b" " * 2048 + b"\n\n"

#: The stream's answer without its CORS fields.
STREAM_HEAD = [
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    # nginx (and proxies that read it) pass the response on as it comes
    # rather than buffering it.
    ("X-Accel-Buffering", "no"),
    # The response ends when the session does: its end is the connection's.
    ("Connection", "close"),
]


def asks_for_sse(head):
    """``STREAM`` for a request that opens a stream, ``REQUEST`` for a POST
    or a preflight on SSE's paths, None for anything else."""
    if "upgrade" in head.index:
        return None
    path = head.target.partition("?")[0]
    method = head.method
    if path == STREAM_PATH:
        if method == "GET":
            return STREAM
        if method == "OPTIONS":
            return REQUEST
    elif path.startswith(_POST_PREFIX) and method in ("POST", "OPTIONS"):
        return REQUEST
    return None


def _normalized(origin):
    # The rule of the WebSocket handshake's normalize_origin (RFC 6454):
    # --origin's list is normalized by it.
    return origin.strip().rstrip("/").lower()


def _origin(head, origins):
    """``(origin, None)``, or ``(origin, Refused)`` when --origin does not
    allow it. A request without Origin is allowed (only browsers send it)."""
    origin = head.get("origin")
    if origins is not None and origin is not None and _normalized(origin) not in origins:
        return origin, Refused(403, "origin", "origin %s is not allowed" % origin)
    return origin, None


def _cors(origin):
    if origin is None:
        return []
    return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]


def _credential(target):
    """``("ticket", T)`` or ``("resume", R)`` from the query, or None."""
    query = parse_qs(urlsplit(target).query)
    for kind in ("ticket", "resume"):
        values = query.get(kind)
        if values and values[0]:
            return kind, values[0]
    return None


def keeps_alive(head):
    """Whether the connection stays open for another request after this
    one's answer (HTTP/1.1 without ``Connection: close``)."""
    if head.version < (1, 1):
        return False
    return not any(token.lower() == "close"
                   for value in head.get_all("connection") for token in split_list(value))


class StreamAccepted:
    """The stream is to be opened: redeem ``credential`` (if any), then
    write ``response``."""

    __slots__ = ("response", "path", "host", "origin", "user_agent", "credential")

    def __init__(self, path, host, origin, user_agent, credential):
        self.response = response(200, "OK", STREAM_HEAD + _cors(origin)) + PADDING
        self.path = path
        self.host = host
        self.origin = origin
        self.user_agent = user_agent
        self.credential = credential


def _no_body(head):
    return not head.get_all("transfer-encoding") and all(
        value == "0" for value in head.get_all("content-length"))


def stream_handshake(head, origins=None):
    """Decide on ``GET /sse``: :class:`StreamAccepted` or :class:`Refused`.
    ``origins``: the normalized --origin list, or None for any. HTTP/1.0 is
    taken: a proxy (nginx by default) asks its upstream in 1.0."""
    hosts = head.get_all("host")
    if head.version >= (1, 1) and (len(hosts) != 1 or not hosts[0]):
        return Refused(400, "host", "an SSE request needs exactly one Host header")
    if not _no_body(head):
        return Refused(400, "body", "GET /sse has no request body")
    accepted = [item.partition(";")[0].strip().lower()
                for value in head.get_all("accept") for item in split_list(value)]
    if "text/event-stream" not in accepted:
        return Refused(406, "sse_accept",
                       "GET /sse answers a stream of events: send Accept: text/event-stream")
    origin, refused = _origin(head, origins)
    if refused is not None:
        return refused
    return StreamAccepted(head.target, hosts[0] if hosts else None, origin,
                          head.get("user-agent"), _credential(head.target))


class Preflight:
    """A CORS preflight, answered with ``response``."""

    __slots__ = ("response", "keep_alive")

    def __init__(self, origin, keep_alive):
        self.keep_alive = keep_alive
        fields = _cors(origin) if origin is not None else [("Access-Control-Allow-Origin", "*")]
        fields += [("Access-Control-Allow-Methods", "GET, POST"),
                   ("Access-Control-Allow-Headers", "Content-Type"),
                   ("Access-Control-Max-Age", "600"),
                   ("Content-Length", "0")]
        if not keep_alive:
            fields.append(("Connection", "close"))
        self.response = response(204, "No Content", fields)


class Post:
    """A POST to session ``session_id`` carrying ``secret``: read its
    ``length`` bytes of body, then answer with :meth:`accepted` or
    :attr:`unknown`."""

    __slots__ = ("session_id", "secret", "length", "origin", "keep_alive")

    def __init__(self, session_id, secret, length, origin, keep_alive):
        self.session_id = session_id
        self.secret = secret
        self.length = length
        self.origin = origin
        self.keep_alive = keep_alive

    def accepted(self):
        """``202``: the messages were handed to the session; its answers
        travel on the stream."""
        fields = _cors(self.origin) + [("Content-Length", "0")]
        if not self.keep_alive:
            fields.append(("Connection", "close"))
        return response(202, "Accepted", fields)

    def unknown(self):
        """``404``: no open session here has that id and secret."""
        return Refused(404, "sse_unknown_session",
                       "no open SSE session here has this path: it ended, or is on another "
                       "node", _cors(self.origin))


def request_decision(head, origins, max_body):
    """Decide on one of SSE's plain requests: :class:`Preflight`,
    :class:`Post` or :class:`Refused`."""
    origin, refused = _origin(head, origins)
    if refused is not None:
        return refused
    keep_alive = keeps_alive(head)
    if head.method == "OPTIONS":
        if not _no_body(head):
            return Refused(400, "body", "a preflight has no request body", _cors(origin))
        return Preflight(origin, keep_alive)
    parts = head.target.partition("?")[0][len(_POST_PREFIX):].split("/")
    if len(parts) != 2 or not all(parts):
        return Refused(404, "sse_unknown_session", "POST to the path the welcome's send names",
                       _cors(origin))
    if head.get_all("transfer-encoding"):
        return Refused(411, "sse_length", "a POST to an SSE session needs Content-Length",
                       _cors(origin))
    lengths = head.get_all("content-length")
    if len(set(lengths)) != 1 or not lengths[0].isdigit() or not lengths[0].isascii():
        return Refused(411, "sse_length",
                       "a POST to an SSE session needs one Content-Length", _cors(origin))
    length = int(lengths[0])
    if length > max_body:
        return Refused(413, "sse_too_large", "request body larger than %d bytes" % max_body,
                       _cors(origin))
    return Post(parts[0], parts[1], length, origin, keep_alive)
