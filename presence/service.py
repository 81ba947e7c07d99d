"""Assembling the running server from options: the service tree behind
``twistd presence``."""

import atexit
import os
import sys

from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger
from twisted.web.server import Site

from .application import Application
from .cluster import ClusterView
from .demo import Demo, DemoBackend
from .dispatch import ListenerFactory
from .engine import RedisEngine
from .hub import Hub
from .listening import NoDelayEndpoint
from .node import Node
from .oauth import Introspector
from .redis_process import EmbeddedRedis
from .settings import ServerSettings
from .tickets import TicketStore
from .websocket import mask
from .websocket.close import GOING_AWAY
from .websocket.deflate import PerMessageDeflate
from .websocket.handshake import HandshakeConfig

__all__ = ["PresenceService", "make_service", "settings_from_options", "deflate_from_options"]

log = Logger()


def deflate_from_options(options):
    """The permessage-deflate configuration, or ``None`` when disabled."""
    if options["no-deflate"]:
        return None
    return PerMessageDeflate(
        server_max_window_bits=options["deflate-window-bits"],
        client_max_window_bits=options["deflate-client-window-bits"],
        server_context_takeover=bool(options["deflate-server-context-takeover"]),
        client_context_takeover=bool(options["deflate-client-context-takeover"]),
        compression_level=options["deflate-level"],
        memory_level=options["deflate-memory-level"],
        min_size=options["deflate-min-size"],
    )


def settings_from_options(options):
    deflate = deflate_from_options(options)
    return ServerSettings(
        handshake=HandshakeConfig(
            subprotocols=options["subprotocol"],
            origins=options["origin"] or None,
            extensions=[deflate] if deflate is not None else [],
        ),
        max_message_size=options["max-message-size"],
        max_head_size=options["max-head-size"],
        handshake_timeout=options["handshake-timeout"],
        close_timeout=options["close-timeout"],
        heartbeat_interval=options["heartbeat"],
        heartbeat_timeout=options["heartbeat-timeout"],
        max_outgoing_buffer=options["max-outgoing-buffer"],
        trusted_proxies=options["trusted-proxy"],
        max_bad_lines=options["max-bad-lines"],
        auth_timeout=options["auth-timeout"],
        anonymous=bool(options["anonymous"]),
        ticket_ip=options["ticket-ip"],
        max_connections=options["max-connections"],
        max_connections_per_ip=options["max-connections-per-ip"],
        max_message_rate=options["max-message-rate"],
        message_burst=options["message-burst"],
        max_fragments=options["max-fragments"],
        max_channels_per_session=options["max-channels-per-session"],
    )


class PresenceService(Service):
    """The running node: Redis (the user's, or an embedded one), the ticket
    store, the HTTP API and every client port.

    Starting: the embedded Redis (when no --redis was given) is started and
    answering before anything listens; then the API, then the client ports.
    Stopping: no new connections, every session closed with 1001 (going
    away), and waited for (at most the close timeout) so clients see a clean
    close rather than a reset; then the API, Redis and the embedded Redis."""

    def __init__(self, node, client_endpoints, redis_url=None, api_endpoint=None,
                 api_factory=None, api_options=None, ticket_options=None, reactor=None,
                 demo=False):
        if reactor is None:
            from twisted.internet import reactor
        self.node = node
        self.reactor = reactor
        self.factory = ListenerFactory(node)
        self.client_endpoints = list(client_endpoints)
        self.redis_url = redis_url
        self.api_endpoint = api_endpoint
        # The web layer (web.api.PresenceAPI) is given by the assembler: the
        # domain never imports web/.
        self.api_factory = api_factory
        self.api_options = api_options or {}
        self.ticket_options = ticket_options or {}
        #: --demo: the demo's key and page (presence/demo.py), and its backend.
        self.demo = Demo() if demo else None
        self.demo_backend = None
        self.embedded_redis = None
        self.engine = None
        self.hub = None
        self.ports = []
        self.api_port = None
        self.ready = None

    def startService(self):
        super().startService()
        self.ready = defer.ensureDeferred(self._start())
        self.ready.addErrback(self._failed)

    def _failed(self, failure):
        log.failure("presence: could not start", failure)
        _stop_with_failure(self.reactor)

    async def _start(self):
        log.info("presence: unmasking with {how}", how=mask.UNMASKING)
        if self.api_endpoint is not None:
            url = self.redis_url
            if url is None:
                self.embedded_redis = EmbeddedRedis(self.reactor)
                url = await self.embedded_redis.started()
            self.engine = RedisEngine(url, self.reactor,
                                      timeout=self.ticket_options.get("redis_timeout", 2.0))
            tickets = TicketStore(self.engine, ttl=self.ticket_options.get("ttl", 10),
                                  prefix=self.ticket_options.get("prefix", "presence:"),
                                  clock=self.reactor)
            self.node.tickets = tickets
            self.hub = Hub(self.engine, prefix=self.ticket_options.get("prefix", "presence:"),
                           node_heartbeat=self.ticket_options.get("node_heartbeat", 5.0),
                           stream_maxlen=self.ticket_options.get("stream_maxlen", 100000),
                           clock=self.reactor)
            self.hub.start(self.node)
            log.info("presence: node {node}", node=self.hub.node_id)
            api_options = dict(self.api_options)
            if self.demo is not None:
                api_options["demo"] = self.demo
                self.demo_backend = DemoBackend(url, self.hub, self.reactor)
                self.demo_backend.start()
            api = self.api_factory(tickets, hub=self.hub,
                                   trusted_proxies=self.node.settings.trusted_proxies,
                                   **api_options)
            endpoint, description = self.api_endpoint
            self.api_port = await endpoint.listen(Site(api.resource()))
            log.info("presence: HTTP API on {name} ({url})", name=description,
                     url=_url("http", self.api_port))
            if api.api_key is None and api.introspector is None and self.demo is None:
                log.warn("presence: no --api-key and no --oauth-introspect: the API can "
                         "issue no tickets")
        for endpoint, description in self.client_endpoints:
            port = await endpoint.listen(self.factory)
            self.ports.append(port)
            if self.hub is not None:
                self.hub.addresses.append(_url("ws", port))
            log.info("presence: WebSocket and firepresence on {name} ({url})",
                     name=description, url=_url("ws", port))
        if self.demo is not None and self.api_port is not None:
            self.demo.set_client_ports(zip([d for _, d in self.client_endpoints], self.ports))
            log.warn("presence: DEMO ON: open {url}demo in two browser tabs (a demo-only "
                     "ticket key is handed to that page; never use --demo in production)",
                     url=_url("http", self.api_port))

    async def _stop(self):
        if self.ready is not None and not self.ready.called:
            self.ready.cancel()
        for port in self.ports:
            await port.stopListening()
        self.ports = []
        node = self.node
        if node.sessions:
            log.info("presence: closing {count} sessions", count=len(node.sessions))
            node.close_all(GOING_AWAY, "server shutting down")
            deadline = node.clock.seconds() + node.settings.close_timeout + 1
            while node.sessions and node.clock.seconds() < deadline:
                await task.deferLater(node.clock, 0.05, lambda: None)
        node.stop()
        if self.demo_backend is not None:
            await self.demo_backend.stop()
            self.demo_backend = None
        if self.hub is not None:
            # The sessions' offline events are out; then the node leaves Redis.
            await self.hub.stop()
            self.hub = None
        if self.api_port is not None:
            await self.api_port.stopListening()
            self.api_port = None
        if self.engine is not None:
            await self.engine.disconnect()
            self.engine = None
        if self.embedded_redis is not None:
            await self.embedded_redis.stopService()
            self.embedded_redis = None

    def stopService(self):
        super().stopService()
        return defer.ensureDeferred(self._stop())


def _url(scheme, port):
    """A URL for a listening port, for the start-up log."""
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return str(address)
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = "[%s]" % host
    return "%s://%s:%d/" % (scheme, host, address.port)


def _stop_with_failure(reactor):
    """Stop the reactor, and make the process exit with status 1 (twistd
    itself exits 0 however the reactor stopped; a supervisor such as
    systemd's Restart=on-failure needs to see the failure)."""
    if not _stop_with_failure.registered:
        _stop_with_failure.registered = True

        def exit_failed():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        # Registered last, run first at interpreter exit: after twistd has
        # shut down and removed its pidfile.
        atexit.register(exit_failed)
    if reactor.running:
        reactor.callLater(0, reactor.stop)


_stop_with_failure.registered = False


def make_service(options, api_factory, application=None, reactor=None, admin_factory=None):
    """The service for ``twistd presence`` options; ``api_factory`` builds the
    HTTP API from the ticket store (web.api.PresenceAPI), ``admin_factory``
    the dashboard (web.admin.AdminApp)."""
    if reactor is None:
        from twisted.internet import reactor
    node = Node(application or Application(), settings_from_options(options), reactor)
    clients = [(NoDelayEndpoint(endpoints.serverFromString(reactor, description)), description)
               for description in options["listen"]]
    api = (endpoints.serverFromString(reactor, options["api"]), options["api"])
    introspector = None
    if options["oauth-introspect"]:
        introspector = Introspector(options["oauth-introspect"], options["oauth-client-id"],
                                    options["oauth-client-secret"], reactor=reactor)
    service = PresenceService(
        node, clients, redis_url=options["redis"], api_endpoint=api, api_factory=api_factory,
        api_options={"api_key": options["api-key"], "introspector": introspector},
        ticket_options={"ttl": options["ticket-ttl"], "prefix": options["redis-prefix"],
                        "redis_timeout": options["redis-timeout"],
                        "node_heartbeat": options["node-heartbeat"],
                        "stream_maxlen": options["stream-maxlen"]},
        reactor=reactor, demo=options["demo"])
    if admin_factory is None or not options["admin"]:
        return service
    admin = AdminService(service, endpoints.serverFromString(reactor, options["admin"]),
                         options["admin"], admin_factory, options["admin-password"], reactor)
    both = MultiService()
    service.setServiceParent(both)
    admin.setServiceParent(both)  # stopped first: MultiService stops in reverse
    return both


class AdminService(Service):
    """The dashboard on --admin, once the node's hub is running."""

    def __init__(self, presence, endpoint, description, admin_factory, password, reactor):
        self.presence = presence
        self.endpoint = endpoint
        self.description = description
        self.admin_factory = admin_factory
        self.password = password
        self.reactor = reactor
        self.admin = None
        self.port = None

    def startService(self):
        super().startService()
        defer.ensureDeferred(self._start()).addErrback(self._failed)

    def _failed(self, failure):
        # A dashboard that was asked for and cannot listen is a
        # configuration error like any other port's: stop, and say so.
        log.failure("presence: the dashboard could not start", failure)
        _stop_with_failure(self.reactor)

    async def _start(self):
        await self.presence.ready
        if self.presence.hub is None:
            return
        self.admin = self.admin_factory(
            ClusterView(self.presence.hub, self.reactor), self.presence.node, self.password,
            secure_cookies=self.description.startswith("ssl:"), clock=self.reactor)
        self.admin.start()
        self.port = await self.endpoint.listen(Site(self.admin.resource()))
        log.info("presence: dashboard on {name} ({url}){login}", name=self.description,
                 url=_url("http", self.port),
                 login="" if self.password else " without a password (loopback only)")

    async def _stop(self):
        if self.admin is not None:
            self.admin.stop()
        if self.port is not None:
            await self.port.stopListening()
            self.port = None

    def stopService(self):
        super().stopService()
        return defer.ensureDeferred(self._stop())
