"""Assembling the running node from its settings: the service tree behind
``twistd presence``."""

from twisted.application.service import MultiService, Service
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger

from ..hub.hub import Hub, ShardsDisagree
from ..net.dispatch import SPOKEN, ListenerFactory
from ..net.listening import NoDelayEndpoint
from ..net.server import Server
from ..net.twisted_internals import install_lean_reads
from ..redis.embedded import EmbeddedRedis
from ..redis.engine import RedisEngine
from ..webhooks.delivery import Webhooks
from ..websocket import mask
from ..wire.close import GOING_AWAY
from .config import NodeSettings, node_settings_from_options, server_settings_from_options
from .demo import Demo, DemoBackend
from .exiting import stop_with_failure
from .oauth import Introspector
from .workers import listening_reactors

__all__ = ["PresenceService", "AdminService", "make_service"]

log = Logger()


class PresenceService(Service):
    """The running node: Redis (the user's, or an embedded one), the hub, the
    HTTP API and every client port.

    Starting: the embedded Redis (when no --redis was given) is started and
    answering before anything listens; then the API, then the client ports.
    Stopping: no new connections, every session closed with 1001 (going
    away), and waited for (at most the close timeout) so clients see a clean
    close rather than a reset; then the hub, the API, Redis and the
    embedded Redis.

    ``server``: the node's client side; ``client_endpoints``: ``[(endpoint,
    description)]``; ``settings``: its NodeSettings. Without an
    ``api_endpoint`` there is no Redis, hub or API (the client ports alone,
    as in tests). ``api_factory`` builds the HTTP API (presence.web.api's
    PresenceAPI), given by the plugin: nothing outside presence/web/ imports
    it."""

    def __init__(self, server, client_endpoints, settings=None, api_endpoint=None,
                 api_factory=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.server = server
        self.settings = settings if settings is not None else NodeSettings()
        self.reactor = reactor
        self.factory = ListenerFactory(server)
        self.client_endpoints = list(client_endpoints)
        self.api_endpoint = api_endpoint
        self.api_factory = api_factory
        #: --demo: the demo's key and page (presence/app/demo.py), and its backend.
        self.demo = Demo() if self.settings.demo else None
        self.demo_backend = None
        self.embedded_redis = None
        self.engine = None
        #: The engines of shards 1, 2, ... (several --redis).
        self.shard_engines = []
        self.hub = None
        #: The webhooks this node delivers (presence/webhooks/), or None.
        self.webhooks = None
        self.ports = []
        self.api_port = None
        self.ready = None

    def startService(self):
        super().startService()
        self.ready = defer.ensureDeferred(self._start())
        self.ready.addErrback(self._failed)

    def _failed(self, failure):
        if failure.check(ShardsDisagree):
            log.error("presence: not starting: {why}", why=failure.getErrorMessage())
        else:
            log.failure("presence: could not start", failure)
        stop_with_failure(self.reactor)

    async def _start(self):
        log.info("presence: unmasking with {how}", how=mask.UNMASKING)
        if install_lean_reads(self.reactor):
            log.info("presence: lean reads on (PRESENCE_LEAN_READS=0 turns them off)")
        if self.api_endpoint is not None:
            url = await self._start_hub()
            await self._start_api(url)
        for endpoint, description in self.client_endpoints:
            port = await endpoint.listen(self.factory)
            self.ports.append(port)
            if self.hub is not None:
                self.hub.addresses.append(_url("ws", port))
            log.info("presence: {protocols} on {name} ({url})", protocols=SPOKEN,
                     name=description, url=_url("ws", port))
        if self.demo is not None and self.api_port is not None:
            self.demo.set_client_ports(zip([d for _, d in self.client_endpoints], self.ports))
            log.warn("presence: DEMO ON: open {url}demo in two browser tabs (a demo-only "
                     "ticket key is handed to that page; never use --demo in production)",
                     url=_url("http", self.api_port))

    async def _start_hub(self):
        """Redis (embedded unless given), the hub and its tickets; returns
        the Redis URL."""
        settings = self.settings
        url = settings.redis_url
        if url is None:
            self.embedded_redis = EmbeddedRedis(self.reactor)
            url = await self.embedded_redis.started()
        urls = list(settings.redis_urls) if len(settings.redis_urls) > 1 else [url]
        engines = [RedisEngine(shard, self.reactor, timeout=settings.redis_timeout)
                   for shard in urls]
        self.engine = engines[0]
        self.shard_engines = engines[1:]
        hub = Hub(engines, self.reactor, settings.hub)
        # A node whose shard list is not the cluster's does not start
        # (presence/redis/shards.py check_shards says why).
        await hub.check_shards(urls)
        self.hub = hub
        self.server.tickets = self.hub.tickets
        self.hub.start(self.server)
        log.info("presence: node {node}", node=self.hub.node_id)
        self._start_webhooks()
        return url

    def _start_webhooks(self):
        webhooks = self.settings.webhooks
        if not webhooks.urls:
            return
        self.webhooks = Webhooks(webhooks, self.hub.engines, self.hub.keys, self.hub.node_id,
                                 self.reactor, reactor=self.reactor)
        self.webhooks.start()
        log.info("presence: webhooks to {urls}", urls=", ".join(
            hooks[0].shown for hooks in self.webhooks.by_url.values()))

    async def _start_api(self, url):
        settings = self.settings
        if self.demo is not None:
            self.demo_backend = DemoBackend(url, self.hub, self.reactor)
            self.demo_backend.start()
        api = self.api_factory(self.hub.tickets, api_key=settings.api_key,
                               introspector=settings.introspector,
                               trusted_proxies=self.server.settings.trusted_proxies,
                               hub=self.hub, demo=self.demo,
                               throttle=self.server.auth_throttle, clock=self.server.clock)
        endpoint, description = self.api_endpoint
        # Bodies bounded before they are read (presence/web/bounded.py).
        self.api_port = await endpoint.listen(api.site(self.server.stats))
        log.info("presence: HTTP API on {name} ({url})", name=description,
                 url=_url("http", self.api_port))
        if settings.api_key is None and settings.introspector is None and self.demo is None:
            log.warn("presence: no --api-key and no --oauth-introspect: the API can "
                     "issue no tickets")

    async def _close_sessions(self):
        server = self.server
        if server.sessions:
            log.info("presence: closing {count} sessions", count=len(server.sessions))
            server.close_all(GOING_AWAY, "server shutting down")
            deadline = server.clock.seconds() + server.settings.close_timeout + 1
            while server.sessions and server.clock.seconds() < deadline:
                await task.deferLater(server.clock, 0.05, lambda: None)
        server.stop()

    async def _stop(self):
        if self.ready is not None and not self.ready.called:
            self.ready.cancel()
        for port in self.ports:
            await port.stopListening()
        self.ports = []
        await self._close_sessions()
        # In this order: the demo's reader, the webhooks (a batch under way
        # stays pending for another node), the hub once the sessions'
        # offline events are out (then the node leaves Redis), the API,
        # the connection to Redis, and the Redis started for this node.
        for name, stop in (("demo_backend", "stop"), ("webhooks", "stop"), ("hub", "stop"),
                           ("api_port", "stopListening"), ("engine", "disconnect"),
                           ("embedded_redis", "stopService")):
            running = getattr(self, name)
            if running is not None:
                await getattr(running, stop)()
                setattr(self, name, None)
            if name == "engine":
                for engine in self.shard_engines:
                    await engine.disconnect()
                self.shard_engines = []

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




def make_service(options, api_factory, handler=None, reactor=None, admin_factory=None):
    """The service for ``twistd presence`` options; ``api_factory`` builds the
    HTTP API (presence.web.api's PresenceAPI), ``admin_factory`` the
    dashboard (presence.web.admin's AdminApp)."""
    if reactor is None:
        from twisted.internet import reactor
    server = Server(handler, server_settings_from_options(options), reactor)
    # In a worker (--workers), every endpoint listens on a socket its
    # parent opened (presence/app/workers.py).
    listening = iter(listening_reactors(reactor, options))
    clients = [(NoDelayEndpoint(endpoints.serverFromString(next(listening), description)),
                description) for description in options["listen"]]
    api = (endpoints.serverFromString(next(listening), options["api"]), options["api"])
    introspector = None
    if options["oauth-introspect"]:
        introspector = Introspector(options["oauth-introspect"], options["oauth-client-id"],
                                    options["oauth-client-secret"], reactor=reactor)
    service = PresenceService(server, clients, node_settings_from_options(options, introspector),
                              api_endpoint=api, api_factory=api_factory, reactor=reactor)
    if admin_factory is None or not options["admin"]:
        return service
    admin_endpoint = endpoints.serverFromString(next(listening), options["admin"])
    admin = AdminService(service, admin_endpoint, options["admin"], admin_factory,
                         options["admin-password"], reactor)
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
        stop_with_failure(self.reactor)

    async def _start(self):
        await self.presence.ready
        if self.presence.hub is None:
            return
        self.admin = self.admin_factory(
            self.presence.hub, self.presence.server, self.password,
            secure_cookies=self.description.startswith("ssl:"), clock=self.reactor,
            webhooks=self.presence.webhooks)
        self.admin.start()
        self.port = await self.endpoint.listen(self.admin.site(self.presence.server.stats))
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
