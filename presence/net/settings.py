"""The limits and timers the client side of a node runs with, and their
defaults: each is defined here once, and ``twistd presence --help``
(presence/app/options.py) shows these values. Every limit bounds something a
client controls; docs/configuration.md and docs/operations.md explain each
default."""

import dataclasses

from ..firepresence.connection import DEFAULT_MAX_BAD_LINES
from ..websocket.handshake import HandshakeConfig
from ..websocket.limits import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from ..wire.clientip import TrustedProxies
from ..wire.httphead import DEFAULT_MAX_HEAD_SIZE

__all__ = ["ServerSettings", "DEFAULTS", "TICKET_IP_POLICIES"]

#: What a ticket redeemed from another IP than its own does: ``off``
#: ignores it, ``warn`` records it on the session (and counts it),
#: ``strict`` refuses the redemption.
TICKET_IP_POLICIES = ("off", "warn", "strict")


@dataclasses.dataclass
class ServerSettings:
    #: WebSocket handshake configuration (subprotocols, origins, extensions).
    handshake: HandshakeConfig = dataclasses.field(default_factory=HandshakeConfig)
    #: Largest message accepted (bytes, after reassembly and inflating; for
    #: firepresence, the longest line); larger: 1009 / an error line.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Largest request head accepted (bytes); larger: 431.
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    #: Seconds a connection may take to send its request head: a client on
    #: a slow mobile link sends a 2 KiB head in well under a second; ten
    #: bound what a connection that never finishes its head can hold.
    handshake_timeout: float = 10.0
    #: Seconds to wait for the peer's Close (and for the TCP close after
    #: ours) before dropping the connection.
    close_timeout: float = 5.0
    #: Seconds between heartbeat pings; 0 disables heartbeats. Half a minute
    #: keeps NAT and proxy mappings alive (most drop idle flows after 60 s
    #: or more) at one small frame per session per interval.
    heartbeat_interval: float = 30.0
    #: Seconds a ping may wait for its pong before the session is closed
    #: with 1011 (heartbeat timeout).
    heartbeat_timeout: float = 10.0
    #: Bytes that may be queued for a client beyond the transport's own
    #: 64 KiB buffer while it is not reading; past this the client is
    #: dropped as a slow consumer.
    max_outgoing_buffer: int = 1024 * 1024
    #: Proxies whose X-Forwarded-For / X-Real-IP are believed (networks, or
    #: a TrustedProxies).
    trusted_proxies: TrustedProxies = ()
    #: Malformed firepresence lines a session may send before it is closed
    #: with 1007.
    max_bad_lines: int = DEFAULT_MAX_BAD_LINES
    #: Seconds a session without a ticket in its handshake has to send
    #: {"type": "auth", "ticket": ...}; then it is closed with 4408.
    auth_timeout: float = 10.0
    #: Whether a session may go without a ticket (account None).
    anonymous: bool = False
    #: What a ticket redeemed from another IP than its own does: one of
    #: TICKET_IP_POLICIES.
    ticket_ip: str = "warn"
    #: Connections the node holds at once (handshakes included); more are
    #: refused with 503, so that a balancer sends them to another node. An
    #: idle session costs about 1.6 KiB of Python memory, a few KiB of
    #: kernel buffers and a file descriptor; 50,000 keeps one process well
    #: inside its memory and its heartbeat sweep. 0: no limit.
    max_connections: int = 50000
    #: Connections from one client IP address (after trusted proxies and
    #: the PROXY protocol); more are refused with 429. One host has no
    #: business holding hundreds; an office or a carrier-grade NAT behind
    #: one address may, which is why it is not lower. 0: no limit.
    max_connections_per_ip: int = 500
    #: Messages per second a session may send on average (every data
    #: message, ping, pong and firepresence line counts), and how many it
    #: may send at once: a token bucket. Past it the session is closed with
    #: 1008. Presence clients send a few messages a minute; a game client's
    #: 30-60 updates a second fit too. A rate of 0: no limit.
    max_message_rate: float = 100.0
    message_burst: int = 200
    #: Bytes a second a session's compressed (permessage-deflate) messages
    #: may inflate to on average: a token bucket holding two seconds of it,
    #: and never less than two messages of max_message_size. Compressed
    #: data inflates up to about 1000 times, so the message rate alone lets
    #: one session cost a core; past it the session is closed with 1008.
    #: Text a person or a game sends inflates a few times. 0: no limit.
    max_inflated_rate: int = 1024 * 1024
    #: Frames one WebSocket message may come in; more: 1008. 0: no limit.
    max_fragments: int = DEFAULT_MAX_FRAGMENTS
    #: Channels a session may subscribe to, its account's own apart (the
    #: hub); more are answered with an error. 0: no limit.
    max_channels_per_session: int = 100

    def __post_init__(self):
        if not isinstance(self.trusted_proxies, TrustedProxies):
            self.trusted_proxies = TrustedProxies(self.trusted_proxies)

    @property
    def inflated_burst(self):
        """The size of --max-inflated-rate's bucket: two seconds at the
        rate, and never less than two of the largest messages (one such
        message, compressed, must get through)."""
        return 2 * max(self.max_inflated_rate, self.max_message_size)


#: The defaults, as one object (what --help shows).
DEFAULTS = ServerSettings()
