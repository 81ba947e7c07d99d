"""The SSE adapter (docs/protocol.md, "SSE"): a stream opened by ``GET
/sse`` (presence/net/dispatch.py) becomes a session on the sans-I/O core
(presence/sse/connection.py), like a WebSocket or a firepresence one: the
same read loop, limits, heartbeats, close records and fan-out write path
(everything after the handshake is the shared session's).

What differs is where its messages come from. The stream is one long
response: nothing the client sends on that connection means anything (it is
read and dropped). Its messages come in POSTs on other connections of the
same port, to the path its welcome names (``"send"``: ``/sse/ID/SECRET``):
:class:`SSERequests` takes those connections from the dispatcher, finds the
session in this node's open sessions by its id, compares the secret in
constant time, and hands the body to the session's read loop, as if it had
been read from the stream. A POST for a session this node does not hold
(it ended, or it is on another node) is answered ``404``: a balancer must
send a session's POSTs to the node that holds its stream
(docs/operations.md, "Proxies and balancers").
"""

import enum
import hmac
import secrets

from twisted.internet.protocol import Protocol

from ..sse.connection import SSEConnection
from ..sse.handshake import (
    Preflight,
    Refused,
    StreamAccepted,
    request_decision,
    stream_handshake,
)
from ..wire.close import NORMAL_CLOSURE
from ..wire.events import CLOSED
from ..wire.httphead import HeadError, HeadReader, error_response
from ..wire.jsontext import JSONError, decode_json, encode_document
from .authentication import AUTH_FAILURES
from .interfaces import SessionState
from .session import Session
from .stream import HOLD_HANDLER, HOLD_WRITING
from .twisted_internals import close_transport, write

__all__ = ["SSESession", "SSERequests", "RequestsState", "SECRET_BYTES", "CLOSE_GRACE"]

#: Random bytes of a session's secret (URL-safe base64: 32 characters).
SECRET_BYTES = 24

#: Seconds a stream that ended without a close event waits for the close
#: POST before the session is recorded as vanished (1006). A page being
#: closed sends its close by beacon while the browser drops the stream, and
#: through a proxy the stream's end can reach the node first.
CLOSE_GRACE = 1.0

#: Why a session's POSTs wait (the session is not read while they hold):
#: its stream does not drain, or its handler asked (pause_reading).
_POSTS_WAIT = HOLD_WRITING | HOLD_HANDLER

READY = SessionState.READY


class SSESession(Session):
    protocol_name = "sse"

    __slots__ = ("secret", "_waiting_posts", "_grace", "_lost_reason")

    def __init__(self, server):
        super().__init__(server)
        #: What its POSTs' path carries (None until the stream is answered).
        self.secret = None
        # The POST connections waiting for it to be read again.
        self._waiting_posts = None
        # While the stream is gone without a close event: the timer ending
        # the session after CLOSE_GRACE, and why the stream was lost.
        self._grace = None
        self._lost_reason = None

    def start(self, head, rest):
        """Answer ``GET /sse`` in ``head``."""
        server = self.server
        outcome = stream_handshake(head, server.settings.handshake.origins)
        if outcome.__class__ is not StreamAccepted:
            self.refuse(outcome.kind, outcome.response)
            return
        if server.tickets is None or outcome.credential is None:
            if server.tickets is not None and not server.settings.anonymous:
                # No auth message can come: the path to POST it is the welcome's.
                server.stats.auth_failures["required"] += 1
                self.refuse("ticket_required", error_response(
                    AUTH_FAILURES["required"][0], "GET /sse needs ?ticket=TICKET"))
                return
            self._accept(outcome, rest, False)
        else:
            self.redeem_before_answering(outcome.credential, self._accept, outcome, rest)

    def _accept(self, outcome, rest, authenticated):
        settings = self.server.settings
        self.path = outcome.path
        self.origin = outcome.origin
        self.user_agent = outcome.user_agent
        self.secret = secrets.token_urlsafe(SECRET_BYTES)
        connection = SSEConnection(settings.max_message_size, settings.max_bad_lines)
        self.open(connection, outcome.response, b"", authenticated)

    @property
    def send_path(self):
        """Where the client POSTs its messages (the welcome's ``"send"``)."""
        return "/sse/%s/%s" % (self.id, self.secret)

    def owns(self, secret):
        """Whether ``secret`` (from a POST's path) is this session's,
        compared in constant time."""
        mine = self.secret
        return mine is not None and hmac.compare_digest(secret.encode("utf-8"),
                                                        mine.encode("ascii"))

    def become_ready(self, queued=None):
        if self.account is None:
            # An anonymous session gets no welcome elsewhere; this one needs
            # it for the path of its POSTs.
            self.send_document({"type": "welcome", "session": self.id, "account": None})
        super().become_ready(queued)

    def send_document(self, document):
        # The welcome tells the client where to POST (docs/protocol.md).
        if document.get("type") == "welcome" and "send" not in document:
            document = dict(document, send=self.send_path)
        return super().send_document(document)

    # ------------------------------------------------------------ reading

    def dataReceived(self, data):
        """Bytes on the stream's own connection: a client sends nothing
        after ``GET /sse`` (a pipelined request is not answered), so they
        are dropped."""

    def receive_post(self, body):
        """A POST's body, read by the session's loop as a read of the
        stream would be (the message rate, the turns, the answers written
        to the stream); False when the session is not open."""
        connection = self.connection
        if not self.connected or connection is None or connection.state is CLOSED:
            return False
        if self._grace is not None:
            # Its stream is gone: only its close is taken (a page's goodbye
            # by beacon), and the session ends now, as the close says.
            close = _posted_close(body)
            if close is None:
                return False
            self._grace.cancel()
            Session.dataReceived(self, close)
            self._end(self._lost_reason)
            return True
        Session.dataReceived(self, body)
        return True

    def holds_posts(self, requests):
        """Whether the session is not being read (its stream does not drain,
        or its handler paused it): then ``requests`` waits, unread, until it
        is read again, as a WebSocket client's socket would."""
        if not self._holds & _POSTS_WAIT or self._grace is not None:
            return False
        if self._waiting_posts is None:
            self._waiting_posts = []
        self._waiting_posts.append(requests)
        return True

    def _release(self, reason):
        super()._release(reason)
        waiting = self._waiting_posts
        if waiting and not self._holds & _POSTS_WAIT:
            self._waiting_posts = None
            for requests in waiting:
                requests.go_on()

    def connectionLost(self, reason):
        connection = self.connection
        if self.id is not None and connection is not None and connection.state is not CLOSED \
                and self.state is READY:
            # The stream ended without a close event: its close may still
            # be on its way in a POST (CLOSE_GRACE).
            self._lost_reason = reason
            self._grace = self.server.clock.callLater(CLOSE_GRACE, self._end, reason)
            self._release_posts()
            return
        self._end(reason)

    def close(self, code=NORMAL_CLOSURE, reason=""):
        super().close(code, reason)
        if self._grace is not None and self.connection.state is CLOSED:
            # Closed (the node stopping, a backend's kick) while waiting for
            # the close of a stream that is gone: it ends now.
            self._grace.cancel()
            self._end(self._lost_reason)

    def _end(self, reason):
        self._grace = self._lost_reason = None
        super().connectionLost(reason)
        self._release_posts()

    def _release_posts(self):
        waiting, self._waiting_posts = self._waiting_posts, None
        for requests in waiting or ():
            requests.go_on()


def _posted_close(body):
    """The close message in a POST's ``body`` (one message, or an array of
    them), as bytes the core reads; None when it has none."""
    try:
        document = decode_json(body.decode("utf-8"))
    except (UnicodeDecodeError, JSONError):
        return None
    for message in document if isinstance(document, list) else (document,):
        if isinstance(message, dict) and message.get("type") == "close":
            return encode_document(message)
    return None


class RequestsState(enum.Enum):
    """Where a connection of SSE's plain requests is."""

    #: Reading a request's head (between requests, idle).
    HEAD = "head"
    #: Reading a POST's body.
    BODY = "body"
    #: A POST's body is read, and its session is not being read: waiting.
    WAITING = "waiting"
    #: The last answer was written; what comes is read and dropped.
    CLOSING = "closing"


HEAD = RequestsState.HEAD
BODY = RequestsState.BODY
WAITING = RequestsState.WAITING
CLOSING = RequestsState.CLOSING


class SSERequests(Protocol):
    """A connection carrying SSE's plain requests (POSTs, preflights), one
    after another (HTTP/1.1 keep-alive), each head within
    ``--max-head-size`` and ``--handshake-timeout``, each body within
    ``--max-message-size``. It is counted as a connection of the node (and
    of its client's address) until it closes."""

    __slots__ = ("server", "transport", "connected", "counted_ip", "client_ip", "state",
                 "_reader", "_post", "_body", "_body_size", "_rest")

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.connected = 0
        #: The IP this connection is counted under (--max-connections-per-ip).
        self.counted_ip = None
        self.client_ip = None
        self.state = HEAD
        self._reader = None
        # The POST whose body is being read (or waits), and its pieces so far.
        self._post = None
        self._body = []
        self._body_size = 0
        # What followed the body (a pipelined request), while it waits.
        self._rest = b""

    def attach(self, transport, client_ip=None, proxy=None):
        self.transport = transport
        self.connected = 1
        self.client_ip = client_ip

    def start(self, head, rest):
        self._handle(head, rest)

    def _handle(self, head, rest):
        """One request's head, and what followed it."""
        server = self.server
        settings = server.settings
        outcome = request_decision(head, settings.handshake.origins, settings.max_message_size)
        kind = outcome.__class__
        if kind is Refused:
            if outcome.kind == "sse_too_large":
                server.stats.limits_hit["max-message-size"] += 1
            self._refuse(outcome)
            return
        if kind is Preflight:
            self._answered(outcome.response, outcome.keep_alive, rest)
            return
        self.state = BODY
        self._post = outcome
        self._body = []
        self._body_size = 0
        server.deadlines.set(self, settings.handshake_timeout)
        self._take_body(rest)

    def dataReceived(self, data):
        state = self.state
        if state is BODY:
            self._take_body(data)
        elif state is HEAD:
            self._read_head(data)
        elif state is WAITING:
            self._rest += data  # a pipelined request, while the POST waits
        # CLOSING: draining after the last answer

    def _read_head(self, data):
        if self._reader is None:
            self._reader = HeadReader(self.server.settings.max_head_size)
            self.server.deadlines.set(self, self.server.settings.handshake_timeout)
        try:
            result = self._reader.feed(data)
        except HeadError as error:
            self.server.stats.handshakes_refused[error.kind] += 1
            self._finish(error_response(error.status, error.reason))
            return
        if result is not None:
            self._reader = None
            self._handle(*result)

    def _take_body(self, data):
        post = self._post
        needed = post.length - self._body_size
        if data:
            piece = data[:needed]
            self._body.append(piece)
            self._body_size += len(piece)
            data = data[needed:]
        if self._body_size < post.length:
            return
        self._rest = data
        self._deliver()

    def _deliver(self):
        post = self._post
        session = self.server.sessions.get(post.session_id)
        if session is not None and session.__class__ is SSESession and session.owns(
                post.secret) and session.holds_posts(self):
            # Not read now: neither is this connection, until the session is.
            self.state = WAITING
            self.server.deadlines.discard(self)
            self.transport.pauseProducing()
            return
        self.state = HEAD
        self._post = None
        body = b"".join(self._body)
        self._body = []
        rest, self._rest = self._rest, b""
        if session is None or session.__class__ is not SSESession or not session.owns(
                post.secret) or not session.receive_post(body):
            self._refuse(post.unknown())
            return
        self._answered(post.accepted(), post.keep_alive, rest)

    def go_on(self):
        """The session it waited for is read again (or ended)."""
        if self.connected and self.state is WAITING:
            self.transport.resumeProducing()
            self._deliver()

    def _answered(self, answer, keep_alive, rest):
        """Write an answer; read the next request, or close."""
        if not keep_alive:
            self._finish(answer)
            return
        self.server.deadlines.set(self, self.server.settings.handshake_timeout)
        write(self.transport, answer)
        if rest:
            self._read_head(rest)

    def _refuse(self, refused):
        self.server.stats.handshakes_refused[refused.kind] += 1
        self._finish(refused.response)

    def _finish(self, answer):
        """The last answer: write it, and close gently (the client may still
        be sending), within the close timeout."""
        self.state = CLOSING
        self._post = self._reader = None
        server = self.server
        self.transport.write(answer)
        server.deadlines.set(self, server.settings.close_timeout)
        close_transport(self.transport, clean=False)

    def deadline_expired(self):
        """A head or a body that did not come in time, an idle connection
        between requests, or a client that did not let go."""
        self.transport.abortConnection()

    def connectionLost(self, reason):
        server = self.server
        server.deadlines.discard(self)
        server.connection_lost(self.counted_ip)
        self.counted_ip = None
        self.connected = 0
