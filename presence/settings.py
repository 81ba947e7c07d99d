"""The limits and timers a node runs with. Every limit bounds something a
client controls; docs/configuration.md explains each default."""

from .clientip import TrustedProxies
from .httphead import DEFAULT_MAX_HEAD_SIZE
from .websocket.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE
from .websocket.handshake import HandshakeConfig

__all__ = ["ServerSettings", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_MAX_CONNECTIONS_PER_IP",
           "DEFAULT_MAX_MESSAGE_RATE", "DEFAULT_MESSAGE_BURST",
           "DEFAULT_MAX_CHANNELS_PER_SESSION"]

#: Connections a node holds at once (handshakes included); more are refused
#: with 503, so that a balancer sends them to another node. An idle session
#: costs about 1.6 KiB of Python memory, a few KiB of kernel buffers and a
#: file descriptor; 50,000 keeps one process well inside its memory and its
#: heartbeat sweep (docs/operations.md).
DEFAULT_MAX_CONNECTIONS = 50000
#: Connections from one client IP address (after trusted proxies and the
#: PROXY protocol); more are refused with 429. One host has no business
#: holding hundreds; an office or a carrier-grade NAT behind one address
#: may, which is why it is not lower.
DEFAULT_MAX_CONNECTIONS_PER_IP = 500
#: Messages per second a session may send on average (every data message,
#: ping, pong and firepresence line counts), and how many it may send at
#: once: a token bucket. Past it the session is closed with 1008. Presence
#: clients send a few messages a minute; a game client's 30-60 updates a
#: second fit too.
DEFAULT_MAX_MESSAGE_RATE = 100.0
DEFAULT_MESSAGE_BURST = 200
#: Channels one session may subscribe to (its account's own apart).
DEFAULT_MAX_CHANNELS_PER_SESSION = 100


class ServerSettings:
    def __init__(
        self,
        handshake=None,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
        max_head_size=DEFAULT_MAX_HEAD_SIZE,
        handshake_timeout=10.0,
        close_timeout=5.0,
        heartbeat_interval=30.0,
        heartbeat_timeout=10.0,
        max_outgoing_buffer=1024 * 1024,
        trusted_proxies=(),
        max_bad_lines=10,
        auth_timeout=10.0,
        anonymous=False,
        ticket_ip="warn",
        max_connections=DEFAULT_MAX_CONNECTIONS,
        max_connections_per_ip=DEFAULT_MAX_CONNECTIONS_PER_IP,
        max_message_rate=DEFAULT_MAX_MESSAGE_RATE,
        message_burst=DEFAULT_MESSAGE_BURST,
        max_fragments=DEFAULT_MAX_FRAGMENTS,
        max_channels_per_session=DEFAULT_MAX_CHANNELS_PER_SESSION,
    ):
        #: WebSocket handshake configuration (subprotocols, origins, extensions).
        self.handshake = handshake if handshake is not None else HandshakeConfig()
        #: Largest message accepted (bytes, after reassembly and inflating;
        #: for firepresence, the longest line); larger: 1009 / an error line.
        self.max_message_size = max_message_size
        #: Largest request head accepted (bytes); larger: 431.
        self.max_head_size = max_head_size
        #: Seconds a connection may take to send its request head.
        self.handshake_timeout = handshake_timeout
        #: Seconds to wait for the peer's Close (and for the TCP close after
        #: ours) before dropping the connection.
        self.close_timeout = close_timeout
        #: Seconds between heartbeat pings; 0 disables heartbeats.
        self.heartbeat_interval = heartbeat_interval
        #: Seconds a ping may wait for its pong before the session is closed
        #: with 1011 (heartbeat timeout).
        self.heartbeat_timeout = heartbeat_timeout
        #: Bytes that may be queued for a client beyond the transport's own
        #: 64 KiB buffer while it is not reading; past this the client is
        #: dropped as a slow consumer.
        self.max_outgoing_buffer = max_outgoing_buffer
        #: Proxies whose X-Forwarded-For / X-Real-IP are believed.
        self.trusted_proxies = (trusted_proxies if isinstance(trusted_proxies, TrustedProxies)
                                else TrustedProxies(trusted_proxies))
        #: Malformed firepresence lines a session may send before it is
        #: closed with 1007.
        self.max_bad_lines = max_bad_lines
        #: Seconds a session without a ticket in its handshake has to send
        #: {"type": "auth", "ticket": ...}; then it is closed with 4408.
        self.auth_timeout = auth_timeout
        #: Whether a session may go without a ticket (account None).
        self.anonymous = anonymous
        #: What a ticket redeemed from another IP than its own does: "off",
        #: "warn" (recorded on the session) or "strict" (refused).
        self.ticket_ip = ticket_ip
        #: Connections the node holds at once; more get 503. 0: no limit.
        self.max_connections = max_connections
        #: Connections from one client IP; more get 429. 0: no limit.
        self.max_connections_per_ip = max_connections_per_ip
        #: Messages per second a session may send on average, and at once;
        #: past that it is closed with 1008. A rate of 0: no limit.
        self.max_message_rate = max_message_rate
        self.message_burst = message_burst
        #: Frames one WebSocket message may come in; more: 1008. 0: no limit.
        self.max_fragments = max_fragments
        #: Channels a session may subscribe to (the hub); more: an error.
        #: 0: no limit.
        self.max_channels_per_session = max_channels_per_session
