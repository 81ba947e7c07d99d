"""Tickets: how a connection learns whose it is.

A backend (or a user holding an OAuth token) asks the HTTP API for a ticket;
it lives in Redis for a few seconds with the account, its attributes, the
channels it may use and the client's IP; the connection redeems it once,
on whichever node it reaches. docs/tickets.md tells the whole flow.

A ticket is 192 random bits (``secrets``), URL-safe. Redis keys hold a
SHA-256 of it, not the ticket (presence/redis/keys.py), so that reading
Redis (or its logs) gives nobody a usable ticket; logs show only
:func:`fingerprint`.
"""

import hashlib
import json
import secrets

from twisted.internet import defer
from zope.interface import implementer

from ..net.interfaces import ITicketRedeemer, TicketStoreUnavailable
from ..redis.engine import RedisUnavailable
from .settings import DEFAULT_TICKET_TTL

__all__ = ["Ticket", "TicketStore", "fingerprint"]


def fingerprint(ticket):
    """What logs show of a ticket: enough to correlate, useless to redeem."""
    return hashlib.sha256(ticket.encode("utf-8")).hexdigest()[:10]


class Ticket:
    """A redeemed ticket."""

    __slots__ = ("account", "attributes", "channels", "ip", "issued_at")

    def __init__(self, account, attributes=None, channels=(), ip=None, issued_at=None):
        self.account = account
        self.attributes = attributes or {}
        self.channels = tuple(channels)
        self.ip = ip
        self.issued_at = issued_at

    def as_dict(self):
        return {"account": self.account, "attributes": self.attributes,
                "channels": list(self.channels), "ip": self.ip, "issued_at": self.issued_at}

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        return cls(data["account"], data.get("attributes"), data.get("channels") or (),
                   data.get("ip"), data.get("issued_at"))


@implementer(ITicketRedeemer)
class TicketStore:
    """``store``: the node's PresenceStore."""

    def __init__(self, store, clock, ttl=DEFAULT_TICKET_TTL):
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self.issued = 0
        self.redeemed = 0
        self.refused = 0

    @defer.inlineCallbacks
    def issue(self, account, attributes=None, channels=(), ip=None):
        """Store a new ticket; fires with ``(ticket, ttl)``."""
        ticket = secrets.token_urlsafe(24)
        value = json.dumps(Ticket(account, attributes, channels, ip,
                                  self.clock.seconds()).as_dict())
        stored = yield self.store.store_ticket(ticket, value, self.ttl)
        if not stored:  # pragma: no cover - 192 random bits do not collide
            raise RuntimeError("ticket collision")
        self.issued += 1
        return ticket, self.ttl

    @defer.inlineCallbacks
    def redeem(self, ticket):
        """Take a ticket out of Redis: fires with the :class:`Ticket`, or
        ``None`` when it is unknown, expired or already used (the three are
        indistinguishable on purpose); fails with TicketStoreUnavailable
        when Redis does not answer in time."""
        if not ticket or len(ticket) > 256 or not ticket.isascii():
            # Tickets are URL-safe base64: anything else (a lone surrogate
            # from a JSON auth message has not even a UTF-8 form) is unknown.
            self.refused += 1
            return None
        try:
            value = yield self.store.take_ticket(ticket)
        except RedisUnavailable as error:
            raise TicketStoreUnavailable(str(error)) from None
        if value is None:
            self.refused += 1
            return None
        self.redeemed += 1
        return Ticket.from_json(value)
