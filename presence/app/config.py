"""From ``twistd presence`` options to the settings objects each layer takes:
the client side's (presence/net/settings.py), the hub's
(presence/hub/settings.py) and the node's as a whole (:class:`NodeSettings`:
Redis, the HTTP API's credentials, the demo)."""

import dataclasses

from ..hub.settings import HubSettings
from ..net.settings import ServerSettings
from ..redis.connection import DEFAULT_TIMEOUT
from ..websocket.deflate import PerMessageDeflate
from ..websocket.handshake import HandshakeConfig

__all__ = ["NodeSettings", "deflate_from_options", "server_settings_from_options",
           "hub_settings_from_options", "node_settings_from_options"]


@dataclasses.dataclass
class NodeSettings:
    """What the service needs beside the client side's settings."""

    hub: HubSettings = dataclasses.field(default_factory=HubSettings)
    #: The Redis to use; None: an embedded redis-server (presence/redis/embedded.py).
    redis_url: str = None
    redis_timeout: float = DEFAULT_TIMEOUT
    #: The backends' key for the HTTP API, or None.
    api_key: str = None
    #: An OAuth introspector (presence/app/oauth.py) for users' own tickets, or None.
    introspector: object = None
    #: Whether --demo is on (presence/app/demo.py).
    demo: bool = False


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


def server_settings_from_options(options):
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


def hub_settings_from_options(options):
    return HubSettings(prefix=options["redis-prefix"], node_heartbeat=options["node-heartbeat"],
                       stream_maxlen=options["stream-maxlen"], ticket_ttl=options["ticket-ttl"])


def node_settings_from_options(options, introspector=None):
    return NodeSettings(hub=hub_settings_from_options(options), redis_url=options["redis"],
                        redis_timeout=options["redis-timeout"], api_key=options["api-key"],
                        introspector=introspector, demo=bool(options["demo"]))
