"""How to reach Redis: the ``--redis`` URL, and the bounds of the connection
(presence/redis/engine.py uses them; the plugin's options read them without
importing txredisapi)."""

from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["parse_redis_url", "DEFAULT_TIMEOUT", "DEFAULT_POOL_SIZE", "RECONNECT_FIRST_DELAY",
           "RECONNECT_MAX_DELAY"]

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


def parse_redis_url(url):
    """``redis://[:PASSWORD@]HOST[:PORT][/DB]`` or ``unix:///PATH[?db=N]``:
    returns a dict of the connection's parameters."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// URL without a path: %r" % url)
        return {"path": unquote(parts.path), "db": int(query.get("db", ["0"])[0]),
                "password": parts.password}
    if parts.scheme != "redis":
        raise ValueError("Redis URL must start with redis:// or unix://, not %r" % url)
    db = parts.path.lstrip("/")
    return {"host": parts.hostname or "localhost", "port": parts.port or 6379,
            "db": int(db) if db else int(query.get("db", ["0"])[0]),
            "password": unquote(parts.password) if parts.password else None}
