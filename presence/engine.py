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
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
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


# ---------------------------------------------------------------- presence
#
# Keys (``P`` is the prefix, ``presence:`` by default; docs/redis.md):
#   P online                  set: accounts with at least one session
#   P account:ACCOUNT         hash: session id -> JSON {node, ip, protocol, since}
#   P nodes                   set: ids of nodes that announced themselves
#   P node:NODE               string: JSON about the node; expires unless refreshed
#   P node:NODE:sessions      hash: session id -> JSON {account, channels}
#   P members:CHANNEL         hash: session id -> account

_ONLINE = """
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if added == 1 and redis.call('HLEN', KEYS[1]) == 1 then return 1 end
return 0
"""

_OFFLINE = """
redis.call('HDEL', KEYS[3], ARGV[1])
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# A node's heartbeat; answers 1 when a surviving node has reaped it since.
_ANNOUNCE = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
return redis.call('DEL', KEYS[3])
"""

# Claim a dead node's sessions: only the first surviving node to call this
# gets them (SREM answers 1 once), and only if the node's key has expired.
_REAP = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return false end
local sessions = redis.call('HGETALL', KEYS[3])
redis.call('DEL', KEYS[3])
return sessions
"""


# A session's end: the newest first in a capped list, and a count per code
# per minute (kept two hours) for "closes by code over the last hour".
_RECORD_CLOSE = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('EXPIRE', KEYS[2], 7200)
return 1
"""


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

    # ---------------------------------------------------------- presence

    def session_online(self, keys, node, session, account, info, entry):
        """Fires with True when the account just came online."""
        return self.execute(
            "EVAL", _ONLINE, 3, keys.account(account), keys.online, keys.node_sessions(node),
            session, account, info, entry).addCallback(lambda reply: reply == 1)

    def session_offline(self, keys, node, session, account):
        """Fires with True when the account just went offline."""
        return self.execute(
            "EVAL", _OFFLINE, 3, keys.account(account), keys.online, keys.node_sessions(node),
            session, account).addCallback(lambda reply: reply == 1)

    def set_session_entry(self, keys, node, session, entry):
        return self.execute("HSET", keys.node_sessions(node), session, entry)

    def join(self, keys, channel, session, account):
        return self.execute("HSET", keys.members(channel), session, account)

    def leave(self, keys, channel, session):
        return self.execute("HDEL", keys.members(channel), session)

    def members(self, keys, channel):
        return self.execute("HGETALL", keys.members(channel)).addCallback(_pairs)

    def online_accounts(self, keys):
        return self.execute("SMEMBERS", keys.online)

    def account_sessions(self, keys, account):
        return self.execute("HGETALL", keys.account(account)).addCallback(_pairs)

    def announce_node(self, keys, node, info, ttl):
        """The node's heartbeat: fires with True when another node had
        reaped it meanwhile (its key expired: a pause, a partition, a Redis
        restart), so it must assert its sessions' presence again."""
        return self.execute("EVAL", _ANNOUNCE, 3, keys.nodes, keys.node(node),
                            keys.node_reaped(node), node, info, ttl).addCallback(
            lambda reply: reply == 1)

    def mark_reaped(self, keys, node, ttl):
        """Tell a reaped node, should it be alive after all, that its
        sessions were taken out of presence (set once the reaping is done,
        so its re-assertion cannot be undone by the reaper)."""
        return self.execute("SET", keys.node_reaped(node), "1", "EX", ttl)

    def nodes(self, keys):
        return self.execute("SMEMBERS", keys.nodes)

    def node_info(self, keys, node):
        return self.execute("GET", keys.node(node))

    def reap_node(self, keys, node):
        """The sessions of a node whose key expired, claimed once: fires
        with ``{session: entry}`` or ``None`` (alive, or claimed already)."""
        return self.execute("EVAL", _REAP, 3, keys.nodes, keys.node(node),
                            keys.node_sessions(node), node).addCallback(
            lambda reply: _pairs(reply) if reply else None)

    def forget_node(self, keys, node):
        return self.execute("SREM", keys.nodes, node).addCallback(
            lambda _: self.execute("DEL", keys.node(node), keys.node_sessions(node)))

    def publish(self, channel, message):
        """PUBLISH: fires with the number of subscribers that got it."""
        return self.execute("PUBLISH", channel, message)

    def add_to_stream(self, stream, fields, maxlen):
        """XADD with an approximate length bound; fires with the entry id."""
        flat = []
        for name, value in fields:
            flat.extend((name, value))
        return self.execute("XADD", stream, "MAXLEN", "~", maxlen, "*", *flat)

    # --------------------------------------------------------- dashboard

    def record_close(self, keys, entry, minute, code, keep):
        return self.execute("EVAL", _RECORD_CLOSE, 2, keys.closes, keys.closes_minute(minute),
                            entry, keep, code)

    def recent_closes(self, keys, count):
        return self.execute("LRANGE", keys.closes, 0, count - 1)

    def close_counts(self, keys, minute):
        return self.execute("HGETALL", keys.closes_minute(minute)).addCallback(_pairs)

    def reply(self, key, payload, ttl=30):
        """A node's answer to a query (RPUSH to the asker's key)."""
        return self.execute("RPUSH", key, payload).addCallback(
            lambda _: self.execute("EXPIRE", key, ttl))

    def replies(self, key):
        return self.execute("LRANGE", key, 0, -1)

    def disconnect(self):
        return self._pool.disconnect()


class PresenceKeys:
    """The names of Presence's Redis keys and channels under one prefix."""

    def __init__(self, prefix="presence:"):
        self.prefix = prefix
        self.online = prefix + "online"
        self.nodes = prefix + "nodes"
        self.stream = prefix + "stream"
        self.control = prefix + "control"
        self.events = prefix + "events"

    def account(self, account):
        return "%saccount:%s" % (self.prefix, account)

    def node(self, node):
        return "%snode:%s" % (self.prefix, node)

    def node_sessions(self, node):
        return "%snode:%s:sessions" % (self.prefix, node)

    def node_reaped(self, node):
        return "%snode:%s:reaped" % (self.prefix, node)

    def members(self, channel):
        return "%smembers:%s" % (self.prefix, channel)

    def channel(self, channel):
        """The Redis pub/sub channel carrying a Presence channel's messages."""
        return "%schannel:%s" % (self.prefix, channel)

    @property
    def closes(self):
        return self.prefix + "closes"

    def closes_minute(self, minute):
        return "%scloses:%d" % (self.prefix, minute)

    def reply(self, token):
        return "%sreply:%s" % (self.prefix, token)


def _pairs(flat):
    """A Redis HGETALL answer as a dict."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[0::2], flat[1::2])) if flat else {}


# ------------------------------------------------------------------ pub/sub


class _SubscriberProtocol(txredisapi.SubscriberProtocol):
    def connectionMade(self):
        ready = super().connectionMade()
        if isinstance(ready, defer.Deferred):
            ready.addCallback(lambda _: self.factory.subscriber._connected(self))
        else:
            self.factory.subscriber._connected(self)
        return ready

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.factory.subscriber._lost(self)

    def messageReceived(self, pattern, channel, message):
        self.factory.subscriber.on_message(channel, message)


class _SubscriberFactory(txredisapi.SubscriberFactory):
    protocol = _SubscriberProtocol

    def __init__(self, subscriber, password):
        super().__init__(isLazy=True)
        self.subscriber = subscriber
        self.password = password


def _lost_meanwhile(failure):
    """A (un)subscription whose answer the connection did not live to
    bring: after a reconnection the subscriptions are made again from
    ``channels`` (and an unsubscribed channel is no longer there)."""
    failure.trap(txredisapi.ConnectionError)


class RedisSubscriber:
    """One pub/sub connection. It subscribes to the channels it is asked
    for, and subscribes to all of them again after every reconnection
    (txredisapi reconnects but does not re-subscribe: a restarted Redis
    would otherwise deliver nothing). ``on_message(channel, message)`` gets
    every message; ``on_connected()`` is called after each (re)connection
    once the subscriptions are back, ``on_lost()`` when it drops."""

    def __init__(self, url, on_message, on_connected=None, on_lost=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.on_message = on_message
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.channels = set()
        self.protocol = None
        params = parse_redis_url(url)
        self.factory = _SubscriberFactory(self, params["password"])
        self.factory.reconnect = True
        if "path" in params:
            endpoint = UNIXClientEndpoint(reactor, params["path"], timeout=5)
        else:
            endpoint = HostnameEndpoint(reactor, params["host"], params["port"], timeout=5)
        self.factory.startConnecting(endpoint)

    @property
    def connected(self):
        return self.protocol is not None

    def subscribe(self, channel):
        if channel in self.channels:
            return
        self.channels.add(channel)
        if self.protocol is not None:
            self.protocol.subscribe([channel]).addErrback(_lost_meanwhile)

    def unsubscribe(self, channel):
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        if self.protocol is not None:
            self.protocol.unsubscribe([channel]).addErrback(_lost_meanwhile)

    def _connected(self, protocol):
        self.protocol = protocol
        resubscribed = protocol.subscribe(sorted(self.channels)) if self.channels else None
        if self.on_connected is not None:
            if isinstance(resubscribed, defer.Deferred):
                resubscribed.addBoth(lambda _: self.on_connected())
            else:
                self.on_connected()

    def _lost(self, protocol):
        if self.protocol is protocol:
            self.protocol = None
            if self.on_lost is not None:
                self.on_lost()

    def close(self):
        """Stop reconnecting and close the connection; fires when closed."""
        return self.factory.disconnect()
