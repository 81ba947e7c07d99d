"""Everything Presence asks of Redis, in one place (txredisapi).

Redis holds the state other nodes and backends must see. Every command the
server sends goes through :class:`RedisEngine`, so the rest of the code reads
as domain operations and the commands can be found in one file.

txredisapi reconnects by itself but lets a command issued during an outage
wait forever; every call here is bounded by ``timeout`` and fails with
:class:`RedisUnavailable` instead, so a caller can answer (503, a close code)
rather than hang.
"""

from urllib.parse import parse_qs, unquote, urlsplit

import txredisapi
from twisted.internet import defer
from twisted.internet.error import ConnectError

__all__ = ["RedisEngine", "RedisUnavailable", "parse_redis_url"]


class RedisUnavailable(Exception):
    """Redis did not answer in time (or refused the connection)."""


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


class RedisEngine:
    """A pool of connections to one Redis, and the commands Presence uses."""

    def __init__(self, url, reactor=None, timeout=2.0, poolsize=4):
        if reactor is None:
            from twisted.internet import reactor
        self.url = url
        self.reactor = reactor
        self.timeout = timeout
        params = parse_redis_url(url)
        # dbid None: no SELECT on connecting, for the default database.
        common = dict(dbid=params["db"] or None, poolsize=poolsize, reconnect=True,
                      password=params["password"], convertNumbers=False)
        if "path" in params:
            self._pool = txredisapi.lazyUnixConnectionPool(params["path"], **common)
        else:
            self._pool = txredisapi.lazyConnectionPool(
                params["host"], params["port"], connectTimeout=timeout, **common)

    def _bounded(self, deferred):
        deferred.addTimeout(self.timeout, self.reactor)

        def unavailable(failure):
            failure.trap(defer.TimeoutError, defer.CancelledError, ConnectError,
                         txredisapi.ConnectionError)
            raise RedisUnavailable("Redis did not answer within %s s" % self.timeout)
        return deferred.addErrback(unavailable)

    def execute(self, *command):
        """Any Redis command, bounded."""
        return self._bounded(self._pool.execute_command(*command))

    def ping(self):
        return self.execute("PING")

    # ----------------------------------------------------------- tickets

    def store_ticket(self, key, value, ttl):
        """SET the ticket only if new (a collision is astronomically unlikely,
        but a ticket must never be overwritten), expiring after ``ttl``
        seconds. Fires with True when stored."""
        return self.execute("SET", key, value, "EX", ttl, "NX").addCallback(
            lambda reply: reply == "OK")

    def take_ticket(self, key):
        """GETDEL: the ticket's value, removed in the same step, so that two
        nodes redeeming it at once cannot both succeed (Redis >= 6.2)."""
        return self.execute("GETDEL", key)

    def disconnect(self):
        return self._pool.disconnect()
