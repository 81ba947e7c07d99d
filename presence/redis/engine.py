"""The connection to Redis (txredisapi), and the bound on every command.

txredisapi reconnects by itself but lets a command issued during an outage
wait forever; every command here is bounded by ``timeout`` and fails with
:class:`RedisUnavailable` instead, so a caller can answer (503, a close code)
rather than hang. What Presence asks of Redis is presence/redis/store.py's.
Under Sentinel (a ``sentinel://`` URL) the same pool follows the master
through failovers (presence/redis/sentinel.py).
"""

import txredisapi
from twisted.internet import defer
from twisted.internet.error import ConnectError

from .connection import (
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    RECONNECT_FIRST_DELAY,
    RECONNECT_MAX_DELAY,
    parse_redis_url,
)
from .sentinel import MasterEndpoint, MasterPoolFactory, SentinelMaster, close_unless_at

__all__ = ["RedisEngine", "RedisUnavailable"]


class RedisUnavailable(Exception):
    """Redis did not answer in time (or refused the connection)."""


class RedisEngine:
    """A pool of connections to one Redis (under Sentinel: to its master
    of the moment)."""

    def __init__(self, url, reactor=None, timeout=DEFAULT_TIMEOUT, poolsize=DEFAULT_POOL_SIZE):
        if reactor is None:
            from twisted.internet import reactor
        self.url = url
        self.reactor = reactor
        self.timeout = timeout
        params = parse_redis_url(url)
        # dbid None: no SELECT on connecting, for the default database.
        common = dict(dbid=params["db"] or None, poolsize=poolsize, reconnect=True,
                      password=params["password"], convertNumbers=False)
        #: The Sentinels' view of the master (a sentinel:// URL), else None.
        self.sentinel = None
        if "sentinels" in params:
            self._pool = self._sentinel_pool(params, timeout, poolsize, reactor)
        elif "path" in params:
            self._pool = txredisapi.lazyUnixConnectionPool(params["path"], **common)
        else:
            self._pool = txredisapi.lazyConnectionPool(
                params["host"], params["port"], connectTimeout=timeout, **common)
        # txredisapi's backoff (RedisFactory.retryDelay): this delay, e times
        # longer each failed attempt, at most the max. Its lazy pool is a
        # ConnectionHandler that keeps its factory as _factory; the test of
        # the engine's reconnection fails if that changes.
        factory = self._pool._factory
        factory.initialDelay = RECONNECT_FIRST_DELAY
        factory.maxDelay = RECONNECT_MAX_DELAY

    def _sentinel_pool(self, params, timeout, poolsize, reactor):
        """The pool of a sentinel:// URL: built as txredisapi's lazy pools
        are (lazyConnectionPool: a factory started on an endpoint, its
        handler kept), on an endpoint that asks Sentinel where the master
        is before each connection, with connections that check they are to
        the master (presence/redis/sentinel.py)."""
        self.sentinel = SentinelMaster(params["sentinels"], params["master"], reactor, timeout)
        factory = MasterPoolFactory("sentinel:" + params["master"], params["db"] or None,
                                    poolsize, isLazy=True, password=params["password"],
                                    convertNumbers=False, clock=reactor,
                                    handshake_timeout=timeout)
        factory.startConnecting(MasterEndpoint(self.sentinel, reactor, timeout))
        self.sentinel.watch(lambda address: close_unless_at(factory.pool, address))
        return factory.handler

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

    def publish(self, channel, message):
        """PUBLISH: fires with the number of subscribers that got it."""
        return self.execute("PUBLISH", channel, message)

    def disconnect(self):
        if self.sentinel is None:
            return self._pool.disconnect()
        return defer.gatherResults([self._pool.disconnect(), self.sentinel.stop()],
                                   consumeErrors=True)
