"""From ``twistd presence`` options to the settings objects each layer takes:
the client side's (presence/net/settings.py), the hub's
(presence/hub/settings.py) and the node's as a whole (:class:`NodeSettings`:
Redis, the HTTP API's credentials, the demo)."""

import dataclasses

from ..hub.settings import HubSettings
from ..net.settings import ServerSettings
from ..redis.connection import DEFAULT_TIMEOUT
from ..webhooks.settings import WebhookSettings
from ..websocket.deflate import PerMessageDeflate
from ..websocket.handshake import HandshakeConfig
from .workers import workers_of

__all__ = ["NodeSettings", "deflate_from_options", "server_settings_from_options",
           "hub_settings_from_options", "node_settings_from_options",
           "webhook_settings_from_options"]


@dataclasses.dataclass
class NodeSettings:
    """What the service needs beside the client side's settings."""

    hub: HubSettings = dataclasses.field(default_factory=HubSettings)
    #: The Redis to use; None: an embedded redis-server (presence/redis/embedded.py).
    redis_url: str = None
    #: Every --redis, shard 0 first (several: presence/redis/shards.py);
    #: empty: ``redis_url`` alone.
    redis_urls: tuple = ()
    redis_timeout: float = DEFAULT_TIMEOUT
    #: The backends' key for the HTTP API, or None.
    api_key: str = None
    #: An OAuth introspector (presence/app/oauth.py) for users' own tickets, or None.
    introspector: object = None
    #: Whether --demo is on (presence/app/demo.py).
    demo: bool = False
    #: The webhooks (presence/webhooks/settings.py); no URL: none.
    webhooks: WebhookSettings = dataclasses.field(default_factory=WebhookSettings)


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


#: Options named otherwise than the setting they set (a setting's option is
#: otherwise its name with dashes: max_message_size is --max-message-size).
_OPTION_OF = {"heartbeat_interval": "heartbeat", "trusted_proxies": "trusted-proxy"}


def server_settings_from_options(options):
    """The ServerSettings of ``options``: every setting from its option."""
    deflate = deflate_from_options(options)
    values = {}
    for field in dataclasses.fields(ServerSettings):
        if field.name != "handshake":
            value = options[_OPTION_OF.get(field.name, field.name.replace("_", "-"))]
            values[field.name] = bool(value) if field.type is bool else value
    return ServerSettings(
        handshake=HandshakeConfig(
            subprotocols=options["subprotocol"],
            origins=options["origin"] or None,
            extensions=[deflate] if deflate is not None else [],
        ),
        **values)


def hub_settings_from_options(options):
    return HubSettings(prefix=options["redis-prefix"], node_heartbeat=options["node-heartbeat"],
                       stream_maxlen=options["stream-maxlen"], ticket_ttl=options["ticket-ttl"],
                       history=tuple(options["history"]),
                       resume_ttl=options["resume-ttl"],
                       resume_max_age=options["resume-max-age"],
                       event_log_maxlen=options["event-log-maxlen"],
                       leave_delay=options["leave-delay"],
                       max_whisper_rate=options["max-whisper-rate"],
                       whisper_burst=options["whisper-burst"],
                       max_whisper_size=options["max-whisper-size"],
                       workers_of=workers_of())


def node_settings_from_options(options, introspector=None):
    return NodeSettings(hub=hub_settings_from_options(options), redis_url=options["redis"],
                        redis_urls=tuple(options.get("redis-shards") or ()),
                        redis_timeout=options["redis-timeout"], api_key=options["api-key"],
                        introspector=introspector, demo=bool(options["demo"]),
                        webhooks=webhook_settings_from_options(options))


def webhook_settings_from_options(options):
    return WebhookSettings(urls=tuple(options["webhook"]), secret=options["webhook-secret"],
                           events=options["webhook-events"], timeout=options["webhook-timeout"],
                           max_age=options["webhook-max-age"])
