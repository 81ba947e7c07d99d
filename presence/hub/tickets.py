"""Tickets: how a connection learns whose it is.

A backend (or a user holding an OAuth token) asks the HTTP API for a ticket;
it lives in Redis for a few seconds with the account, its attributes, the
channels it may use and the client's IP; the connection redeems it once,
on whichever node it reaches. docs/tickets.md tells the whole flow.

A ticket is 192 random bits (``secrets``, drawn by the store:
presence/redis/store.py), URL-safe. Redis keys hold a SHA-256 of it, not
the ticket (presence/redis/keys.py), so that reading Redis (or its logs)
gives nobody a usable ticket; logs show only :func:`fingerprint`.

A session that redeemed a ticket (on a node that has a ``node`` id and a
``resume_ttl``) gets a resume token in its welcome: the same kind of random
string, redeemable once, on any node, for a new session of the same
account, attributes and channels, bound to the address of the session it
was given to. It is valid while its session lives and ``resume_ttl``
seconds after it ended (a node's death included: the node's resumable key,
kept by its announcements, outlives it by ``resume_ttl``), and never past
``resume_max_age`` seconds from the original ticket. docs/tickets.md,
"Resume tokens", tells why it is built so.
"""

import hashlib
import json

from twisted.internet import defer
from zope.interface import implementer

from ..net.interfaces import ITicketRedeemer, TicketStoreUnavailable
from ..redis.engine import RedisUnavailable
from .settings import DEFAULT_RESUME_MAX_AGE, DEFAULT_RESUME_TTL, DEFAULT_TICKET_TTL

__all__ = ["Ticket", "TicketStore", "fingerprint", "MAX_INFO"]

#: Bytes a ticket's ``info`` takes at most, as JSON: it is in every member
#: listing, join and leave of its sessions, so it is kept to a name, an
#: avatar's address and a few flags.
MAX_INFO = 1024


def fingerprint(ticket):
    """What logs show of a ticket: enough to correlate, useless to redeem."""
    return hashlib.sha256(ticket.encode("utf-8")).hexdigest()[:10]


class Ticket:
    """A redeemed ticket (or resume token: then ``ip`` is the address the
    token is bound to). ``resume``: the new session's resume token, or None.
    ``info``: what other members see of the session (``POST /tickets``
    ``"info"``, a JSON object of at most MAX_INFO bytes), or None;
    ``whisper``: the channel patterns it may whisper on. Both are in the
    ticket's JSON, so a resume token (which keeps that JSON) carries them."""

    __slots__ = ("account", "attributes", "channels", "ip", "issued_at", "resume", "info",
                 "whisper", "subscriptions")

    def __init__(self, account, attributes=None, channels=(), ip=None, issued_at=None,
                 info=None, whisper=()):
        self.account = account
        self.attributes = attributes or {}
        self.channels = tuple(channels)
        self.ip = ip
        self.issued_at = issued_at
        self.resume = None
        self.info = info
        self.whisper = tuple(whisper)
        #: Server-side subscriptions a resume token remembered (scripts.REMEMBER).
        self.subscriptions = ()

    def as_dict(self):
        return {"account": self.account, "attributes": self.attributes,
                "channels": list(self.channels), "ip": self.ip, "issued_at": self.issued_at,
                "info": self.info, "whisper": list(self.whisper)}

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        info = data.get("info")
        whisper = data.get("whisper")
        ticket = cls(data["account"], data.get("attributes"), data.get("channels") or (),
                     data.get("ip"), data.get("issued_at"),
                     info if isinstance(info, dict) else None,
                     whisper if isinstance(whisper, list) else ())
        # Lua's cjson writes an empty list as {}: either is none.
        subscriptions = data.get("subscriptions")
        if isinstance(subscriptions, list):
            ticket.subscriptions = tuple(c for c in subscriptions if isinstance(c, str))
        return ticket


@implementer(ITicketRedeemer)
class TicketStore:
    """``store``: the node's PresenceStore; ``node``: the node's id (no
    resume tokens without it); ``node_ttl``: how long the node's
    announcement lives; ``work``: the hub's RedisWork, which keeps the
    updates of ended sessions' tokens until they are done."""

    def __init__(self, store, clock, ttl=DEFAULT_TICKET_TTL, node=None,
                 resume_ttl=DEFAULT_RESUME_TTL, resume_max_age=DEFAULT_RESUME_MAX_AGE,
                 node_ttl=1, work=None):
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.node = node
        self.resume_ttl = resume_ttl if node else 0
        self.resume_max_age = resume_max_age
        self.node_ttl = node_ttl
        self.work = work
        self.issued = 0
        self.redeemed = 0
        self.refused = 0
        self.resume_issued = 0
        self.resume_redeemed = 0
        self.resume_refused = 0

    @property
    def resumable_ttl(self):
        """Seconds the node's resumable key lives past an announcement: its
        own announcement's lifetime, then --resume-ttl."""
        return self.node_ttl + self.resume_ttl

    @defer.inlineCallbacks
    def issue(self, account, attributes=None, channels=(), ip=None, info=None, whisper=()):
        """Store a new ticket; fires with ``(ticket, ttl)``."""
        ticket = self.store.draw_ticket()
        value = json.dumps(Ticket(account, attributes, channels, ip,
                                  self.clock.seconds(), info, whisper).as_dict())
        stored = yield self.store.store_ticket(ticket, value, self.ttl)
        if not stored:  # pragma: no cover - 192 random bits do not collide
            raise RuntimeError("ticket collision")
        self.issued += 1
        return ticket, self.ttl

    def redeem(self, ticket, client_ip=None):
        """Take a ticket out of Redis: fires with the :class:`Ticket` (its
        ``resume``: the new session's resume token, bound to ``client_ip``),
        or ``None`` when it is unknown, expired or already used (the three
        are indistinguishable on purpose); fails with TicketStoreUnavailable
        when Redis does not answer in time."""
        return self._take("ticket", ticket, client_ip)

    def resume(self, token, client_ip=None):
        """Redeem a resume token: fires with the :class:`Ticket` of the
        session it was given to (``ip``: the address it is bound to;
        ``resume``: the new session's token), or ``None`` when it is
        unknown, used, expired, or older than the maximum age."""
        return self._take("resume", token, client_ip)

    @defer.inlineCallbacks
    def _take(self, kind, credential, client_ip):
        resuming = kind == "resume"
        if not credential or len(credential) > 256 or not credential.isascii():
            # Tickets and tokens are URL-safe base64: anything else (a lone
            # surrogate from a JSON auth message has not even a UTF-8 form)
            # is unknown.
            self._count(resuming, None)
            return None
        new_token = self.store.draw_resume_token(credential) if self.resume_ttl else None
        try:
            found = yield self.store.redeem(
                kind, credential, self.node or "", new_token, client_ip, self.clock.seconds(),
                self.resume_max_age, self.resumable_ttl)
        except RedisUnavailable as error:
            raise TicketStoreUnavailable(str(error)) from None
        self._count(resuming, found)
        if found is None:
            return None
        value, bound, stored = found
        ticket = Ticket.from_json(value)
        if resuming:
            ticket.ip = bound
        if stored:
            ticket.resume = new_token
            self.resume_issued += 1
        return ticket

    def _count(self, resuming, found):
        if resuming:
            if found is None:
                self.resume_refused += 1
            else:
                self.resume_redeemed += 1
        elif found is None:
            self.refused += 1
        else:
            self.redeemed += 1

    def ended(self, token):
        """The session given ``token`` ended: the token is valid
        --resume-ttl more seconds."""
        self._track(self.store.resume_ended(token, self.node, self.resume_ttl),
                    "the end of a session's resume token")

    def forget(self, token):
        """The token of a session refused after its credential was redeemed,
        gone before its welcome, or kicked: no one may use it."""
        self._track(self.store.forget_resume(token), "forgetting a resume token")

    def _track(self, work, what):
        if self.work is not None:
            self.work.track(work, what)
        else:  # a store of its own (tests): nothing waits for the update
            work.addErrback(lambda failure: None)
