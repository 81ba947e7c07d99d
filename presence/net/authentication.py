"""How a session proves whose it is: a ticket, or the resume token an
earlier session of the same ticket was given, redeemed once
(docs/tickets.md).

A credential is ``("ticket", TICKET)`` or ``("resume", TOKEN)``. It comes in
the handshake (the WebSocket URL's ``?ticket=`` or ``?resume=``,
firepresence's ``X-Auth-Token: TICKET`` or ``X-Auth-Token: resume:TOKEN``)
or in the session's first message (``{"type": "auth", "ticket": TICKET}``,
``{"type": "auth", "resume": TOKEN}``):

- in the handshake, it is redeemed before the handshake is answered, so a
  bad ticket is refused with its HTTP status; bytes the client sends
  meanwhile are held for after the answer;
- in a first message, it is redeemed while later messages wait (at most
  :data:`MAX_QUEUED_BEFORE_AUTH`); a bad ticket closes the session with its
  close code.

A :class:`TicketCheck` exists only while a ticket is being redeemed; the
redeemer is the node's ``ITicketRedeemer`` (the hub's ticket store).
"""

from twisted.internet import defer
from twisted.logger import Logger

from ..wire.clientip import counted_network, parse_address
from ..wire.close import NORMAL_CLOSURE, POLICY_VIOLATION
from ..wire.events import TextMessage
from ..wire.httphead import error_response
from ..wire.jsontext import JSONError, decode_json
from .interfaces import TicketStoreUnavailable

__all__ = ["TicketCheck", "AUTH_FAILURES", "MAX_QUEUED_BEFORE_AUTH", "MAX_HELD_BEFORE_ANSWER",
           "credential_in_token", "ended"]

log = Logger()

#: Why a ticket was not accepted -> (HTTP status at the handshake, close
#: code afterwards, reason). docs/close-codes.md lists them.
AUTH_FAILURES = {
    "invalid": (401, 4401, "invalid, expired or already used ticket"),
    "ip": (403, 4403, "ticket issued for another IP address"),
    "unavailable": (503, 4503, "ticket store unavailable"),
    "required": (401, 4401, "authentication required: send a ticket"),
    "timeout": (None, 4408, "authentication timeout"),
    "throttled": (429, 4429, "too many failed tickets from this address: try again later"),
    "resume_invalid": (401, 4401, "invalid, expired or already used resume token"),
    "resume_ip": (403, 4403, "resume token issued to another IP address"),
}

#: The close codes of a backend kicking a user (docs/clients.md): its
#: session's resume token is forgotten.
KICKS = (4000, 4099)

#: What firepresence's X-Auth-Token starts with when it carries a resume
#: token (a ticket, URL-safe base64, never has a colon).
RESUME_PREFIX = "resume:"


def credential_in_token(token):
    """The credential of an ``X-Auth-Token`` header's value."""
    if token.startswith(RESUME_PREFIX):
        return "resume", token[len(RESUME_PREFIX):]
    return "ticket", token


def ended(session, record=None):
    """A session that was given a resume token ended (``record``: its
    CloseRecord; None when its handshake was never answered, so the token
    was never sent): the token is valid --resume-ttl more seconds, unless the
    server ended the session on purpose (1000, or 4000-4099: a backend's
    kick, after which clients do not come back by themselves), which
    forgets it."""
    token = session.resume_token
    if token is None:
        return
    session.resume_token = None
    tickets = session.server.tickets
    if record is None or (record.initiated_by == "server" and (
            record.code == NORMAL_CLOSURE or KICKS[0] <= record.code <= KICKS[1])):
        tickets.forget(token)
    else:
        tickets.ended(token)


#: Messages a client may send after its auth message, before the welcome;
#: they are delivered once it is authenticated. More closes the session.
MAX_QUEUED_BEFORE_AUTH = 100

#: Bytes kept of what a client sends after its handshake while the
#: handshake's ticket is redeemed (before it has an answer); past them the
#: client is not read from until the answer is written, so what more it
#: sends waits in the kernel's buffers and then its own (TCP flow control).
#: A browser sends nothing before the 101; a pipelining client, a few
#: messages.
MAX_HELD_BEFORE_ANSWER = 64 * 1024


def redeem(session, credential):
    """Redeem ``credential`` for ``session``: fires with ``None`` when the
    session now has an identity (and a resume token of its own, when the
    store gives one), else with the failure's key in :data:`AUTH_FAILURES`
    (counted). An address that failed too often
    (presence/wire/auththrottle.py) is ``throttled`` without asking Redis;
    an invalid ticket or resume token, or one of another IP refused, is a
    failure of its address."""
    kind, value = credential
    failure_of = "resume_" if kind == "resume" else ""
    server = session.server
    throttle = server.auth_throttle
    address = counted_network(session.client_ip) if session.client_ip else None
    if address is not None and throttle.throttled(address, server.clock.seconds(), "client"):
        server.stats.auth_failures["throttled"] += 1
        return defer.succeed("throttled")

    def failed_here(outcome):
        if address is not None:
            throttle.failed(address, server.clock.seconds())
        return outcome

    def redeemed(found):
        if found is None:
            return failed_here(failure_of + "invalid")
        if not session.connected and found.resume is not None:
            server.tickets.forget(found.resume)  # gone meanwhile: the token is no one's
            found.resume = None
        policy = server.settings.ticket_ip
        if found.ip and policy != "off" and parse_address(found.ip) != parse_address(
                session.client_ip or ""):
            if policy == "strict":
                if found.resume is not None:
                    server.tickets.forget(found.resume)
                return failed_here(failure_of + "ip")
            session.ip_mismatch = True
            server.stats.ticket_ip_mismatches += 1
        session.resume_token = found.resume
        if kind == "resume":
            session.note("opened with a resume token")  # the dashboard shows it
        session.account = found.account
        session.attributes = found.attributes
        session.allowed_channels = found.channels
        session.info = found.info
        session.whisper_channels = found.whisper
        session.server_channels = found.subscriptions
        return None

    def failed(failure):
        if not failure.check(TicketStoreUnavailable):
            log.failure("presence: redeeming a ticket for {session!r}", failure,
                        session=session)
        return "unavailable"

    def counted(outcome):
        if outcome is not None:
            server.stats.auth_failures[outcome] += 1
        return outcome

    tickets = server.tickets
    redeeming = tickets.resume(value, session.client_ip) if kind == "resume" else \
        tickets.redeem(value, session.client_ip)
    return redeeming.addCallbacks(redeemed, failed).addCallback(counted)


class TicketCheck:
    """The ticket of one session being redeemed. ``held``: what the client
    sent after its handshake while the handshake's ticket is redeemed (its
    pieces, ``held_size`` bytes); ``queued``: messages it sent after its
    auth message."""

    __slots__ = ("session", "held", "held_size", "queued")

    def __init__(self, session):
        self.session = session
        self.held = None
        self.held_size = 0
        self.queued = None

    # ------------------------------------------------------- in the handshake

    def before_answering(self, credential, accept, outcome, rest):
        """Redeem the handshake's credential, then ``accept(outcome, rest, True)``
        (with what the client sent meanwhile added to ``rest``), or refuse
        the handshake with the failure's HTTP status."""
        self.held = [rest] if rest else []
        self.held_size = len(rest)
        redeem(self.session, credential).addCallback(self._handshake_redeemed, accept, outcome)

    def hold(self, data):
        """Keep ``data`` for after the answer (in pieces: joined once); past
        MAX_HELD_BEFORE_ANSWER, stop reading until then."""
        self.held.append(data)
        self.held_size += len(data)
        if self.held_size >= MAX_HELD_BEFORE_ANSWER:
            self.session.hold_until_answered()

    def _handshake_redeemed(self, failure, accept, outcome):
        session = self.session
        rest = b"".join(self.held)
        self.held = None
        session.ticket_check = None
        if not session.connected:
            return
        if failure is not None:
            status, _, reason = AUTH_FAILURES[failure]
            kind = failure if failure.startswith("resume_") else "ticket_" + failure
            session.refuse(kind, error_response(status, reason))
            return
        accept(outcome, rest, True)
        session.answered()

    # ---------------------------------------------------- in a first message

    def message(self, message):
        """A message (a TextMessage or BinaryMessage event) from a session
        that is not ready yet: the first must be ``{"type": "auth", "ticket":
        TICKET}`` (or ``"resume": TOKEN``); what follows it before the
        welcome is kept, and delivered after."""
        session = self.session
        if self.queued is not None:
            if len(self.queued) >= MAX_QUEUED_BEFORE_AUTH:
                session.close(POLICY_VIOLATION, "too many messages before authentication")
            else:
                self.queued.append(message)
            return
        credential = _credential_of(message.text) if message.__class__ is TextMessage else None
        if credential is None:
            session.server.stats.auth_failures["required"] += 1
            session.close(*AUTH_FAILURES["required"][1:])
            return
        self.queued = []
        redeem(session, credential).addCallback(self._message_redeemed)

    def _message_redeemed(self, failure):
        session = self.session
        if not session.connected or session.closing:
            if session.resume_token is not None:  # never sent: no one's
                session.server.tickets.forget(session.resume_token)
                session.resume_token = None
            return
        if failure is not None:
            self.queued = None
            session.close(*AUTH_FAILURES[failure][1:])
            return
        queued = self.queued
        self.queued = None
        session.ticket_check = None
        session.become_ready(queued)


def _credential_of(text):
    """The credential of an auth message's ``text``, or None when it is not
    one."""
    try:
        document = decode_json(text)
    except JSONError:
        return None
    if not isinstance(document, dict) or document.get("type") != "auth":
        return None
    for kind in ("ticket", "resume"):
        value = document.get(kind)
        if isinstance(value, str):
            return kind, value
    return None
