"""Command-line options of ``twistd presence``."""

import ipaddress
import os

from twisted.python import usage

from .engine import parse_redis_url
from .httphead import DEFAULT_MAX_HEAD_SIZE
from .settings import (
    DEFAULT_MAX_CHANNELS_PER_SESSION,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_MESSAGE_RATE,
    DEFAULT_MESSAGE_BURST,
)
from .tickets import IP_POLICIES
from .websocket.connection import DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["Options"]


def _number(kind, doc, low=0, above=False):
    """A coercer for usage.Options: a ``kind`` (int or float) of at least
    ``low``, or greater than ``low`` when ``above``; ``doc`` is shown in
    --help after the option's own text."""
    def coerce(value):
        number = kind(value)
        if number < low or (above and number == low):
            raise ValueError("must be %s %s" % ("greater than" if above else "at least", low))
        return number

    coerce.coerceDoc = doc
    return coerce


def _int_in(low, high):
    def coerce(value):
        number = int(value)
        if not low <= number <= high:
            raise ValueError("must be %d-%d" % (low, high))
        return number

    coerce.coerceDoc = "%d-%d." % (low, high)
    return coerce


_BYTES = _number(int, "Bytes, greater than 0.", above=True)
_SECONDS = _number(float, "Seconds, greater than 0.", above=True)
_LIMIT = _number(int, "0: no limit.")


def _loopback(description):
    """Whether a server endpoint string listens on loopback only (or on a
    unix socket)."""
    kind = description.split(":", 1)[0]
    if kind == "unix":
        return True
    for part in description.split(":"):
        if part.startswith("interface="):
            host = part[len("interface="):].replace("\\", "").strip("[]")
            try:
                return ipaddress.ip_address(host).is_loopback
            except ValueError:
                return host == "localhost"
    return False  # no interface: every interface


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Presence: a presence server for real-time applications. Serves "
        "WebSocket (RFC 6455) and firepresence on every --listen endpoint. See "
        "docs/ for every option, limit and close code."
    )

    optParameters = [
        ["max-message-size", None, DEFAULT_MAX_MESSAGE_SIZE,
         "Largest message accepted, in bytes; larger ones close the session with 1009.",
         _BYTES],
        ["max-head-size", None, DEFAULT_MAX_HEAD_SIZE,
         "Largest HTTP request head accepted, in bytes; larger ones get 431.", _BYTES],
        ["handshake-timeout", None, 10.0,
         "Seconds a client may take to send its request head.", _SECONDS],
        ["close-timeout", None, 5.0,
         "Seconds to wait for the client's answer to a Close before dropping it.",
         _SECONDS],
        ["heartbeat", None, 30.0,
         "Seconds between heartbeat pings to every session (0 disables).",
         _number(float, "Seconds; 0 disables.")],
        ["heartbeat-timeout", None, 10.0,
         "Seconds a heartbeat ping may wait for its pong; then the session is closed "
         "with 1011.", _SECONDS],
        ["max-outgoing-buffer", None, 1024 * 1024,
         "Bytes that may queue for a client that is not reading before it is dropped.",
         _BYTES],
        ["redis", None, None,
         "Redis to use: redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH[?db=N]. "
         "Not given: a redis-server child process on a private unix socket."],
        ["redis-prefix", None, "presence:", "Prefix of every Redis key Presence uses."],
        ["redis-timeout", None, 2.0,
         "Seconds a Redis command may take before the caller gets an error (503).",
         _SECONDS],
        ["api", None, "tcp:8081:interface=127.0.0.1",
         "Endpoint of the HTTP API (tickets, publishing, presence)."],
        ["admin", None, "tcp:8082:interface=127.0.0.1",
         "Endpoint of the admin dashboard (and /metrics); 'none' turns it off."],
        ["admin-password", None, None,
         "Password of the dashboard (default: the environment variable "
         "PRESENCE_ADMIN_PASSWORD). Without one the dashboard only starts on a loopback "
         "interface, and asks no login there."],
        ["api-key", None, None,
         "Key backends send as 'Authorization: Bearer KEY' (default: the environment "
         "variable PRESENCE_API_KEY)."],
        ["oauth-introspect", None, None,
         "RFC 7662 token introspection URL: users may get their own tickets with an OAuth "
         "access token."],
        ["oauth-client-id", None, None, "Client id for the introspection endpoint."],
        ["oauth-client-secret", None, None,
         "Client secret for the introspection endpoint (default: the environment variable "
         "PRESENCE_OAUTH_CLIENT_SECRET)."],
        ["ticket-ttl", None, 10, "Seconds a ticket can be redeemed.",
         _number(int, "Whole seconds, greater than 0.", above=True)],
        ["ticket-ip", None, "warn",
         "A ticket redeemed from another IP than its own: off (ignored), warn (recorded), "
         "strict (refused)."],
        ["auth-timeout", None, 10.0,
         "Seconds a session without a ticket in its handshake has to send one.",
         _SECONDS],
        ["node-heartbeat", None, 5.0,
         "Seconds between a node's announcements in Redis; a node silent for three is "
         "dead, and its sessions leave presence.", _SECONDS],
        ["stream-maxlen", None, 100000,
         "Approximate length bound of the Redis Stream carrying client publishes to "
         "backends.", _number(int, "Entries, greater than 0.", above=True)],
        ["max-bad-lines", None, 10,
         "Malformed firepresence lines a session may send before it is closed with 1007.",
         _number(int, "Lines, greater than 0.", above=True)],
        ["max-connections", None, DEFAULT_MAX_CONNECTIONS,
         "Client connections this node holds at once; more are refused with 503.", _LIMIT],
        ["max-connections-per-ip", None, DEFAULT_MAX_CONNECTIONS_PER_IP,
         "Client connections from one IP address (after trusted proxies and the PROXY "
         "protocol); more are refused with 429.", _LIMIT],
        ["max-message-rate", None, DEFAULT_MAX_MESSAGE_RATE,
         "Messages a session may send per second on average (data messages, pings, pongs, "
         "firepresence lines); past it, and past --message-burst at once, the session is "
         "closed with 1008.", _number(float, "Per second; 0: no limit.")],
        ["message-burst", None, DEFAULT_MESSAGE_BURST,
         "Messages a session may send at once (the size of the token bucket that "
         "--max-message-rate refills).", _number(int, "Messages, at least 1.", low=1)],
        ["max-fragments", None, DEFAULT_MAX_FRAGMENTS,
         "Frames one WebSocket message may come in; more close the session with 1008.",
         _LIMIT],
        ["max-channels-per-session", None, DEFAULT_MAX_CHANNELS_PER_SESSION,
         "Channels one session may subscribe to (its account's own apart); more are "
         "answered with an error.", _LIMIT],
        ["deflate-window-bits", None, 15,
         "permessage-deflate: largest window the server compresses with.", _int_in(9, 15)],
        ["deflate-client-window-bits", None, 15,
         "permessage-deflate: window asked of clients that offer to limit theirs.",
         _int_in(9, 15)],
        ["deflate-level", None, 6, "permessage-deflate: zlib compression level.",
         _int_in(0, 9)],
        ["deflate-memory-level", None, 8, "permessage-deflate: zlib memory level.",
         _int_in(1, 9)],
        ["deflate-min-size", None, 128,
         "permessage-deflate: messages shorter than this are sent uncompressed.",
         _number(int, "Bytes.")],
    ]

    optFlags = [
        ["anonymous", None, "Let sessions without a ticket in (account: none)."],
        ["demo", None,
         "Serve a demo chat page at /demo on the API port, with a demo-only ticket key made "
         "at start-up (tickets for demo-* accounts on demo:* channels) and a demo backend "
         "relaying chat messages. Never where untrusted people reach the API port."],
        ["no-deflate", None, "Do not accept permessage-deflate (RFC 7692) offers."],
        ["deflate-server-context-takeover", None,
         "permessage-deflate: keep the server's compression context between messages "
         "(better ratios; a compressor of about 256 KiB per connection at the default "
         "window and memory level)."],
        ["deflate-client-context-takeover", None,
         "permessage-deflate: let clients keep their compression context (better ratios "
         "on client messages; an inflater kept per connection)."],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["origin"] = []
        self["subprotocol"] = []
        self["trusted-proxy"] = []

    def opt_listen(self, endpoint):
        self["listen"].append(endpoint)

    opt_listen.__doc__ = (
        "Endpoint to serve WebSocket and firepresence on (repeatable; Twisted endpoint "
        "syntax, e.g. tcp:8080, tcp:8080:interface=127.0.0.1, "
        "ssl:8443:privateKey=key.pem:certKey=cert.pem, haproxy:tcp:8080 for the PROXY "
        "protocol). Default: tcp:8080.")

    def opt_origin(self, origin):
        self["origin"].append(origin)

    opt_origin.__doc__ = (
        "Allowed Origin of browser clients, e.g. https://example.com (repeatable). "
        "None given: any origin is allowed.")

    def opt_trusted_proxy(self, network):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as error:
            raise usage.UsageError("--trusted-proxy: %s" % error)
        self["trusted-proxy"].append(network)

    opt_trusted_proxy.__doc__ = (
        "Address or CIDR network of a proxy whose X-Forwarded-For / X-Real-IP are "
        "believed (repeatable; IPv4 and IPv6). None given: the TCP peer is the client.")

    def opt_subprotocol(self, name):
        self["subprotocol"].append(name)

    opt_subprotocol.__doc__ = (
        "WebSocket subprotocol the server speaks (repeatable, in order of preference).")

    def postOptions(self):
        if not self["listen"]:
            self["listen"] = ["tcp:8080"]
        if self["api-key"] is None:
            self["api-key"] = os.environ.get("PRESENCE_API_KEY") or None
        if self["oauth-client-secret"] is None:
            self["oauth-client-secret"] = os.environ.get("PRESENCE_OAUTH_CLIENT_SECRET") or None
        if self["admin-password"] is None:
            self["admin-password"] = os.environ.get("PRESENCE_ADMIN_PASSWORD") or None
        if self["admin"] in ("none", ""):
            self["admin"] = None
        if self["admin"] and not self["admin-password"] and not _loopback(self["admin"]):
            raise usage.UsageError(
                "the dashboard needs --admin-password (or PRESENCE_ADMIN_PASSWORD) on a "
                "non-loopback interface: --admin %s" % self["admin"])
        if self["ticket-ip"] not in IP_POLICIES:
            raise usage.UsageError("--ticket-ip must be one of %s" % ", ".join(IP_POLICIES))
        if self["redis"] is not None:
            try:
                parse_redis_url(self["redis"])
            except ValueError as error:
                raise usage.UsageError("--redis: %s" % error)
        if self["heartbeat"] and self["heartbeat-timeout"] > self["heartbeat"] * 10:
            raise usage.UsageError("--heartbeat-timeout is more than ten heartbeat intervals")
