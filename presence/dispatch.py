"""One port for every client: read the request head, hand the connection to
the protocol it asks for.

Every ``--listen`` port is served by a :class:`ListenerFactory`. Its
:class:`Dispatcher` reads the HTTP request head once (with the size limit
and the handshake timeout), works out the client's IP (trusted proxies),
and then:

- ``Upgrade: websocket`` goes to :class:`~presence.websocket_session.WebSocketSession`;
- ``Upgrade: firepresence`` goes to :class:`~presence.firepresence_session.FirepresenceSession`;
- a request that asks for no upgrade, or for another one, is answered
  ``426 Upgrade Required`` with ``Upgrade: websocket, firepresence/1.0``;
- a head that does not parse is answered ``400`` (or ``431``, ``505``);
- past ``--max-connections`` the request is answered ``503``, past
  ``--max-connections-per-ip`` for its client IP ``429`` (docs/operations.md).

The chosen session takes the transport over (the transport delivers to it
directly from then on), so dispatching costs nothing after the handshake.
"""

from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Factory, Protocol

from .clientip import counted_network
from .firepresence import UPGRADE as FIREPRESENCE_UPGRADE
from .firepresence import asks_for_firepresence
from .firepresence_session import FirepresenceSession
from .httphead import HeadError, HeadReader, error_response, split_list
from .listening import nodelay_inherited
from .session import close_transport
from .websocket_session import WebSocketSession

__all__ = ["ListenerFactory", "Dispatcher", "choose_session", "hand_over"]

_UPGRADES = "websocket, " + FIREPRESENCE_UPGRADE


def choose_session(head):
    """The session class a request head asks for, or ``None``."""
    upgrade = head.index.get("upgrade")
    if upgrade is None:
        return None
    for value in upgrade:
        value = value.lower()
        if value == "websocket" or "websocket" in split_list(value):
            return WebSocketSession
    if asks_for_firepresence(head):
        return FirepresenceSession
    return None


def _reserve_producer_attributes(transport):
    """Set, to their defaults, the two attributes that registering a producer
    adds to a Twisted TCP transport (under TLS or the PROXY protocol, to the
    TCP transport underneath).

    The session registers itself as its transport's producer once the head
    is read. Instances of a class share one layout for the attributes they
    set in the same order; attributes first set that late fall out of it,
    and each connection then pays for a dictionary of its own: about 0.8 KiB
    (measured with tracemalloc over 10,000 idle connections). Setting them
    here, while the transport is being set up, keeps them in the layout."""
    while transport is not None and not isinstance(transport, FileDescriptor):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.producer = None
        transport.streamingProducer = False


def hand_over(transport, old, new):
    """Make ``new`` the protocol ``transport`` delivers to, in place of ``old``:
    a wrapper's (TLS, PROXY protocol) wrapped protocol, or the transport's
    own protocol."""
    if getattr(transport, "wrappedProtocol", None) is old:
        transport.wrappedProtocol = new
    else:
        transport.protocol = new


class Dispatcher(Protocol):
    """A connection until its request head has been read."""

    __slots__ = ("node", "transport", "connected", "_reader", "_done")

    def __init__(self, node):
        self.node = node
        self.transport = None
        self.connected = 0
        self._reader = None
        self._done = False

    def connectionMade(self):
        node = self.node
        node.connections += 1
        transport = self.transport
        self._reader = HeadReader(node.settings.max_head_size)
        node.deadlines.set(self, node.settings.handshake_timeout)
        _reserve_producer_attributes(transport)
        if not nodelay_inherited(transport):
            try:
                # Small frames should leave at once; Nagle's algorithm would
                # hold them back waiting for an ACK (see listening.py).
                transport.setTcpNoDelay(True)
            except (AttributeError, OSError):
                pass

    def dataReceived(self, data):
        if self._done:
            return  # draining after a refusal
        try:
            result = self._reader.feed(data)
        except HeadError as error:
            self._refuse(error.kind, error_response(error.status, error.reason))
            return
        if result is None:
            return
        head, rest = result
        node = self.node
        node.deadlines.discard(self)
        self._done = True
        self._reader = None
        session_class = choose_session(head)
        if session_class is None:
            self._refuse("no_upgrade", error_response(
                426, "this port speaks WebSocket and firepresence: ask for one with Upgrade",
                [("Upgrade", _UPGRADES), ("Connection", "Upgrade")]))
            return
        transport = self.transport
        settings = node.settings
        if node.connections > settings.max_connections > 0:
            node.stats.limits_hit["max-connections"] += 1
            self._refuse("max_connections", error_response(
                503, "this server is at its limit of %d connections: try again later"
                % settings.max_connections))
            return
        client_ip = proxy = None
        trusted = settings.trusted_proxies
        if trusted:
            client_ip, proxy = trusted.client_ip(transport.getPeer().host, head)
        counted_ip = None
        if settings.max_connections_per_ip:
            if client_ip is None:
                # Looked up anyway: the session keeps it.
                client_ip = getattr(transport.getPeer(), "host", None)
            if client_ip is not None:
                counted_ip = counted_network(client_ip)
            count = node.connections_by_ip.get(counted_ip, 0)
            if count >= settings.max_connections_per_ip:
                node.stats.limits_hit["max-connections-per-ip"] += 1
                self._refuse("max_connections_per_ip", error_response(
                    429, "too many connections from %s: at most %d"
                    % (counted_ip, settings.max_connections_per_ip)))
                return
            if counted_ip is not None:
                node.connections_by_ip[counted_ip] = count + 1
        session = session_class(node)
        session.counted_ip = counted_ip
        hand_over(transport, self, session)
        session.attach(transport, client_ip, proxy)
        session.start(head, rest)

    def _refuse(self, kind, response):
        node = self.node
        node.stats.handshakes_refused[kind] += 1
        self._done = True
        self._reader = None
        self.transport.write(response)
        node.deadlines.set(self, node.settings.close_timeout)
        close_transport(self.transport, clean=False)

    def deadline_expired(self):
        if not self._done:
            self.node.stats.handshakes_refused["handshake_timeout"] += 1
            self._done = True
        self.transport.abortConnection()

    def connectionLost(self, reason):
        self.node.deadlines.discard(self)
        self.node.connection_lost()
        self.connected = 0
        if not self._done:
            self.node.stats.handshakes_refused["closed_during_handshake"] += 1
            self._done = True


class ListenerFactory(Factory):
    """The factory of every ``--listen`` port of one node."""

    noisy = False  # the service logs what it listens on, once

    def __init__(self, node):
        self.node = node

    def buildProtocol(self, addr):
        return Dispatcher(self.node)

    def startFactory(self):
        self.node.start()

    def stopFactory(self):
        self.node.stop()
