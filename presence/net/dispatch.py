"""One port for every client: read the request head, hand the connection to
the protocol it asks for.

Every ``--listen`` port is served by a :class:`ListenerFactory`. Its
:class:`Dispatcher` reads the HTTP request head once (with the size limit
and the handshake timeout), works out the client's IP (trusted proxies),
and then hands the connection to the first protocol of :data:`PROTOCOLS`
that the head asks for:

- ``Upgrade: websocket`` goes to :class:`~presence.net.websocket.WebSocketSession`;
- ``Upgrade: firepresence`` goes to :class:`~presence.net.firepresence.FirepresenceSession`;
- ``GET /sse`` goes to :class:`~presence.net.sse.SSESession` (a stream of
  Server-Sent Events), and SSE's plain requests (``POST /sse/ID/SECRET``,
  the CORS preflights) to :class:`~presence.net.sse.SSERequests`;
- a request that asks for none of them is answered ``426 Upgrade Required``
  with ``Upgrade: websocket, firepresence/1.0``;
- a head that does not parse is answered ``400`` (or ``431``, ``505``);
- past ``--max-connections`` the request is answered ``503``, past
  ``--max-connections-per-ip`` for its client IP ``429`` (docs/operations.md).
  A client is counted from accept, before its head: otherwise unfinished
  heads from one address could hold every slot. Only a trusted proxy's
  connections wait for the head, which names the client they carry;
- a PROXY protocol header naming an address that is not one is answered
  ``400`` at once (the balancer sent garbage: nothing it says is believed);
- a client whose address failed too many tickets lately
  (presence/wire/auththrottle.py) is answered ``429`` with ``Retry-After``,
  before any session exists or any ticket is redeemed.

The chosen session takes the transport over (the transport delivers to it
directly from then on), so dispatching costs nothing after the handshake.
"""

import collections
import ipaddress
import math

from twisted.internet.address import IPv6Address
from twisted.internet.protocol import Factory, Protocol

from ..firepresence.handshake import UPGRADE as FIREPRESENCE_UPGRADE
from ..firepresence.handshake import asks_for_firepresence
from ..sse.handshake import REQUEST, STREAM_PATH, asks_for_sse
from ..wire.clientip import counted_network
from ..wire.httphead import HeadError, HeadReader, error_response, split_list
from .firepresence import FirepresenceSession
from .listening import nodelay_inherited
from .sse import SSERequests, SSESession
from .twisted_internals import (
    close_transport,
    hand_over,
    peer_named_later,
    reserve_producer_attributes,
)
from .websocket import WebSocketSession

__all__ = ["ListenerFactory", "Dispatcher", "ProtocolEntry", "PROTOCOLS", "SPOKEN",
           "choose_session"]


def asks_for_websocket(head):
    """Whether the request's Upgrade field names websocket (RFC 6455 4.2.1)."""
    for value in head.get_all("upgrade"):
        value = value.lower()
        if value == "websocket" or "websocket" in split_list(value):
            return True
    return False


#: One protocol the client port speaks: ``name`` as the 426 answer says it;
#: ``asks(head)`` says whether a request head asks for it; ``session`` is its
#: adapter, a Session subclass whose ``start(head, rest)`` answers the
#: handshake; ``upgrade`` names it in the 426 answer's Upgrade field (None:
#: it is no upgrade). ``requests``, for a protocol that also takes plain
#: HTTP requests on the port (SSE's POSTs), is their handler, given the
#: connections ``asks`` answers ``REQUEST`` for (None: it takes none).
ProtocolEntry = collections.namedtuple("ProtocolEntry", "name asks session upgrade requests",
                                       defaults=(None,))

#: Every protocol of the client port, in the order a head is matched
#: against them (docs/architecture.md: adding a protocol).
PROTOCOLS = (
    ProtocolEntry("WebSocket", asks_for_websocket, WebSocketSession, "websocket"),
    ProtocolEntry("firepresence", asks_for_firepresence, FirepresenceSession,
                  FIREPRESENCE_UPGRADE),
    # After firepresence: an OPTIONS with Upgrade: firepresence is its.
    ProtocolEntry("SSE", asks_for_sse, SSESession, None, SSERequests),
)

_UPGRADES = ", ".join(entry.upgrade for entry in PROTOCOLS if entry.upgrade)
_NAMES = [entry.name for entry in PROTOCOLS]
#: The protocols in words, for logs and answers ("WebSocket, firepresence
#: and SSE").
SPOKEN = ", ".join(_NAMES[:-1]) + " and " + _NAMES[-1] if len(_NAMES) > 1 else _NAMES[0]


def choose_session(head):
    """The class that takes the connection a request head asks for (a
    session's, or a protocol's plain requests'), or ``None``."""
    for entry in PROTOCOLS:
        asked = entry.asks(head)
        if asked:
            return entry.requests if asked == REQUEST else entry.session
    return None


def _addresses_valid(transport):
    """Whether the connection's two ends are IP addresses of their family.
    Only a PROXY protocol header can make them anything else: Twisted's
    parser takes ``PROXY TCP4 999.1.1.1 1.2.3 ...`` as it comes."""
    for address in (transport.getPeer(), transport.getHost()):
        host = getattr(address, "host", None)
        if host is None:
            continue
        try:
            version = ipaddress.ip_address(host).version
        except ValueError:
            return False
        if version != (6 if isinstance(address, IPv6Address) else 4):
            return False
    return True


class Dispatcher(Protocol):
    """A connection until its request head has been read."""

    __slots__ = ("server", "transport", "connected", "_reader", "_done", "_counted_ip",
                 "_peer_pending")

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.connected = 0
        self._reader = None
        self._done = False
        #: The address this connection is counted under for
        #: --max-connections-per-ip (None: not counted, or not yet).
        self._counted_ip = None
        self._peer_pending = False

    def connectionMade(self):
        server = self.server
        server.connections += 1
        transport = self.transport
        settings = server.settings
        self._reader = HeadReader(settings.max_head_size)
        server.deadlines.set(self, settings.handshake_timeout)
        reserve_producer_attributes(transport)
        if peer_named_later(transport):
            self._peer_pending = True  # admitted once the PROXY header is read
        elif not self._admit(transport):
            return
        if not nodelay_inherited(transport):
            try:
                # Small frames should leave at once; Nagle's algorithm would
                # hold them back waiting for an ACK (see listening.py).
                transport.setTcpNoDelay(True)
            except (AttributeError, OSError):
                pass

    def _admit(self, transport):
        """Count the connection under its peer's address
        (--max-connections-per-ip): from accept, since its head may never
        come. A trusted proxy's connections are counted at their head,
        under the client it names. False when the connection is refused."""
        self._peer_pending = False
        peer = getattr(transport.getPeer(), "host", None)  # None: a UNIX socket
        if peer is None:
            return True
        settings = self.server.settings
        if settings.max_connections_per_ip and not settings.trusted_proxies.trusts(peer):
            return self._count(counted_network(peer))
        return True

    def dataReceived(self, data):
        if self._done:
            return  # draining after a refusal
        if self._peer_pending:
            if not _addresses_valid(self.transport):
                self._refuse("invalid_proxy_header", error_response(
                    400, "the PROXY protocol header names an invalid address"))
                return
            if not self._admit(self.transport):
                return
        try:
            result = self._reader.feed(data)
        except HeadError as error:
            self._refuse(error.kind, error_response(error.status, error.reason))
            return
        if result is None:
            return
        head, rest = result
        server = self.server
        server.deadlines.discard(self)
        self._done = True
        self._reader = None
        session_class = choose_session(head)
        if session_class is None:
            self._refuse("no_upgrade", error_response(
                426, "this port speaks %s: ask for one with Upgrade, or GET %s with "
                "Accept: text/event-stream" % (SPOKEN, STREAM_PATH),
                [("Upgrade", _UPGRADES), ("Connection", "Upgrade")]))
            return
        transport = self.transport
        settings = server.settings
        if server.connections > settings.max_connections > 0:
            server.stats.limits_hit["max-connections"] += 1
            self._refuse("max_connections", error_response(
                503, "this server is at its limit of %d connections: try again later"
                % settings.max_connections))
            return
        client_ip = proxy = None
        trusted = settings.trusted_proxies
        if trusted:
            client_ip, proxy = trusted.client_ip(transport.getPeer().host, head)
            if settings.max_connections_per_ip and self._counted_ip is None \
                    and client_ip is not None \
                    and not self._count(counted_network(client_ip)):
                return
        if server.tickets is not None and not self._admit_to_authenticate(
                client_ip if client_ip is not None else getattr(transport.getPeer(), "host", None)):
            return
        session = session_class(server)
        session.counted_ip = self._counted_ip
        self._counted_ip = None  # the session uncounts it now
        hand_over(transport, self, session)
        session.attach(transport, client_ip, proxy)
        session.start(head, rest)

    def _admit_to_authenticate(self, ip):
        """Refuse the handshake with ``429`` while ``ip``'s address is
        throttled for failing tickets (the client port's throttle hook)."""
        if ip is None:
            return True  # a UNIX socket's peer
        server = self.server
        address = counted_network(ip)
        wait = server.auth_throttle.throttled(address, server.clock.seconds(), "client")
        if not wait:
            return True
        seconds = max(1, math.ceil(wait))
        self._refuse("ticket_throttled", error_response(
            429, "too many failed tickets from %s: try again in %d s" % (address, seconds),
            [("Retry-After", str(seconds))]))
        return False

    def _count(self, counted_ip):
        """Count this connection under ``counted_ip``, or refuse it with
        ``429`` when that address has --max-connections-per-ip already."""
        server = self.server
        limit = server.settings.max_connections_per_ip
        count = server.connections_by_ip.get(counted_ip, 0)
        if count >= limit:
            server.stats.limits_hit["max-connections-per-ip"] += 1
            self._refuse("max_connections_per_ip", error_response(
                429, "too many connections from %s: at most %d" % (counted_ip, limit)))
            return False
        server.connections_by_ip[counted_ip] = count + 1
        self._counted_ip = counted_ip
        return True

    def _refuse(self, kind, response):
        server = self.server
        server.stats.handshakes_refused[kind] += 1
        self._done = True
        self._reader = None
        self.transport.write(response)
        server.deadlines.set(self, server.settings.close_timeout)
        close_transport(self.transport, clean=False)

    def deadline_expired(self):
        if not self._done:
            self.server.stats.handshakes_refused["handshake_timeout"] += 1
            self._done = True
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.server.deadlines.discard(self)
        self.server.connection_lost(self._counted_ip)
        self._counted_ip = None
        self.connected = 0
        if not self._done:
            self.server.stats.handshakes_refused["closed_during_handshake"] += 1
            self._done = True


class ListenerFactory(Factory):
    """The factory of every ``--listen`` port of one server."""

    noisy = False  # the service logs what it listens on, once

    def __init__(self, server):
        self.server = server

    def buildProtocol(self, addr):
        return Dispatcher(self.server)

    def startFactory(self):
        self.server.start()

    def stopFactory(self):
        self.server.stop()
