"""A node's liveness: its announcements to the cluster, the reaping of nodes
that stopped announcing, and the re-assertion of its own sessions when it
finds it was reaped while alive.

Each node announces itself every ``node_heartbeat`` seconds with a key that
expires after three (``P node:NODE``, holding the node's report for the
dashboard). A surviving node that finds a node in the registry without its
key reaps it: claims its records atomically, once (presence/redis/scripts.py
``CLAIM``), then sweeps them out of their channels and of presence a chunk at
a time, apart from its own announcements (``SWEEP``: the leave and offline
events go out as it goes); should it die meanwhile, another survivor
finishes the sweep. A node that was only paused, partitioned or
cut off by a Redis restart finds, at its next announcement, that it was
reaped, and asserts its sessions' presence again.

These are the node's own heartbeats; the pings to client sessions are
presence/net/heartbeat.py's.
"""

import os

from twisted.internet import defer, task
from twisted.logger import Logger

from ..redis.engine import RedisUnavailable
from ..wire.jsontext import encode_json

__all__ = ["Liveness"]

log = Logger()

#: Records one step of a sweep takes out of presence (a millisecond or two
#: of Redis's time; the node's own work goes on between steps).
SWEEP_CHUNK = 500

#: Seconds a reaped node's mark lasts: should the node be alive after all,
#: its next announcement finds it and re-asserts its sessions; an hour
#: covers any pause worth surviving.
REAPED_MARK_TTL = 3600


class Liveness:
    """``settings``: the HubSettings; ``server`` (the node's client side) is
    given when the hub starts."""

    def __init__(self, store, records, channels, stats, node_id, clock, settings):
        self.store = store
        self.records = records
        self.channels = channels
        self.stats = stats
        self.node_id = node_id
        self.clock = clock
        self.settings = settings
        self.server = None
        self.started_at = clock.seconds()
        #: Where this node listens for clients (shown on the dashboard).
        self.addresses = []
        self._loop = None
        self._announcing = None
        #: Dead node -> the sweep of its records under way here.
        self._sweeps = {}
        self._previous_report = None
        #: A re-assertion asked for and not yet made (reassert()).
        self._reassert_due = False

    def start(self):
        self._loop = task.LoopingCall(self.announce)
        self._loop.clock = self.clock
        self._loop.start(self.settings.node_heartbeat, now=True)

    def stop(self):
        """No more announcements; fires once the one under way (if any) is
        done, so that the node does not announce itself after it left."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self.finished()

    def finished(self):
        """A Deferred firing once no announcement is under way."""
        announcing = self._announcing
        if announcing is None:
            return defer.succeed(None)
        waiter = defer.Deferred()
        announcing.addBoth(lambda result: (waiter.callback(None), result)[1])
        return waiter

    # ---------------------------------------------------------- the report

    def node_report(self):
        """What the node tells the cluster about itself with each
        announcement (the dashboard's overview adds these up)."""
        server = self.server
        now = self.clock.seconds()
        report = {"id": self.node_id, "pid": os.getpid(), "started_at": self.started_at,
                  "heartbeat_at": now, "addresses": list(self.addresses), "sessions": 0}
        if self.settings.workers_of:
            report["workers_of"] = self.settings.workers_of
        if server is None:
            return report
        stats = server.stats
        by_protocol = {}
        by_extension = {}
        totals = {"messages_in": stats.messages_in, "messages_out": stats.messages_out,
                  "bytes_in": stats.bytes_in, "bytes_out": stats.bytes_out}
        for session in server.sessions.values():
            by_protocol[session.protocol_name] = by_protocol.get(session.protocol_name, 0) + 1
            for name in session.extensions or ("none",):
                by_extension[name] = by_extension.get(name, 0) + 1
            totals["messages_in"] += session.messages_in
            totals["messages_out"] += session.messages_out
            totals["bytes_in"] += session.bytes_in
            totals["bytes_out"] += session.bytes_out
        rates = {}
        previous = self._previous_report
        if previous is not None and now > previous["heartbeat_at"]:
            elapsed = now - previous["heartbeat_at"]
            for name in ("messages_in", "messages_out"):
                rates[name + "_per_s"] = max(0.0, (totals[name] - previous[name]) / elapsed)
        tickets = server.tickets
        report.update(
            sessions=len(server.sessions), by_protocol=by_protocol, by_extension=by_extension,
            handshakes_refused=dict(stats.handshakes_refused),
            auth_failures=dict(stats.auth_failures),
            auth_throttled=dict(server.auth_throttle.refused),
            auth_throttled_addresses=server.auth_throttle.throttled_now(now),
            tickets={"issued": tickets.issued if tickets else 0,
                     "redeemed": tickets.redeemed if tickets else 0,
                     "refused": tickets.refused if tickets else 0},
            resume_tokens={"issued": tickets.resume_issued if tickets else 0,
                           "redeemed": tickets.resume_redeemed if tickets else 0,
                           "refused": tickets.resume_refused if tickets else 0},
            heartbeat_timeouts=stats.heartbeat_timeouts, slow_consumers=stats.slow_consumers,
            limits_hit=dict(stats.limits_hit), connections=server.connections,
            protocol_errors=sum(stats.protocol_errors.values()),
            redis_reconnects=self.stats.redis_reconnects, redis_errors=self.stats.redis_errors,
            bad_redis_messages=sum(self.stats.bad_redis_messages.values()),
            bad_redis_messages_by_reason=dict(self.stats.bad_redis_messages),
            recoveries=dict(self.stats.recoveries),
            history_memory=dict(self.channels.history.memory),
            **totals, **rates)
        shard_errors = getattr(self.store, "errors", None)
        if shard_errors is not None:
            # Several --redis: failed commands by shard (presence/redis/shards.py).
            report["redis_shard_errors"] = {str(i): n for i, n in enumerate(shard_errors)}
        self._previous_report = report
        return report

    # ------------------------------------------------------- announcements

    def announce(self):
        """One announcement: refresh the node's key (re-asserting its
        sessions if it was reaped meanwhile), then reap every node whose key
        expired. Fires when done."""
        announcing = self._announcing = defer.ensureDeferred(self._announce_and_reap())

        def done(result):
            if self._announcing is announcing:
                self._announcing = None
            return result
        return announcing.addBoth(done)

    async def _announce_and_reap(self):
        try:
            reaped = await self._announce()
            if reaped:
                log.warn("presence: this node's heartbeat lapsed and another node took its "
                         "sessions out of presence; re-asserting them")
            if reaped or self._reassert_due:
                self._reassert_sessions()
            for other in await self.store.nodes():
                if other != self.node_id and await self.store.node_info(other) is None:
                    await self.reap(other)
            await self._take_over_sweeps()
        except RedisUnavailable:
            self.stats.redis_errors += 1
        except Exception:
            log.failure("presence: node heartbeat")

    async def _announce(self):
        """Refresh the node's key; True (and counted) when it had been reaped."""
        settings = self.settings
        reaped = await self.store.announce_node(self.node_id, encode_json(self.node_report()),
                                                settings.node_ttl)
        if settings.resume_ttl:
            # Its sessions' resume tokens stay redeemable while it lives, and
            # --resume-ttl after its last announcement's lifetime should it die.
            await self.store.keep_resumable(self.node_id,
                                            settings.node_ttl + settings.resume_ttl)
        if reaped:
            self.stats.reasserted += 1
        return reaped

    # ------------------------------------------------------------ reaping

    async def reap(self, dead):
        """Take the sessions of the dead node ``dead`` out of presence, if
        this node is the first to claim them. The claim is one step; the
        sweep runs apart from the announcements (a node reaping 50,000
        sessions must not miss its own heartbeat and be reaped in turn)."""
        if not await self.store.claim(dead, self.node_id):
            return  # alive after all, or another node claimed it
        self.stats.reaped_nodes += 1
        log.info("presence: node {node} is gone; its sessions leave presence", node=dead)
        self._sweep(dead)

    async def _take_over_sweeps(self):
        """Continue the sweeps of reapers that died before they finished,
        and this node's own that Redis interrupted (it did not answer, or,
        with shards, one shard did not)."""
        for dead, reaper in (await self.store.claimed()).items():
            if reaper == self.node_id and dead not in self._sweeps:
                log.info("presence: taking up the sweep of {node} again", node=dead)
                self._sweep(dead)
            elif reaper != self.node_id and dead not in self._sweeps \
                    and await self.store.node_info(reaper) is None:
                await self.store.take_over(dead, self.node_id)
                log.info("presence: {reaper} died while reaping {node}; finishing it",
                         reaper=reaper, node=dead)
                self._sweep(dead)

    def _sweep(self, dead):
        sweeping = self._sweeps[dead] = defer.ensureDeferred(self.sweep(dead, claimed=True))
        sweeping.addErrback(lambda failure: failure.trap(RedisUnavailable, defer.CancelledError))
        sweeping.addBoth(self._swept, dead)

    def _swept(self, result, dead):
        self._sweeps.pop(dead, None)
        return result

    async def sweep(self, node, claimed):
        """Take ``node``'s records out of presence, SWEEP_CHUNK at a time: a
        dead node's that this node claimed, or, at its stop, its own. Its
        sessions' leave and offline events are published as they go. Each
        chunk is one round trip, and the reactor serves everything else
        (the node's own announcements among it) while it waits for one."""
        while await self.store.sweep(node, SWEEP_CHUNK, claimed, self.clock.seconds(),
                                     self.settings.leave_delay):
            pass
        if claimed:
            await self.store.mark_reaped(node, REAPED_MARK_TTL)

    async def stop_sweeps(self):
        """The node stops: sweeps under way stay claimed, and a survivor
        finishes them once this node's key is gone."""
        sweeps = list(self._sweeps.values())
        for sweeping in sweeps:
            sweeping.cancel()
        await defer.DeferredList(sweeps, consumeErrors=True)

    # ------------------------------------------------------- re-assertion

    async def reassert(self):
        """Assert this node's sessions' presence again (after a Redis outage,
        or when it finds it was reaped). Should Redis fail the announcement
        that comes first (the subscription is back, the command pool not
        yet: a Sentinel failover reconnects them one by one), the next
        heartbeat's announcement re-asserts them: the new master may have
        none of them, and nothing else would."""
        self._reassert_due = True
        await self._announce()
        self._reassert_sessions()

    def _reassert_sessions(self):
        self._reassert_due = False
        channels = self.channels
        for session in list(self.server.sessions.values()):
            if session.account is None or not session.ready:
                continue
            # Whoever saw this session go (a reaper's offline and leave
            # events) sees it come back; after a restart of a Redis that
            # kept nothing, the events announce what the cluster lost.
            self.records.online(session)
            for channel in channels.subscriptions.get(session.id, ()):
                channels.rejoin(session, channel)
