"""The pub/sub connection (txredisapi): one per node, subscribed to what the
node's sessions listen to, and subscribed again after every reconnection."""

import txredisapi
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.logger import Logger

from .connection import RECONNECT_FIRST_DELAY, RECONNECT_MAX_DELAY, parse_redis_url
from .sentinel import MasterEndpoint, MasterOnly, SentinelMaster, close_unless_at

__all__ = ["RedisSubscriber"]

log = Logger()

#: Seconds a Sentinel's answer, and the connection to the master it names,
#: may take (the pub/sub connection's connecting timeout, as below).
SENTINEL_TIMEOUT = 5


class _SubscriberProtocol(txredisapi.SubscriberProtocol):
    def connectionMade(self):
        ready = super().connectionMade()
        # Once AUTH has passed (never for a connection txredisapi gives up
        # on: a wrong password).
        self.whenConnected().addCallback(lambda _: self.factory.subscriber._connected(self))
        return ready

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.factory.subscriber._lost(self)

    def messageReceived(self, pattern, channel, message):
        # An exception here would make txredisapi drop the connection, and
        # with it the messages after this one: the callback's own fault is
        # logged instead (the hub's callback checks every message and never
        # raises; this is the last line).
        try:
            self.factory.subscriber.on_message(channel, message)
        except Exception:
            log.failure("presence: the pub/sub callback failed on {channel}", channel=channel)


class _SubscriberFactory(txredisapi.SubscriberFactory):
    protocol = _SubscriberProtocol
    # txredisapi's backoff (retryDelay): this delay, e times longer each
    # failed attempt, at most the max, with jitter.
    initialDelay = RECONNECT_FIRST_DELAY
    maxDelay = RECONNECT_MAX_DELAY

    def __init__(self, subscriber, password):
        super().__init__(isLazy=True)
        self.subscriber = subscriber
        self.password = password


class _MasterSubscriberProtocol(MasterOnly, _SubscriberProtocol):
    """Under Sentinel: subscribed only once ROLE says it is the master."""


class _MasterSubscriberFactory(_SubscriberFactory):
    protocol = _MasterSubscriberProtocol


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
    once the subscriptions are back, ``on_lost()`` when it drops (not when
    :meth:`close` closes it: the node's stop is no outage)."""

    def __init__(self, url, on_message, on_connected=None, on_lost=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.on_message = on_message
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.channels = set()
        #: Channels Redis confirmed the subscription of, on this connection,
        #: and the Deferreds waiting for the others (:meth:`ready`).
        self.confirmed = set()
        self._waiting = {}
        self._latest = {}
        self.protocol = None
        self.closing = False
        #: The Sentinels' view of the master (a sentinel:// URL), else None.
        self.sentinel = None
        self.factory, endpoint = self._factory_and_endpoint(parse_redis_url(url), reactor)
        self.factory.reconnect = True
        self.factory.startConnecting(endpoint)

    def _factory_and_endpoint(self, params, reactor):
        if "sentinels" in params:
            # Wherever Sentinel says the master is, at every (re)connection
            # (presence/redis/sentinel.py): a failover is one more reconnection.
            self.sentinel = SentinelMaster(params["sentinels"], params["master"], reactor,
                                           SENTINEL_TIMEOUT)
            factory = _MasterSubscriberFactory(self, params["password"])
            factory.clock, factory.handshake_timeout = reactor, SENTINEL_TIMEOUT
            self.sentinel.watch(self._master_switched)
            return factory, MasterEndpoint(self.sentinel, reactor, SENTINEL_TIMEOUT)
        factory = _SubscriberFactory(self, params["password"])
        if "path" in params:
            return factory, UNIXClientEndpoint(reactor, params["path"], timeout=5)
        return factory, HostnameEndpoint(reactor, params["host"], params["port"], timeout=5)

    def _master_switched(self, address):
        if self.protocol is not None:
            close_unless_at([self.protocol], address)

    @property
    def connected(self):
        return self.protocol is not None

    def subscribe(self, channel):
        if channel in self.channels:
            return
        self.channels.add(channel)
        if self.protocol is not None:
            self._latest[channel] = token = object()
            self.protocol.subscribe([channel]).addCallbacks(
                lambda _: self._confirm([channel], token), _lost_meanwhile)

    def ready(self, channel):
        """A Deferred firing once Redis has confirmed the subscription to
        ``channel`` (at once if it has): whatever is published from then on
        is delivered. A channel unsubscribed meanwhile fires too."""
        if channel in self.confirmed or channel not in self.channels:
            return defer.succeed(None)
        waiting = defer.Deferred()
        self._waiting.setdefault(channel, []).append(waiting)
        return waiting

    def _confirm(self, channels, token=None):
        """Redis confirmed the SUBSCRIBE of ``channels`` (``token``: the one
        made by subscribe(); an earlier one's confirmation, followed by an
        UNSUBSCRIBE, confirms nothing of a later one)."""
        for channel in channels:
            if channel in self.channels and self._latest.get(channel) is token:
                self._latest.pop(channel, None)
                self.confirmed.add(channel)
            for waiting in self._waiting.pop(channel, ()):
                waiting.callback(None)

    def unsubscribe(self, channel):
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        self.confirmed.discard(channel)
        self._latest.pop(channel, None)
        self._confirm([channel])
        if self.protocol is not None:
            self.protocol.unsubscribe([channel]).addErrback(_lost_meanwhile)

    def _connected(self, protocol):
        self.protocol = protocol
        resubscribed = protocol.subscribe(sorted(self.channels)) if self.channels else None
        if isinstance(resubscribed, defer.Deferred):
            # One SUBSCRIBE of them all: Redis has made every subscription of
            # it when its first confirmation comes.
            channels = sorted(self.channels)
            self._latest.clear()
            resubscribed.addCallback(lambda _: self._confirm(channels))
        if self.on_connected is not None:
            if isinstance(resubscribed, defer.Deferred):
                resubscribed.addBoth(lambda _: self.on_connected())
            else:
                self.on_connected()

    def _lost(self, protocol):
        if self.protocol is protocol:
            self.protocol = None
            self.confirmed.clear()
            if self.on_lost is not None and not self.closing:
                self.on_lost()

    def close(self):
        """Stop reconnecting and close the connection, knowingly: its loss
        is not reported to ``on_lost``. Fires when closed."""
        self.closing = True
        if self.sentinel is None:
            return self.factory.disconnect()
        return defer.gatherResults([self.factory.disconnect(), self.sentinel.stop()],
                                   consumeErrors=True)
