"""Command-line options of ``twistd presence``.

Every default shown here is read from where it is defined (the settings of
presence/net/, presence/hub/, presence/redis/ and the WebSocket core), so
``--help`` cannot disagree with the server. Importing this module must stay
cheap: twistd imports every plugin to list them, so nothing here loads
txredisapi or chooses an unmasking path (tests/test_plugin.py checks).
"""

import ipaddress
import os
import sys

from twisted.python import usage

from ..hub.settings import DEFAULTS as HUB
from ..hub.settings import parse_history_rule
from ..net.settings import DEFAULTS as SERVER
from ..net.settings import TICKET_IP_POLICIES
from ..redis.connection import DEFAULT_TIMEOUT as REDIS_TIMEOUT
from ..redis.connection import parse_redis_url
from ..webhooks.settings import DEFAULTS as WEBHOOKS
from ..webhooks.settings import EVENT_NAMES
from ..websocket.deflate import (
    DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_MEMORY_LEVEL,
    DEFAULT_MIN_SIZE,
    DEFAULT_WINDOW_BITS,
)

__all__ = ["Options", "endpoint_is_loopback", "worker_count"]


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


def _available_cpus():
    """The cores this process may run on (its affinity, as taskset or a
    container's cpuset sets it), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(value, cpus=_available_cpus):
    """--workers: a whole number of at least 1, or ``auto``, one per core
    this process may use (``cpus()``)."""
    text = str(value).strip().lower()
    if text == "auto":
        return max(1, cpus())
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError("--workers must be a number of at least 1, or auto")
    return number


worker_count.coerceDoc = "A number of at least 1, or auto (one per core)."


#: Endpoint kinds whose listening address Twisted's reactor is told (so can
#: be read back below), and kinds that wrap another endpoint and listen where
#: it does. Any other kind (a plugin's: systemd, tor, ...) listens where its
#: plugin decides, so it is never taken for loopback.
_LISTENING_KINDS = frozenset({"tcp", "tcp6", "ssl", "unix"})
_WRAPPING_KINDS = frozenset({"haproxy"})


def _is_loopback_interface(interface):
    if interface == "localhost":
        return True
    try:
        address = ipaddress.ip_address(interface)
    except ValueError:
        return False  # "" and "::" (every interface), a name we cannot vouch for
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def endpoint_is_loopback(description):
    """Whether a server endpoint string listens on loopback only (or on a
    unix socket). Raises ValueError when Twisted cannot make an endpoint of
    it (a typo, an unescaped colon, a missing certificate file).

    Twisted decides, not a reading of our own: the description is parsed
    by ``serverFromString`` and listened on with a MemoryReactor (public
    API, twisted.internet.testing), which records the interface Twisted
    would bind, after its escapes (``interface=\\:\\:1``), its
    repeated keywords (the last ``interface=`` wins) and its wrappers
    (``haproxy:``). tests/test_options.py checks each verdict against a
    real listening socket, so a Twisted that parses differently fails
    there."""
    kind, _, rest = description.partition(":")
    while kind in _WRAPPING_KINDS:
        kind, _, rest = rest.partition(":")
    if kind not in _LISTENING_KINDS:
        return False
    # Imported here: options are imported by `twistd --help`, which listens
    # on nothing.
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.protocol import Factory
    from twisted.internet.testing import MemoryReactor

    reactor = MemoryReactor()
    try:
        serverFromString(reactor, description).listen(Factory())
    except Exception as error:
        # Twisted's parsers fail with ValueError, TypeError (an unknown or
        # repeated argument), OSError (a certificate file) or OpenSSL's
        # errors: whichever, the node could not listen there.
        raise ValueError("not an endpoint Twisted can listen on (%s: %s); a colon in "
                         "a value is written \\:" % (type(error).__name__, error))
    # What was listened on: (port, factory, [context factory,] backlog,
    # interface) for TCP and TLS, (path, factory, ...) for a unix socket.
    inet = reactor.tcpServers + reactor.sslServers
    if len(inet) + len(reactor.unixServers) != 1:
        return False
    return not inet or _is_loopback_interface(inet[0][-1])


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Presence: a presence server for real-time applications. Serves "
        "WebSocket (RFC 6455), firepresence and SSE on every --listen endpoint. See "
        "docs/ for every option, limit and close code."
    )

    optParameters = [
        ["workers", None, 1,
         "Node processes to run, sharing every port (SO_REUSEPORT on Linux); auto: one per "
         "core. Above 1 this process supervises them (docs/configuration.md, Workers).",
         worker_count],
        ["max-message-size", None, SERVER.max_message_size,
         "Largest message accepted, in bytes; larger ones close the session with 1009.",
         _BYTES],
        ["max-head-size", None, SERVER.max_head_size,
         "Largest HTTP request head accepted, in bytes; larger ones get 431.", _BYTES],
        ["handshake-timeout", None, SERVER.handshake_timeout,
         "Seconds a client may take to send its request head.", _SECONDS],
        ["close-timeout", None, SERVER.close_timeout,
         "Seconds to wait for the client's answer to a Close before dropping it.",
         _SECONDS],
        ["heartbeat", None, SERVER.heartbeat_interval,
         "Seconds between heartbeat pings to every session (0 disables).",
         _number(float, "Seconds; 0 disables.")],
        ["heartbeat-timeout", None, SERVER.heartbeat_timeout,
         "Seconds a heartbeat ping may wait for its pong; then the session is closed "
         "with 1011.", _SECONDS],
        ["max-outgoing-buffer", None, SERVER.max_outgoing_buffer,
         "Bytes that may queue for a client that is not reading before it is dropped.",
         _BYTES],
        ["redis", None, None,
         "Redis to use: redis://[:PASSWORD@]HOST[:PORT][/DB], unix:///PATH[?db=N], or "
         "sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[?db=N] to find the master "
         "through Redis Sentinel and follow its failovers. Repeatable: each is a shard, "
         "the same list in the same order on every node (docs/redis.md, Shards). "
         "Not given: a redis-server child process on a private unix socket."],
        ["redis-prefix", None, HUB.prefix, "Prefix of every Redis key Presence uses."],
        ["redis-timeout", None, REDIS_TIMEOUT,
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
        ["ticket-ttl", None, HUB.ticket_ttl, "Seconds a ticket can be redeemed.",
         _number(int, "Whole seconds, greater than 0.", above=True)],
        ["resume-ttl", None, HUB.resume_ttl,
         "Seconds a session's resume token (in its welcome) can be redeemed after the "
         "session ended; 0: no resume tokens.",
         _number(int, "Whole seconds; 0: no resume tokens.")],
        ["resume-max-age", None, HUB.resume_max_age,
         "Seconds from the original ticket after which no resume token is redeemable.",
         _number(int, "Whole seconds, greater than 0.", above=True)],
        ["ticket-ip", None, SERVER.ticket_ip,
         "A ticket redeemed from another IP than its own: off (ignored), warn (recorded), "
         "strict (refused)."],
        ["auth-timeout", None, SERVER.auth_timeout,
         "Seconds a session without a ticket in its handshake has to send one.",
         _SECONDS],
        ["node-heartbeat", None, HUB.node_heartbeat,
         "Seconds between a node's announcements in Redis; a node silent for three is "
         "dead, and its sessions leave presence.", _SECONDS],
        ["leave-delay", None, HUB.leave_delay,
         "Seconds an account's leave of a channel, and its offline, wait for it to come "
         "back (on any node): a reload or a reconnect is no leave; 0: at once.",
         _number(float, "Seconds; 0: no delay.")],
        ["max-whisper-rate", None, HUB.max_whisper_rate,
         "Whispers (client-to-client events) a session may send a second, on average; "
         "0: no limit.", _number(float, "Whispers a second; 0: no limit.")],
        ["whisper-burst", None, HUB.whisper_burst,
         "Whispers a session may send at once, above --max-whisper-rate.",
         _number(int, "Whispers, greater than 0.", above=True)],
        ["max-whisper-size", None, HUB.max_whisper_size,
         "Bytes of a whisper's data, as JSON; a larger one is refused.",
         _number(int, "Bytes, greater than 0.", above=True)],
        ["stream-maxlen", None, HUB.stream_maxlen,
         "Approximate length bound of the Redis Stream carrying client publishes to "
         "backends.", _number(int, "Entries, greater than 0.", above=True)],
        ["event-log-maxlen", None, HUB.event_log_maxlen,
         "Approximate length bound of the event log, the Redis Stream of every presence "
         "event (webhooks and backends read it).",
         _number(int, "Entries, greater than 0.", above=True)],
        ["webhook-secret", None, None,
         "Key of the X-Presence-Signature of every webhook request (default: the "
         "environment variable PRESENCE_WEBHOOK_SECRET); needed with --webhook."],
        ["webhook-events", None, None,
         "Presence events the webhooks are sent, comma-separated, of: %s. Default: every "
         "one." % ", ".join(EVENT_NAMES)],
        ["webhook-timeout", None, WEBHOOKS.timeout,
         "Seconds a webhook request may take; then it is retried.", _SECONDS],
        ["webhook-max-age", None, WEBHOOKS.max_age,
         "Seconds an event is retried for before it goes to the webhook's dead letters.",
         _SECONDS],
        ["max-bad-lines", None, SERVER.max_bad_lines,
         "Malformed firepresence lines a session may send before it is closed with 1007.",
         _number(int, "Lines, greater than 0.", above=True)],
        ["max-connections", None, SERVER.max_connections,
         "Client connections this node holds at once; more are refused with 503.", _LIMIT],
        ["max-connections-per-ip", None, SERVER.max_connections_per_ip,
         "Client connections from one IP address (after trusted proxies and the PROXY "
         "protocol); more are refused with 429.", _LIMIT],
        ["max-message-rate", None, SERVER.max_message_rate,
         "Messages a session may send per second on average (data messages, pings, pongs, "
         "firepresence lines); past it, and past --message-burst at once, the session is "
         "closed with 1008.", _number(float, "Per second; 0: no limit.")],
        ["message-burst", None, SERVER.message_burst,
         "Messages a session may send at once (the size of the token bucket that "
         "--max-message-rate refills).", _number(int, "Messages, at least 1.", low=1)],
        ["max-inflated-rate", None, SERVER.max_inflated_rate,
         "Bytes a second a session's compressed (permessage-deflate) messages may inflate "
         "to on average (bursts of two seconds' worth, or two --max-message-size messages); "
         "past it the session is closed with 1008.", _LIMIT],
        ["max-fragments", None, SERVER.max_fragments,
         "Frames one WebSocket message may come in; more close the session with 1008.",
         _LIMIT],
        ["max-channels-per-session", None, SERVER.max_channels_per_session,
         "Channels one session may subscribe to (its account's own apart); more are "
         "answered with an error.", _LIMIT],
        ["deflate-window-bits", None, DEFAULT_WINDOW_BITS,
         "permessage-deflate: largest window the server compresses with.", _int_in(9, 15)],
        ["deflate-client-window-bits", None, DEFAULT_WINDOW_BITS,
         "permessage-deflate: window asked of clients that offer to limit theirs.",
         _int_in(9, 15)],
        ["deflate-level", None, DEFAULT_COMPRESSION_LEVEL,
         "permessage-deflate: zlib compression level.", _int_in(0, 9)],
        ["deflate-memory-level", None, DEFAULT_MEMORY_LEVEL,
         "permessage-deflate: zlib memory level.", _int_in(1, 9)],
        ["deflate-min-size", None, DEFAULT_MIN_SIZE,
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
        self["history"] = []
        self["webhook"] = []

    def parseOptions(self, options=None):
        # Kept for --workers: each worker is given the same options.
        self.argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def opt_listen(self, endpoint):
        self["listen"].append(endpoint)

    opt_listen.__doc__ = (
        "Endpoint to serve WebSocket, firepresence and SSE on (repeatable; Twisted endpoint "
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

    def opt_history(self, rule):
        try:
            self["history"].append(parse_history_rule(rule))
        except ValueError as error:
            raise usage.UsageError("--history %s: %s" % (rule, error))

    opt_history.__doc__ = (
        "Channels matching PATTERN (shell-style, as in tickets) keep their last SIZE "
        "publications, for TTL seconds after the last one, with offsets for recovery: "
        "PATTERN=SIZE,TTL, e.g. 'room:*=100,300' (repeatable; the first match wins). "
        "None given: no channel keeps history.")

    def opt_webhook(self, url):
        if not url.startswith(("http://", "https://")):
            raise usage.UsageError("--webhook %s: give an http:// or https:// URL" % url)
        self["webhook"].append(url)

    opt_webhook.__doc__ = (
        "URL every presence event is POSTed to, batched and signed, at least once and in "
        "order (repeatable; docs/api.md, Webhooks). None given: no webhooks.")

    def opt_redis(self, url):
        # Repeatable: each --redis is a shard (presence/redis/shards.py);
        # self["redis"] stays the first (shard 0).
        self.setdefault("redis-shards", []).append(url)
        if self["redis"] is None:
            self["redis"] = url

    def opt_subprotocol(self, name):
        self["subprotocol"].append(name)

    opt_subprotocol.__doc__ = (
        "WebSocket subprotocol the server speaks (repeatable, in order of preference).")

    def _admin_is_loopback(self):
        try:
            return endpoint_is_loopback(self["admin"])
        except ValueError as error:
            raise usage.UsageError("--admin %s: %s" % (self["admin"], error))

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
        if self["admin"] and not self["admin-password"] and not self._admin_is_loopback():
            raise usage.UsageError(
                "the dashboard needs --admin-password (or PRESENCE_ADMIN_PASSWORD) on a "
                "non-loopback interface: --admin %s" % self["admin"])
        if self["ticket-ip"] not in TICKET_IP_POLICIES:
            raise usage.UsageError("--ticket-ip must be one of %s"
                                   % ", ".join(TICKET_IP_POLICIES))
        self._redis_options()
        self._webhook_options()
        if self["heartbeat"] and self["heartbeat-timeout"] > self["heartbeat"] * 10:
            raise usage.UsageError("--heartbeat-timeout is more than ten heartbeat intervals")

    def _redis_options(self):
        """Every --redis (a shard each: docs/redis.md, Shards) parses, and
        none is given twice."""
        self.setdefault("redis-shards", [])
        for url in self["redis-shards"]:
            try:
                parse_redis_url(url)
            except ValueError as error:
                raise usage.UsageError("--redis: %s" % error)
        if len(set(self["redis-shards"])) != len(self["redis-shards"]):
            raise usage.UsageError("--redis: a Redis given twice; each --redis is a shard")

    def _webhook_options(self):
        if self["webhook-secret"] is None:
            self["webhook-secret"] = os.environ.get("PRESENCE_WEBHOOK_SECRET") or None
        if self["webhook"] and not self["webhook-secret"]:
            raise usage.UsageError("--webhook needs --webhook-secret (or "
                                   "PRESENCE_WEBHOOK_SECRET): receivers check the signature")
        if self["webhook-events"] is not None:
            names = [name.strip() for name in self["webhook-events"].split(",") if name.strip()]
            unknown = sorted(set(names) - set(EVENT_NAMES))
            if unknown or not names:
                raise usage.UsageError("--webhook-events: %s; give names of: %s" % (
                    "unknown " + ", ".join(unknown) if unknown else "none given",
                    ", ".join(EVENT_NAMES)))
            self["webhook-events"] = frozenset(names)
