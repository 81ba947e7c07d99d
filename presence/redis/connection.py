"""How to reach Redis: the ``--redis`` URL (a Redis, or the Sentinels that
know where its master is), and the bounds of the connection
(presence/redis/engine.py uses them; the plugin's options read them without
importing txredisapi)."""

from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["parse_redis_url", "redacted", "SENTINEL_DEFAULT_PORT", "DEFAULT_TIMEOUT",
           "DEFAULT_POOL_SIZE", "RECONNECT_FIRST_DELAY", "RECONNECT_MAX_DELAY"]

#: Seconds a command may take before its caller gets RedisUnavailable: far
#: above a healthy Redis's answer (well under a millisecond here), short
#: enough that a client waiting on it (a ticket, a subscription) is answered
#: before it gives up itself.
DEFAULT_TIMEOUT = 2.0
#: Connections in the pool: commands are pipelined on each, so a few carry
#: a node's load; more only add to Redis's connection count.
DEFAULT_POOL_SIZE = 4

#: Seconds before the first attempt to reconnect, the command pool's and the
#: pub/sub connection's alike: a connection dropped by a live Redis (its
#: pub/sub output limit, a client kill) comes back at once.
RECONNECT_FIRST_DELAY = 0.1
#: Longest wait between two attempts to reconnect, however long Redis has
#: been away. While its connections are down the node redeems no ticket,
#: writes no presence and delivers nothing from Redis, so it must be back
#: soon after Redis is (txredisapi's own cap, 10 s, left a node deaf, and
#: unable to re-assert its sessions, for 10 s after a restart); an attempt a
#: second is nothing to a Redis starting up, or to the node.
RECONNECT_MAX_DELAY = 1.0


#: Sentinel's own port (sentinel.conf's default), for an address given
#: without one.
SENTINEL_DEFAULT_PORT = 26379

#: The form of a Sentinel URL, for the error messages.
SENTINEL_FORM = "sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[?db=N]"


def parse_redis_url(url):
    """``redis://[:PASSWORD@]HOST[:PORT][/DB]``, ``unix:///PATH[?db=N]`` or
    ``sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[?db=N]``:
    returns a dict of the connection's parameters (a Sentinel URL's are
    ``sentinels``, a list of (host, port), and ``master``, the name the
    Sentinels know the master by). Raises ValueError saying what is wrong."""
    try:
        parts = urlsplit(url)
    except ValueError as error:  # an unclosed [IPv6] bracket
        raise ValueError("%s in %r: give [IPV6]:PORT" % (
            error, redacted(url))) from None
    query = parse_qs(parts.query)
    if parts.scheme == "sentinel":
        return _parse_sentinel_url(url, parts, query)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// URL without a path: %r" % url)
        return {"path": unquote(parts.path), "db": _db(query.get("db", ["0"])[0], url),
                "password": parts.password}
    if parts.scheme != "redis":
        raise ValueError("Redis URL must start with redis://, unix:// or sentinel://, not %r"
                         % redacted(url))
    db = parts.path.lstrip("/")
    return {"host": parts.hostname or "localhost", "port": parts.port or 6379,
            "db": _db(db or query.get("db", ["0"])[0], url),
            "password": unquote(parts.password) if parts.password else None}


def redacted(url):
    """``url`` without its password, for messages and logs."""
    scheme, slashes, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    credentials, at, address = netloc.rpartition("@")
    if not slashes or not at:
        return url
    return scheme + "://" + credentials.partition(":")[0] + ":***@" + address + slash + path


def _db(text, url):
    if not text.isdigit():
        raise ValueError("the database must be a number, not %r: %r" % (text, redacted(url)))
    return int(text)


def _parse_sentinel_url(url, parts, query):
    """The Sentinels, the master's name, its database and password (the
    master's and its replicas' ``requirepass``; the Sentinels are asked
    without one)."""
    # urlsplit's hostname and port read one address; this netloc has several.
    credentials, _, addresses = parts.netloc.rpartition("@")
    password = credentials.partition(":")[2] if credentials else ""
    if not addresses:
        raise ValueError("no Sentinel address in %r: give %s" % (redacted(url), SENTINEL_FORM))
    sentinels = [_sentinel_address(address, url) for address in addresses.split(",")]
    master = unquote(parts.path.strip("/"))
    if not master:
        raise ValueError("no master name in %r (the name in sentinel.conf's `sentinel "
                         "monitor NAME ...`): give %s" % (redacted(url), SENTINEL_FORM))
    if "/" in master:
        raise ValueError("the master name %r has a '/': give %s" % (master, SENTINEL_FORM))
    unknown = sorted(set(query) - {"db"})
    if unknown:
        raise ValueError("unknown parameter %s in %r: give %s" % (
            ", ".join(unknown), redacted(url), SENTINEL_FORM))
    return {"sentinels": sentinels, "master": master,
            "db": _db(query.get("db", ["0"])[0], url),
            "password": unquote(password) or None}


def _sentinel_address(address, url):
    """``HOST:PORT``, ``HOST`` (Sentinel's port) or ``[IPV6]:PORT``."""
    host, port = address, ""
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("bad Sentinel address %r in %r: give [IPV6]:PORT" % (
                address, redacted(url)))
        port = rest[1:]
    elif ":" in address:
        host, _, port = address.rpartition(":")
    if not host:
        raise ValueError("a Sentinel address without a host in %r: give %s" % (
            redacted(url), SENTINEL_FORM))
    if not port:
        return host, SENTINEL_DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad Sentinel port %r in %r: give a number from 1 to 65535" % (
            port, redacted(url)))
    return host, int(port)
