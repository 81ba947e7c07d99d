"""Redis Sentinel: where the master is now, asked before every connection,
and a connection kept only to an instance that says it is the master.

A ``sentinel://`` URL (presence/redis/connection.py) names the Sentinels
and the master's name. Every connection the node makes to Redis, the
command pool's and the pub/sub one's, goes through :class:`MasterEndpoint`,
which follows the Sentinel clients' guidelines
(https://redis.io/docs/reference/sentinel-clients/):

1. Ask the Sentinels in turn ``SENTINEL get-master-addr-by-name MASTER``;
   the first that answers is asked first next time.
2. Connect to that address, and check with ``ROLE`` that it is the master
   (a Sentinel's answer can be stale while a failover is under way); if it
   is not, close the connection and start again from step 1.
3. Listen to the Sentinels' ``+switch-master``, and close at once every
   connection that is not to the master it names.

A failover ends the node's connections to the old master: the master died;
or Sentinel, turning it into a replica, has it close its clients
(``CLIENT KILL TYPE normal`` and ``TYPE pubsub``, sent with the
``REPLICAOF``); or, the old master being hung or out of reach, the node
closes them at ``+switch-master`` (step 3). txredisapi reconnects each of
them through this endpoint, which finds the new master. Until then a
command waits in the pool and is answered RedisUnavailable after its
timeout (presence/redis/engine.py).
"""

import time

import txredisapi
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ..wire.throttle import LogThrottle
from .connection import RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY

__all__ = ["MasterNotFound", "SentinelMaster", "MasterEndpoint", "MasterOnly", "is_master",
           "close_unless_at", "SWITCH_MASTER"]

log = Logger()

#: Seconds between two log lines about the same trouble finding the master:
#: every connection asks again at each attempt, up to five a second a node.
REPORT_INTERVAL = 10.0

#: Sentinel's pub/sub channel telling of a failover's end, with ``NAME
#: OLD-IP OLD-PORT NEW-IP NEW-PORT``
#: (https://redis.io/docs/management/sentinel/#pubsub-messages).
SWITCH_MASTER = "+switch-master"

#: Connections closed because the server was not the master, reported
#: once per REPORT_INTERVAL for the process.
_not_master = LogThrottle(REPORT_INTERVAL)


class MasterNotFound(Exception):
    """No Sentinel told where the master is (none answered, or none knows
    the name): the connection attempt fails, and txredisapi tries again
    after its backoff."""


def is_master(role):
    """Whether a ``ROLE`` reply is a master's (``["master", offset,
    replicas]``; a replica's starts with ``"slave"``, a Sentinel's with
    ``"sentinel"``)."""
    return isinstance(role, list) and bool(role) and role[0] in ("master", b"master")


class SentinelMaster:
    """The Sentinels of one master: ``sentinels``, a list of (host, port);
    ``name``, the master's name in their configuration. Each question gets
    ``timeout`` seconds, connecting included."""

    def __init__(self, sentinels, name, reactor, timeout):
        self.sentinels = list(sentinels)
        self.name = name
        self.reactor = reactor
        self.timeout = timeout
        #: (host, port) of the master, as last found (None before).
        self.address = None
        #: Times the master was found at another address than before.
        self.switches = 0
        self._not_found = LogThrottle(REPORT_INTERVAL)
        self._watchers = []
        self._on_switch = None

    async def locate(self):
        """(host, port) of the master; raises MasterNotFound saying what
        each Sentinel answered."""
        answers = []
        for sentinel in list(self.sentinels):
            try:
                reply = await self._ask(sentinel)
            except Exception as error:  # refused, timed out, an error reply
                answers.append("%s:%d: %s" % (sentinel[0], sentinel[1], _described(error)))
                continue
            if not isinstance(reply, list) or len(reply) != 2:
                answers.append("%s:%d knows no master named %r" % (
                    sentinel[0], sentinel[1], self.name))
                continue
            # The guidelines' step 1: the Sentinel that answered goes first.
            self.sentinels.remove(sentinel)
            self.sentinels.insert(0, sentinel)
            return self._found((_text(reply[0]), int(reply[1])), sentinel)
        failure = MasterNotFound("no Sentinel told where the master %r is (%s)" % (
            self.name, "; ".join(answers)))
        if self._not_found.due(self.reactor.seconds()):
            log.warn("presence: {failure}{more}", failure=failure,
                     more=_more(self._not_found))
        raise failure

    def _found(self, address, sentinel):
        if address != self.address:
            if self.address is not None:
                self.switches += 1
            log.info("presence: Sentinel {sentinel} says the Redis master {name} is at "
                     "{host}:{port}", sentinel="%s:%d" % sentinel, name=self.name,
                     host=address[0], port=address[1])
        self.address = address
        return address

    def watch(self, on_switch):
        """Listen to every Sentinel's SWITCH_MASTER: ``on_switch((host,
        port))`` is called with the new master's address at each failover
        of this master, from each Sentinel that tells of it. A connection
        to an old master that neither died nor was told to close (it hangs,
        or a partition holds its packets) would otherwise be kept,
        unanswered, until TCP gives up: minutes, or never."""
        self._on_switch = on_switch
        for host, port in self.sentinels:
            factory = _SwitchFactory(self._announced, "%s:%d" % (host, port))
            factory.startConnecting(HostnameEndpoint(self.reactor, host, port,
                                                     timeout=self.timeout))
            self._watchers.append(factory)

    def _announced(self, message, sentinel):
        fields = _text(message).split(" ")
        if len(fields) != 5 or fields[0] != self.name or not fields[4].isdigit():
            return
        address = (fields[3], int(fields[4]))
        if address != self.address:
            log.info("presence: Sentinel {sentinel} announces the Redis master {name} is now "
                     "at {host}:{port} ({event})", sentinel=sentinel, name=self.name,
                     host=address[0], port=address[1], event=SWITCH_MASTER)
            if self.address is not None:
                self.switches += 1
            self.address = address
        self._on_switch(address)

    def stop(self):
        """Stop listening to the Sentinels; fires when their connections
        are closed."""
        watchers, self._watchers = self._watchers, []
        return defer.gatherResults([watcher.disconnect() for watcher in watchers],
                                   consumeErrors=True)

    async def _ask(self, sentinel):
        """One question on a connection of its own: made only when a
        connection to Redis is (re)made, and nothing left open to tend."""
        endpoint = HostnameEndpoint(self.reactor, sentinel[0], sentinel[1],
                                    timeout=self.timeout)
        connecting = endpoint.connect(_Asking())
        connecting.addTimeout(self.timeout, self.reactor)
        protocol = await connecting
        try:
            asked = protocol.execute_command("SENTINEL", "get-master-addr-by-name", self.name)
            asked.addTimeout(self.timeout, self.reactor)
            reply = await asked
        finally:
            protocol.transport.loseConnection()
        if isinstance(reply, Exception):
            raise reply
        return reply


def close_unless_at(protocols, address):
    """Abort every connection of ``protocols`` (txredisapi's) that is not
    to ``address``, (host, port); returns how many. Their pending commands
    fail at once (txredisapi's ConnectionError, RedisUnavailable to the
    engine's callers) and txredisapi reconnects them, through the
    Sentinels, to the new master."""
    closed = 0
    for protocol in list(protocols):
        transport = protocol.transport
        if transport is None:
            continue
        peer = transport.getPeer()
        if (getattr(peer, "host", None), getattr(peer, "port", None)) != tuple(address):
            transport.abortConnection()
            closed += 1
    return closed


class _SwitchProtocol(txredisapi.SubscriberProtocol):
    """A Sentinel's pub/sub connection, subscribed to SWITCH_MASTER."""

    def connectionMade(self):
        ready = super().connectionMade()
        self.whenConnected().addCallback(self._subscribe)
        return ready

    def _subscribe(self, _):
        self.subscribe(SWITCH_MASTER).addErrback(
            lambda failure: failure.trap(txredisapi.ConnectionError))

    def messageReceived(self, pattern, channel, message):
        self.factory.announced(message, self.factory.sentinel)


class _SwitchFactory(txredisapi.SubscriberFactory):
    """One Sentinel's SWITCH_MASTER announcements, reconnected as the
    node's Redis connections are (presence/redis/connection.py)."""

    protocol = _SwitchProtocol
    noisy = False
    initialDelay = RECONNECT_FIRST_DELAY
    maxDelay = RECONNECT_MAX_DELAY

    def __init__(self, announced, sentinel):
        super().__init__(isLazy=True)
        self.announced = announced
        self.sentinel = sentinel


class _Asking(Factory):
    """The factory of a question's connection (not logged: one a connection
    attempt)."""

    protocol = txredisapi.RedisProtocol
    noisy = False


class MasterEndpoint:
    """Connects to wherever ``master`` (a SentinelMaster) says the master is
    now: the endpoint txredisapi's factories (re)connect through (an
    IStreamClientEndpoint's ``connect``; the redis layer declares no
    interfaces, tests/test_layers.py)."""

    def __init__(self, master, reactor, timeout):
        self.master = master
        self.reactor = reactor
        self.timeout = timeout

    def connect(self, protocolFactory):
        located = defer.ensureDeferred(self.master.locate())

        def connect(address):
            host, port = address
            return HostnameEndpoint(self.reactor, host, port,
                                    timeout=self.timeout).connect(protocolFactory)
        return located.addCallback(connect)


class MasterOnly:
    """Mixed in before a txredisapi protocol: a connection is used only
    once ``ROLE`` says it is to the master (the guidelines' step 2); to
    anything else it is closed, and txredisapi makes another through the
    endpoint (backing off: a connection closed before it became usable
    does not reset txredisapi's backoff)."""

    @defer.inlineCallbacks
    def connectionMade(self):
        if self.password is not None:
            answer = yield self._bounded(self.auth(self.password))
            if isinstance(answer, defer.TimeoutError):
                self.transport.abortConnection()
                return None
            if isinstance(answer, Exception):
                # The protocol's own AUTH tells it (and stops trying).
                return (yield super().connectionMade())
        role = yield self._bounded(self.role())
        if not is_master(role):
            if _not_master.due(time.monotonic()):
                peer = self.transport.getPeer()
                log.warn("presence: Redis at {host}:{port} is not the master ({role}); "
                         "asking Sentinel again{more}", host=getattr(peer, "host", "?"),
                         port=getattr(peer, "port", "?"), role=_described(role),
                         more=_more(_not_master))
            self.transport.abortConnection()
            return None
        return (yield super().connectionMade())

    def _bounded(self, asked):
        """A question of the handshake, answered (or failed) within the
        factory's ``handshake_timeout``: a server that accepts connections
        but does not answer (stopped, hung) must not hold the connection
        for ever, where txredisapi would never try another."""
        factory = self.factory
        asked.addTimeout(factory.handshake_timeout, factory.clock)
        return asked.addErrback(lambda failure: failure.value)


class MasterProtocol(MasterOnly, txredisapi.RedisProtocol):
    """The command pool's connections under Sentinel."""


class MasterPoolFactory(txredisapi.RedisFactory):
    """txredisapi's pool factory, with MasterProtocol connections; ``clock``
    and ``handshake_timeout`` bound their handshake (MasterOnly)."""

    protocol = MasterProtocol

    def __init__(self, *args, clock, handshake_timeout, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.handshake_timeout = handshake_timeout


def _more(throttle):
    if not throttle.suppressed:
        return ""
    return " (%d more since the last report)" % throttle.suppressed


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _described(value):
    if isinstance(value, defer.TimeoutError):
        return "no answer in time"
    if isinstance(value, Exception):
        return str(value) or type(value).__name__
    if isinstance(value, list) and value and isinstance(value[0], (str, bytes)):
        return "its role: %s" % _text(value[0])
    return repr(value)
