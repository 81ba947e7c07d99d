"""How well each session is connected, cluster-wide: ``rtt_ms`` (the last
heartbeat's round trip), ``last_seen_ms`` (milliseconds since its last pong
or message) and ``stale`` (a heartbeat ping unanswered, and nothing heard
from the session for more than one heartbeat interval: "online,
unreachable", before the heartbeat timeout closes it).

The facts are the session's node's (presence/net/heartbeat.py measures the
round trips; the read loop's rate limit notes when it last read). Each node
writes them into its sessions' entries in its session hash
(``P node:NODE:sessions``, scripts.QUALITY: only entries still there, so a
session gone meanwhile is not brought back) every ``--node-heartbeat``
seconds, and only the entries that changed. A member listing on any node
reads them with the membership (scripts.CHANNEL_MEMBERS).

Freshness: ``rtt_ms`` and ``stale`` are as of the node's last write (at
most one node heartbeat old); ``last_seen_ms`` is computed when it is read,
from the wall-clock time of the last pong or read the node wrote, so a
silent session's grows as it should, and an active one's is at most one
node heartbeat too large. Nodes' clocks must be in step (as for resume
tokens' maximum age)."""

from twisted.internet import defer, task
from twisted.logger import Logger

from ..redis.engine import RedisUnavailable
from ..wire.jsontext import encode_json

__all__ = ["Quality", "QUALITY_CHUNK", "QUALITY_TURN"]

log = Logger()

#: Session entries written in one step.
QUALITY_CHUNK = 500
#: Sessions looked at in one reactor turn. One pass over 19,000 sessions
#: took 100-170 ms here, every --node-heartbeat, and held back every
#: delivery and heartbeat meanwhile (bench/scale.py's latency tail, every
#: 5 s); in turns of this many, the reads and deliveries waiting run
#: between them.
QUALITY_TURN = 1000


class Quality:
    """``store``: the node's PresenceStore; ``server`` (the node's client
    side) is given when the hub starts."""

    def __init__(self, store, node_id, clock, interval):
        self.store = store
        self.node_id = node_id
        self.clock = clock
        self.interval = interval
        self.server = None
        self._loop = None
        #: Session id -> the facts last written for it (rtt_ms, seen_ms, stale).
        self._written = {}

    def start(self):
        self._loop = task.LoopingCall(lambda: defer.ensureDeferred(self.refresh()))
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def entry(self, session, now):
        """What the node writes of ``session`` (with its account: the
        session hash's entries are JSON objects whose ``account`` SWEEP
        reads)."""
        seen = max(filter(None, (session.opened_at, session.last_heartbeat,
                                 session.last_read_at)), default=now)
        interval = self.server.settings.heartbeat_interval
        stale = bool(interval) and session.ping_sent_at is not None and now - seen > interval
        rtt = session.rtt
        return {"account": session.account,
                "rtt_ms": None if rtt is None else round(rtt * 1000, 1),
                "seen_ms": int(seen * 1000), "stale": stale}

    @staticmethod
    def shown(entry, now):
        """A session's ``rtt_ms``, ``last_seen_ms`` and ``stale`` as a
        listing read at ``now`` (seconds) shows them, from its node's entry
        (an empty dict: not written yet, all None)."""
        seen = entry.get("seen_ms")
        return {"rtt_ms": entry.get("rtt_ms"),
                "last_seen_ms": None if not isinstance(seen, (int, float))
                else max(0, int(now * 1000 - seen)),
                "stale": entry.get("stale")}

    async def refresh(self):
        """Write the entries of this node's sessions that changed since the
        last write, QUALITY_TURN sessions a reactor turn."""
        server = self.server
        if server is None:
            return
        written = self._written
        current = {}
        sessions = list(server.sessions.values())
        try:
            for start in range(0, len(sessions), QUALITY_TURN):
                if start:
                    await task.deferLater(self.clock, 0, lambda: None)
                changed = self._changes(sessions[start:start + QUALITY_TURN], written, current)
                for first in range(0, len(changed), QUALITY_CHUNK):
                    await self.store.write_quality(self.node_id,
                                                   changed[first:first + QUALITY_CHUNK])
        except RedisUnavailable:
            return  # written again at the next refresh
        except Exception:
            log.failure("presence: writing the sessions' connection quality")
            return
        self._written = current

    def _changes(self, sessions, written, current):
        """The ``(session id, entry JSON)`` of those of ``sessions`` whose
        facts differ from ``written``'s; ``current`` gets every one's."""
        now = self.clock.seconds()
        changed = []
        for session in sessions:
            if session.account is None or not session.ready:
                continue
            entry = self.entry(session, now)
            facts = (entry["rtt_ms"], entry["seen_ms"], entry["stale"])
            current[session.id] = facts
            if written.get(session.id) != facts:
                changed.append((session.id, encode_json(entry)))
        return changed
