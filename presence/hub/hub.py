"""The hub: channels, presence and delivery across nodes, over Redis.

Every node runs one :class:`Hub` as its session handler
(presence/net/interfaces.py ``ISessionHandler``). It assembles the rooms of
presence/hub/ and routes between them:

- a session that opens with an account is online in Redis until its last
  session ends (presence/hub/records.py), and listens to its account's own
  channel;
- what a ready session sends is the client vocabulary's
  (presence/hub/vocabulary.py); subscriptions and delivery are the channels'
  (presence/hub/channels.py);
- what Redis delivers is checked (presence/hub/pubsub.py) and goes to the
  channels (channel messages, Juggernaut's ``PUBLISH juggernaut {...}``) or
  to the control channel's handler (presence/hub/control.py);
- the node announces itself and reaps dead nodes (presence/hub/liveness.py);
- after a Redis outage the subscriptions are restored, the node's presence
  re-asserted, and the gap logged and counted.

Everything another node or a backend must see lives in Redis
(presence/redis/keys.py names it; docs/redis.md documents it).
"""

import functools
import os
import socket

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ..net.interfaces import ISessionHandler
from ..redis.engine import RedisUnavailable
from ..redis.keys import JUGGERNAUT, PresenceKeys
from ..redis.shards import ShardedStore, ShardedSubscriber, ShardsDisagree, check_shards
from ..redis.store import PresenceStore
from ..redis.subscriber import RedisSubscriber
from ..wire.close import GOING_AWAY
from .channels import Channels, account_channel
from .control import Control
from .departures import Departures
from .events import ended_by
from .history import History
from .liveness import Liveness
from .members import Members
from .pubsub import RedisMessages
from .quality import Quality
from .queries import ClusterQueries, QueryAnswers
from .records import PresenceRecords
from .settings import HubSettings
from .subscriptions import ServerSubscriptions
from .tickets import TicketStore
from .vocabulary import ClientMessages
from .work import HubStats, RedisWork
from .writer import PresenceWriter, ShardedWriter

__all__ = ["Hub", "ShardsDisagree"]

log = Logger()

#: Seconds a stopping node waits for its last presence changes to be written.
STOP_TIMEOUT = 10.0


def _new_node_id():
    return "%s-%d-%s" % (socket.gethostname(), os.getpid(), os.urandom(2).hex())


@implementer(ISessionHandler)
class Hub:
    """``engine``: a RedisEngine, or a list of them, one a Redis shard
    (presence/redis/shards.py); ``settings``: HubSettings."""

    def __init__(self, engine, clock, settings=None, node_id=None):
        settings = settings if settings is not None else HubSettings()
        self.settings = settings
        self.engines = list(engine) if isinstance(engine, (list, tuple)) else [engine]
        self.engine = self.engines[0]
        self.clock = clock
        self.node_id = node_id or _new_node_id()
        self.keys = PresenceKeys(settings.prefix)
        if len(self.engines) == 1:
            self.store = store = PresenceStore(self.engine, self.keys,
                                               event_log_maxlen=settings.event_log_maxlen)
        else:
            self.store = store = ShardedStore(self.engines, self.keys, settings.event_log_maxlen)
        self.stats = stats = HubStats()
        self.work = RedisWork(stats)
        self.server = None
        self.subscriber = None
        #: Shard -> when its subscription connection was lost (one Redis: 0).
        self._lost_at = {}
        #: The ticket store of this node's sessions and API.
        self.tickets = TicketStore(store, clock, settings.ticket_ttl, node=self.node_id,
                                   resume_ttl=settings.resume_ttl,
                                   resume_max_age=settings.resume_max_age,
                                   node_ttl=settings.node_ttl, work=self.work)
        #: Every presence change of this node's sessions, in order, batched.
        self.writer = self._writer()
        #: Accounts' leaves and offline, once --leave-delay passed.
        self.departures = Departures(store, clock, settings.leave_delay)
        self.records = PresenceRecords(store, self.writer, self.node_id, clock,
                                       settings.closes_kept)
        #: The channels that keep a history, and subscribes recovering it.
        self.history = History(store, settings.history, stats, clock)
        self.channels = Channels(store, self.writer, self.node_id, stats, self.history)
        self.messages = ClientMessages(self.channels, store, self.work, stats, self.node_id,
                                       clock, settings.stream_maxlen)
        #: Who is in a channel, with their info and connections.
        #: How well each of this node's sessions is connected, in Redis.
        self.quality = Quality(store, self.node_id, clock, settings.node_heartbeat)
        self.members = Members(store, lambda entry: Quality.shown(entry, clock.seconds()))
        self.messages.members = self.members
        self.messages.settings = settings
        self.liveness = Liveness(store, self.records, self.channels, stats, self.node_id,
                                 clock, settings)
        self.answers = QueryAnswers(store, self.channels, self.node_id, settings.workers_of)
        self.control = Control(store, self.answers, self.work)
        #: What the dashboard asks of the cluster, from this node.
        self.queries = ClusterQueries(store, self.control, clock)
        #: POST /subscribe and /unsubscribe, both ends.
        self.subscriptions = ServerSubscriptions(store, self.channels, self.queries, self.work,
                                                 self.node_id, clock)
        self.control.subscriptions = self.subscriptions
        self.from_redis = RedisMessages(self.keys, self.channels, self.control, stats, clock)

    def _writer(self):
        """One PresenceWriter, or one a shard (presence/hub/writer.py)."""
        store, settings = self.store, self.settings
        if isinstance(store, PresenceStore):
            return PresenceWriter(store, self.node_id, self.clock, self.stats,
                                  settings.leave_delay)
        return ShardedWriter([PresenceWriter(shard, self.node_id, self.clock, self.stats,
                                             settings.leave_delay) for shard in store.shards],
                             store.index_of)

    @property
    def shard_errors(self):
        """Failed Redis commands by shard (several --redis), or None."""
        return getattr(self.store, "errors", None)

    def check_shards(self, urls):
        """Fails (presence/redis/shards.py ShardsDisagree) when ``urls``, this
        node's --redis list, is not the cluster's."""
        shards = getattr(self.store, "shards", [self.store])
        return defer.ensureDeferred(check_shards(shards, urls))

    # ----------------------------------------------------------- life cycle

    def start(self, server):
        """Begin serving ``server``'s sessions (the node's client side):
        listen to Redis, announce the node, and start its heartbeat."""
        self.server = server
        server.handler = self
        for room in (self.channels, self.messages, self.liveness, self.answers, self.control,
                     self.quality, self.subscriptions):
            room.server = server
        subscribers = [RedisSubscriber(engine.url, self.from_redis.received,
                                       functools.partial(self._redis_connected, shard),
                                       functools.partial(self._redis_lost, shard),
                                       reactor=engine.reactor)
                       for shard, engine in enumerate(self.engines)]
        self.subscriber = subscribers[0] if len(subscribers) == 1 else ShardedSubscriber(
            self.store, subscribers)
        self.channels.subscriber = self.history.subscriber = self.subscriber
        self.history.server = server
        self.subscriber.subscribe(self.keys.control)
        self.subscriber.subscribe(JUGGERNAUT)
        self.liveness.start()
        self.quality.start()
        self.departures.start()
        self.history.start_measuring(lambda: list(self.channels.listeners))

    async def stop(self):
        """After the node's sessions were closed: write their last presence
        changes (for at most STOP_TIMEOUT seconds), sweep whatever of the
        node's records is still in Redis, and take the node out of it."""
        self.history.stop_measuring()
        self.quality.stop()
        self.departures.stop()
        await self.liveness.stop()
        await self.liveness.stop_sweeps()
        finished = self.writer.finished()
        finished.addTimeout(STOP_TIMEOUT, self.clock)
        try:
            await defer.DeferredList([finished, self.work.finished()], consumeErrors=True)
            dropped = self.writer.stop()
            if dropped:
                log.warn("presence: {count} presence changes not written at shutdown",
                         count=dropped)
            await self.liveness.sweep(self.node_id, claimed=False)
            await self.store.forget_node(self.node_id)
        except RedisUnavailable:
            log.warn("presence: Redis unavailable at shutdown; node {node} will expire, "
                     "and a survivor will take its sessions out of presence",
                     node=self.node_id)
        if self.subscriber is not None:
            await self.subscriber.close()

    @property
    def addresses(self):
        """Where this node listens for clients (shown on the dashboard)."""
        return self.liveness.addresses

    # ------------------------------------------------------------- sessions

    def session_opened(self, session):
        account = session.account
        if account is None:
            return
        self.channels.listen(session, account_channel(account))
        self.records.online(session)
        if session.server_channels:
            self.subscriptions.resumed(session)

    def session_closed(self, session, record):
        channels = self.channels
        self.records.record_close(session, record)
        self.messages.forget(session.id)
        ended = ended_by(record)
        for channel in channels.subscriptions.pop(session.id, ()):
            channels.stop_listening(session, channel)
            channels.left(session.id, session.account, channel, info=session.info, ended=ended)
        account = session.account
        if account is None:
            return
        channels.stop_listening(session, account_channel(account))
        self.records.offline(session.id, account, ended)

    def text_received(self, session, text):
        self.messages.text_received(session, text)

    def binary_received(self, session, data):
        self.messages.binary_received(session, data)

    # ---------------------------------------------------- messages from Redis

    def _shown(self, shard):
        """A shard's name in the log: nothing with one Redis."""
        return " shard %d" % shard if len(self.engines) > 1 else ""

    def _redis_connected(self, shard=0):
        """A subscription connection is (back) up: after an outage, this
        node's presence is asserted again (each shard's outage its own: a
        shard back after another is re-asserted too)."""
        lost_at = self._lost_at.pop(shard, None)
        if lost_at is None:
            return  # the first connection
        gap = self.clock.seconds() - lost_at
        self.stats.redis_reconnects += 1
        self.stats.redis_outage_seconds += gap
        log.warn("presence: Redis{shard} is back after {gap:.1f} s: subscriptions restored, "
                 "re-asserting presence; messages published meanwhile were not delivered",
                 shard=self._shown(shard), gap=gap)
        self.work.track(self.liveness.reassert(), "re-asserting presence")

    def _redis_lost(self, shard=0):
        if shard not in self._lost_at:
            self._lost_at[shard] = self.clock.seconds()
            log.warn("presence: lost the Redis{shard} subscription connection; reconnecting",
                     shard=self._shown(shard))

    # ------------------------------------------------------- for the HTTP API

    def publish(self, channels, data, exclude=()):
        """Publish ``data`` to channels, cluster-wide; fires with the number
        of nodes that had subscribers (summed over the channels)."""
        return self.channels.publish(channels, data, exclude)

    def publish_once(self, publish_id, channels, data, exclude=()):
        """:meth:`publish` under a backend's id, so that a retry is harmless:
        fires with ``(nodes, duplicate)`` (presence/hub/channels.py)."""
        return self.channels.publish_once(publish_id, channels, data, exclude)

    def publish_recorded(self, publish_id, channels, data, exclude=()):
        """:meth:`publish` or :meth:`publish_once` (``publish_id`` not None),
        answering the offsets of the channels that keep a history: fires
        with ``(nodes, duplicate, offsets)`` (presence/hub/channels.py)."""
        if not self.history.keeps_any(channels):
            if publish_id is None:
                return defer.ensureDeferred(self.channels.publish(
                    channels, data, exclude)).addCallback(lambda nodes: (nodes, False, {}))
            return self.channels.publish_once(publish_id, channels, data, exclude).addCallback(
                lambda answer: answer + ({},))
        return self.channels.publish_recorded(publish_id, channels, data, exclude)

    def read_history(self, channel, since, limit):
        """GET /history: the publications of ``channel`` after ``since``,
        at most ``limit``; None for a channel without history
        (presence/hub/history.py)."""
        return self.history.read(channel, since, limit)

    def online_accounts(self):
        return self.records.online_accounts()

    def account_sessions(self, account):
        """An account's sessions, each with its info and its connection's
        quality (presence/hub/members.py)."""
        return defer.ensureDeferred(self.members.of_account(account))

    def server_subscription(self, action, channel, session=None, account=None):
        """POST /subscribe or /unsubscribe: fires with the number of
        sessions affected, cluster-wide."""
        return defer.ensureDeferred(self.subscriptions.request(action, channel, session,
                                                               account))

    def disconnect(self, session=None, account=None, code=GOING_AWAY, reason=""):
        """Close a session, or every session of an account, on every node."""
        return self.control.disconnect(session, account, code, reason)
