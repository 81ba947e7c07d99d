"""Assembling the running server from options: the service tree behind
``twistd presence``."""

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger

from .application import Application
from .dispatch import ListenerFactory
from .listening import NoDelayEndpoint
from .node import Node
from .settings import ServerSettings
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
    )


class PresenceService(MultiService):
    """Listens on every endpoint; on shutdown stops accepting, closes every
    session with 1001 (going away), and waits for them to end (at most the
    close timeout) so clients see a clean close rather than a reset."""

    def __init__(self, node, endpoints_and_descriptions):
        super().__init__()
        self.node = node
        self.factory = ListenerFactory(node)
        for endpoint, description in endpoints_and_descriptions:
            listener = StreamServerEndpointService(endpoint, self.factory)
            listener.setName("listen %s" % description)
            listener.setServiceParent(self)

    def startService(self):
        log.info("presence: unmasking with {how}",
                 how="wsaccel (C)" if mask.ACCELERATED else "pure Python")
        super().startService()
        for service in self:
            log.info("presence: WebSocket and firepresence on {name}",
                     name=service.name[len("listen "):])

    @defer.inlineCallbacks
    def stopService(self):
        yield super().stopService()  # stop accepting new connections first
        node = self.node
        if node.sessions:
            log.info("presence: closing {count} sessions", count=len(node.sessions))
            node.close_all(GOING_AWAY, "server shutting down")
            deadline = node.clock.seconds() + node.settings.close_timeout + 1
            while node.sessions and node.clock.seconds() < deadline:
                yield task.deferLater(node.clock, 0.05, lambda: None)


def make_service(options, application=None, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    node = Node(application or Application(), settings_from_options(options), reactor)
    listeners = [(NoDelayEndpoint(endpoints.serverFromString(reactor, description)), description)
                 for description in options["listen"]]
    return PresenceService(node, listeners)
