"""What every session has, whatever its transport (WebSocket, firepresence).

A session is one client connection after its request head was read and
dispatched (presence/dispatch.py). This base class owns what the transports
share: identity and counters, the client IP, the write path (batched per
read, sent at once when possible, bounded when the client stops reading),
flow control, the close and heartbeat timeouts, and the record of the end.
Subclasses speak their protocol: ``start(head, rest)`` answers the
handshake, ``dataReceived`` reads messages, ``send_*`` and ``close`` write.
"""

import collections

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from . import fastwrite
from .clientip import parse_address
from .engine import RedisUnavailable
from .httphead import error_response
from .tickets import fingerprint
from .websocket.close import ABNORMAL_CLOSURE, INTERNAL_ERROR, NORMAL_CLOSURE, POLICY_VIOLATION

__all__ = ["Session", "close_transport", "AUTH_FAILURES", "MAX_QUEUED_BEFORE_AUTH"]

log = Logger()

# A session's message allowance while --max-message-rate is 0.
_UNLIMITED = float("inf")

#: Why a ticket was not accepted -> (HTTP status at the handshake, close
#: code afterwards, reason). docs/close-codes.md lists them.
AUTH_FAILURES = {
    "invalid": (401, 4401, "invalid, expired or already used ticket"),
    "ip": (403, 4403, "ticket issued for another IP address"),
    "unavailable": (503, 4503, "ticket store unavailable"),
    "required": (401, 4401, "authentication required: send a ticket"),
    "timeout": (None, 4408, "authentication timeout"),
}

#: Round-trip times kept per session, and events, for the dashboard.
RTT_HISTORY = 30
EVENT_HISTORY = 20

#: Messages a client may send after its auth message, before the welcome;
#: they are delivered once it is authenticated. More closes the session.
MAX_QUEUED_BEFORE_AUTH = 100


def close_transport(transport, clean):
    """Close a client's connection, the server first (RFC 6455 7.1.1).

    After a clean end (both sides said goodbye) the client has nothing more
    to send, so the connection is simply closed. Otherwise a plain TCP
    connection is half-closed: the FIN follows our last bytes, and whatever
    the client still sends is read and discarded until it closes too.
    Closing outright while unread bytes sit in the socket would make the
    kernel send a reset, and a reset can destroy the client's copy of our
    last bytes (an answer, the close and its reason) before it reads them.
    TLS and wrapped transports close with their own protocol."""
    if not clean and isinstance(transport, FileDescriptor):
        transport.loseWriteConnection()
    else:
        transport.loseConnection()


@implementer(IPushProducer)
class Session(Protocol):
    #: The transport's name on the dashboard and in metrics.
    protocol_name = None

    __slots__ = (
        "node", "transport", "connected", "id", "_client_ip", "proxy", "_producing", "_batch",
        "_write_paused", "_paused_bytes", "_reading_paused_by_app", "path", "origin",
        "user_agent", "opened_at", "ping_sent_at", "_ping_id", "rtt", "last_heartbeat",
        "messages_in", "messages_out", "bytes_in", "bytes_out", "close_record",
        "account", "attributes", "allowed_channels", "ready", "ip_mismatch", "_queued",
        "rtt_history", "events", "_held",
        # Limits: the IP the session is counted under, its message allowance.
        "counted_ip", "_allowance", "_allowance_at",
    )

    def __init__(self, node):
        self.node = node
        self.transport = None
        self.connected = 0
        self.id = None
        self._client_ip = None
        #: The trusted proxy the client came through (X-Forwarded-For), or None.
        self.proxy = None
        #: What the client sent after its handshake while the ticket in it is
        #: redeemed (bytes), kept for after the answer; None otherwise.
        self._held = None
        self._producing = False
        self._batch = None
        self._write_paused = False
        self._paused_bytes = 0
        self._reading_paused_by_app = False
        self.path = None
        self.origin = None
        self.user_agent = None
        self.opened_at = None
        self.ping_sent_at = None
        self._ping_id = None
        #: Round-trip time of the last answered heartbeat, in seconds.
        self.rtt = None
        #: When the last heartbeat pong arrived (clock seconds).
        self.last_heartbeat = None
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_record = None
        #: Who the session belongs to, from its ticket (None: anonymous).
        self.account = None
        self.attributes = {}
        #: Channel patterns the ticket allows.
        self.allowed_channels = ()
        #: Whether the application has been told of the session (it is
        #: authenticated, or needs no authentication).
        self.ready = False
        #: The ticket was issued for another IP (``--ticket-ip warn``).
        self.ip_mismatch = False
        # Messages received while an auth message is being redeemed.
        self._queued = None
        #: The last round-trip times, oldest first (created at the first).
        self.rtt_history = None
        #: Recent events of the session, ``(time, text)``, for the dashboard
        #: (created at the first).
        self.events = None
        #: The client IP this connection counts against for
        #: --max-connections-per-ip (set by the dispatcher), or None.
        self.counted_ip = None
        # The token bucket of --max-message-rate: messages the session may
        # still send, as of when it was last topped up (None: never, full).
        self._allowance = _UNLIMITED
        self._allowance_at = None

    def __repr__(self):
        return "<%s %s %s>" % (type(self).__name__, self.id, self.client_ip)

    # ----------------------------------------------------------- beginning

    def attach(self, transport, client_ip=None, proxy=None):
        """Take over ``transport`` from the dispatcher."""
        self.transport = transport
        self.connected = 1
        self._client_ip = client_ip
        self.proxy = proxy
        transport.registerProducer(self, True)
        self._producing = True

    def start(self, head, rest):
        """Answer the handshake in ``head``; ``rest`` is what followed it."""
        raise NotImplementedError

    def open_when_redeemed(self, ticket, outcome, rest):
        """Redeem the ticket the handshake carried before answering it, so
        that a bad ticket is refused at the handshake with its HTTP status;
        then ``self._open(outcome, rest, True)``. Bytes the client sends
        meanwhile are added to ``self._held`` by ``dataReceived``."""
        self._held = rest
        self.redeem(ticket).addCallback(self._handshake_redeemed, outcome)

    def _handshake_redeemed(self, failure, outcome):
        rest = self._held
        self._held = None
        if not self.connected:
            return
        if failure is not None:
            status, _, reason = AUTH_FAILURES[failure]
            self.refuse("ticket_" + failure, error_response(status, reason))
            return
        self._open(outcome, rest, True)

    def _open(self, outcome, rest, authenticated):
        """Answer the accepted handshake ``outcome`` and open the session."""
        raise NotImplementedError

    def refuse(self, kind, response):
        """Answer the handshake with an HTTP refusal and close."""
        node = self.node
        node.stats.handshakes_refused[kind] += 1
        self.transport.write(response)
        self._close_transport(False)

    def opened(self, authenticated=False):
        """The handshake succeeded: the session exists from now on. It is
        ready at once when it redeemed a ticket in its handshake or needs
        none; otherwise it has ``--auth-timeout`` seconds to send one."""
        node = self.node
        self.id = node.next_session_id()
        self.opened_at = node.clock.seconds()
        node.session_opened(self)
        if authenticated or not self.needs_ticket():
            self.become_ready()
        else:
            node.deadlines.set(self, node.settings.auth_timeout)

    # ------------------------------------------------------------ tickets

    def needs_ticket(self):
        return self.node.tickets is not None and not self.node.settings.anonymous

    def redeem(self, ticket):
        """Redeem ``ticket``: fires with ``None`` when the session now has an
        identity, else with the failure's key in :data:`AUTH_FAILURES`."""
        node = self.node

        def redeemed(found):
            if found is None:
                return "invalid"
            policy = node.settings.ticket_ip
            if found.ip and policy != "off" and parse_address(found.ip) != parse_address(
                    self.client_ip or ""):
                if policy == "strict":
                    return "ip"
                self.ip_mismatch = True
                node.stats.ticket_ip_mismatches += 1
            self.account = found.account
            self.attributes = found.attributes
            self.allowed_channels = found.channels
            return None

        def failed(failure):
            if not failure.check(RedisUnavailable):
                log.failure("presence: redeeming ticket {ticket}", failure,
                            ticket=fingerprint(ticket))
            return "unavailable"

        def counted(outcome):
            if outcome is not None:
                node.stats.auth_failures[outcome] += 1
            return outcome

        return node.tickets.redeem(ticket).addCallbacks(redeemed, failed).addCallback(counted)

    def become_ready(self):
        """Authenticated (or needing no ticket): say welcome, tell the
        application, and deliver what the client sent meanwhile."""
        node = self.node
        self.ready = True
        node.deadlines.discard(self)
        if self.account is not None:
            self.send_document({"type": "welcome", "session": self.id,
                                "account": self.account})
        node.session_ready(self)
        queued = self._queued
        self._queued = None
        if queued:
            deliver = node.application.text_received
            for text in queued:
                if self._closing():
                    break
                self._deliver(deliver, text)

    def auth_message(self, document, text):
        """A message from a session that is not ready yet: the first must be
        ``{"type": "auth", "ticket": TICKET}``; what follows it before the
        welcome is kept and delivered after."""
        if self._queued is not None:
            if len(self._queued) >= MAX_QUEUED_BEFORE_AUTH:
                self.close(POLICY_VIOLATION, "too many messages before authentication")
            else:
                self._queued.append(text)
            return
        ticket = document.get("ticket") if document.get("type") == "auth" else None
        if not isinstance(ticket, str):
            self.node.stats.auth_failures["required"] += 1
            self.close(*AUTH_FAILURES["required"][1:])
            return
        self._queued = []
        self.redeem(ticket).addCallback(self._auth_message_redeemed)

    def _auth_message_redeemed(self, failure):
        if not self.connected or self._closing():
            return
        if failure is not None:
            self._queued = None
            self.close(*AUTH_FAILURES[failure][1:])
            return
        self.become_ready()

    def send_document(self, document):
        raise NotImplementedError

    def _closing(self):
        """Whether a close was sent or received."""
        raise NotImplementedError

    @property
    def client_ip(self):
        """The client's IP address: the TCP peer's (the PROXY protocol's
        source behind a balancer), or what a trusted proxy said. The peer is
        looked up only when first asked for: building its address costs a
        measurable share of a handshake, and most sessions never need it."""
        if self._client_ip is None and self.transport is not None:
            self._client_ip = getattr(self.transport.getPeer(), "host", None)
        return self._client_ip

    @client_ip.setter
    def client_ip(self, address):
        self._client_ip = address

    # ------------------------------------------------------------- writing

    def _account(self, size):
        """Count ``size`` bytes about to be written; False when they would
        take a client that is not reading past the outgoing bound (it is
        then dropped)."""
        self.bytes_out += size
        if self._write_paused:
            self._paused_bytes += size
            if self._paused_bytes > self.node.settings.max_outgoing_buffer:
                self._slow_consumer()
                return False
        return True

    def _write(self, data):
        """Bytes to the client: batched while a read is being processed (so a
        read that completes many messages answers with one send), otherwise
        written at once."""
        batch = self._batch
        if batch is not None:
            batch.append(data)
        elif self._account(len(data)):
            fastwrite.write(self.transport, data)

    def _write_parts(self, parts):
        batch = self._batch
        if batch is not None:
            batch.extend(parts)
        elif self._account(sum(map(len, parts))):
            fastwrite.write_sequence(self.transport, parts)

    def _flush(self, batch):
        """Write what one read produced."""
        if len(batch) == 1:
            self._write(batch[0])
        elif self._account(sum(map(len, batch))):
            fastwrite.write_sequence(self.transport, batch)

    def _deliver(self, method, payload):
        """Hand a message to the application; a failure there closes only
        this session, with 1011."""
        self.messages_in += 1
        try:
            method(self, payload)
        except Exception:
            log.failure("application error in session {session}", session=self.id)
            self.close(INTERNAL_ERROR, "internal error")
            return False
        return True

    def send_text(self, text):
        raise NotImplementedError

    def send_binary(self, data):
        raise NotImplementedError

    def send_prepared(self, prepared):
        raise NotImplementedError

    def close(self, code=NORMAL_CLOSURE, reason=""):
        raise NotImplementedError

    # ------------------------------------------------------------ heartbeat

    def send_heartbeat(self, heartbeat_round, now):
        raise NotImplementedError

    def _heartbeat_answered(self, ping_id):
        if self.ping_sent_at is not None and ping_id == self._ping_id:
            now = self.node.clock.seconds()
            self.rtt = now - self.ping_sent_at
            self.last_heartbeat = now
            self.ping_sent_at = None
            self._ping_id = None
            history = self.rtt_history
            if history is None:
                history = self.rtt_history = collections.deque(maxlen=RTT_HISTORY)
            history.append(self.rtt)
            self.node.stats.heartbeat_answered(self.rtt)

    def note(self, text):
        """Remember an event of the session (the dashboard shows the last
        few)."""
        events = self.events
        if events is None:
            events = self.events = collections.deque(maxlen=EVENT_HISTORY)
        events.append((self.node.clock.seconds(), text))

    def heartbeat_timed_out(self):
        self.ping_sent_at = None
        self.node.stats.heartbeat_timeouts += 1
        self.close(INTERNAL_ERROR, "heartbeat timeout")

    # ----------------------------------------------------------- flow control

    def pauseProducing(self):
        # The transport's buffer is over its limit: the client is not reading
        # as fast as we write. Stop reading from it too (its own requests
        # would only queue more answers), and start counting what is queued.
        if self._write_paused:
            # Twisted says so again at every write while its buffer is full:
            # the count goes on (restarting it would let the queue grow
            # without bound).
            return
        self._write_paused = True
        self._paused_bytes = 0
        self.transport.pauseProducing()

    def resumeProducing(self):
        self._write_paused = False
        self._paused_bytes = 0
        if not self._reading_paused_by_app and self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self):
        pass

    def pause_reading(self):
        """Stop reading from the client until :meth:`resume_reading` (the
        application cannot keep up with its messages)."""
        self._reading_paused_by_app = True
        self.transport.pauseProducing()

    def resume_reading(self):
        self._reading_paused_by_app = False
        if not self._write_paused:
            self.transport.resumeProducing()

    # ------------------------------------------------------------ message rate

    def _refill(self):
        """Top up the message allowance for the time since the last read
        (once per read; each message then takes one)."""
        settings = self.node.settings
        rate = settings.max_message_rate
        if not rate:
            return
        now = self.node.clock.seconds()
        burst = settings.message_burst
        at = self._allowance_at
        if at is None:
            allowance = burst
        else:
            allowance = self._allowance + (now - at) * rate
            if allowance > burst:
                allowance = burst
        self._allowance = allowance
        self._allowance_at = now

    def _rate_exceeded(self):
        """A message past the allowance: it is dropped, and the session is
        closed with 1008 (once; what still arrives before the close completes
        is dropped too)."""
        # Nothing more is taken from this client, however long it waits.
        self._allowance = -_UNLIMITED
        if self._closing():
            return
        node = self.node
        node.stats.limits_hit["max-message-rate"] += 1
        log.info("session {session} closed: more than {rate} messages a second",
                 session=self.id, rate=node.settings.max_message_rate)
        self.close(POLICY_VIOLATION, "message rate exceeded")

    def _slow_consumer(self):
        self.node.stats.slow_consumers += 1
        limit = self.node.settings.max_outgoing_buffer
        log.info("session {session} dropped: client not reading, over {limit} bytes queued",
                 session=self.id, limit=limit)
        # Nothing can reach a client that does not read: the record says 1006
        # (closed without a close frame) and why.
        self._abort(ABNORMAL_CLOSURE, "slow consumer: more than %d bytes queued" % limit)

    # --------------------------------------------------------------- ending

    def _close_transport(self, clean):
        self.node.deadlines.set(self, self.node.settings.close_timeout)
        if self._producing:
            # A registered producer holds a TLS transport open until it is
            # unregistered; nothing more is produced once the session closes.
            self._producing = False
            self.transport.unregisterProducer()
        close_transport(self.transport, clean)

    def deadline_expired(self):
        """The auth timeout passed (no ticket came), or the close timeout: the
        client did not answer our close, or did not let the TCP connection
        go."""
        if self.id is not None and not self.ready and not self._closing():
            self.node.stats.auth_failures["timeout"] += 1
            self.close(*AUTH_FAILURES["timeout"][1:])
        elif self.id is not None and not self._ended():
            self._abort(ABNORMAL_CLOSURE, "close timeout")
        else:
            self.transport.abortConnection()

    def _ended(self):
        """Whether the protocol's end (close exchange) is complete."""
        raise NotImplementedError

    def _abort(self, code, reason):
        """Drop the transport now, recording ``code`` and ``reason`` unless a
        close was already under way."""
        raise NotImplementedError

    def _end_record(self):
        """The :class:`CloseRecord` of a session whose transport is gone."""
        raise NotImplementedError

    def connectionLost(self, reason):
        node = self.node
        node.deadlines.discard(self)
        node.connection_lost(self.counted_ip)
        self.connected = 0
        if self.id is None:
            return  # refused at the handshake: never a session
        record = self._end_record()
        record.duration = node.clock.seconds() - self.opened_at
        self.close_record = record
        node.session_closed(self, record)
