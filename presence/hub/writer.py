"""The presence changes of this node's sessions, written to Redis in order,
in batches, bounded.

Every change a session makes to presence (it comes online or goes offline,
joins or leaves a channel, its close record) is one operation, appended to
one queue and written by one script (presence/redis/scripts.py ``APPLY``):

- **In order.** One batch is in flight at a time, on one connection, and a
  batch is applied whole or not at all; a failed batch goes back to the head
  of the queue and is written again (after a pause that doubles up to
  MAX_RETRY_DELAY), so a session's leave can never be applied before the
  join it follows, and a client-side timeout never leaves presence
  half-written. Writing again is harmless: a join or a leave applied twice
  is the same membership (its events may be published twice).
- **Batched.** The first change goes out at once; whatever arrives while a
  batch is in flight goes in the next, up to MAX_BATCH. A reconnect storm
  of 1,000 sessions subscribing to 100 channels each costs Redis a few
  hundred round trips, not half a million.
- **Bounded.** Past HIGH_WATER operations waiting, a session whose message
  adds one is no longer read until the queue is below half of it: the node
  slows its clients down rather than drown.
"""

import collections

from twisted.internet import defer
from twisted.logger import Logger

from ..wire.jsontext import encode_json
from ..wire.throttle import LogThrottle
from .events import account_membership_event, juggernaut_event, membership_event, presence_event

__all__ = ["PresenceWriter", "ShardedWriter"]

log = Logger()

#: Operations one batch carries at most (one script: a few milliseconds of
#: Redis's time at this size).
MAX_BATCH = 1000
#: Operations waiting (queued or in flight) past which the sessions adding
#: more are paused; they are read again below half of it.
HIGH_WATER = 20000
#: Seconds before a failed batch is written again, doubled up to the max.
MIN_RETRY_DELAY = 0.1
MAX_RETRY_DELAY = 5.0


class PresenceWriter:
    """``store``: the node's PresenceStore; ``stats``: the hub's counters."""

    def __init__(self, store, node_id, clock, stats, leave_delay=0.0):
        self.store = store
        #: Seconds an account's leaves and offline wait (scripts.DEPARTURES).
        self.leave_delay = leave_delay
        self.node_id = node_id
        self.clock = clock
        self.stats = stats
        self._queue = collections.deque()
        self._in_flight = None
        self._retry = None
        self._retry_delay = MIN_RETRY_DELAY
        self._paused = set()
        self._waiting = []
        self._throttle = LogThrottle()

    @property
    def pending(self):
        """Operations not written yet (queued, and in flight)."""
        return len(self._queue) + (len(self._in_flight) if self._in_flight else 0)

    # ----------------------------------------------------------- operations

    def online(self, session, info, entry):
        """``session`` (with an account) is online: its account's session
        ``info`` and its node ``entry``; ``online`` if it is the first."""
        keys = self.store.keys
        self._add(("online", keys.account(session.account), session.id, session.account,
                   info, entry, encode_json(presence_event(
                       "online", session.account, session.id, self.node_id,
                       info=session.info))))

    def offline(self, session_id, account, ended=None):
        """A session of this node is gone; ``offline`` if it was the last
        (``ended``: its close record, events.ended_by)."""
        self._add(("offline", self.store.keys.account(account), session_id, account,
                   encode_json(presence_event("offline", account, session_id, self.node_id,
                                              ended=ended))))

    def join(self, session, channel, again=False):
        """``session`` is a member of ``channel``: the channel and backends
        are told (``again``: after this node was reaped, only if it was not a
        member any more)."""
        self._membership("rejoin" if again else "join", session.id, session.account, channel,
                         session, session.info)

    def leave(self, session_id, account, channel, session=None, info=None, ended=None):
        """``session_id`` left ``channel`` (``session``: it is still open;
        ``ended``: it ended, with this close record, events.ended_by)."""
        self._membership("leave", session_id, account, channel, session, info, ended)

    def _membership(self, kind, session_id, account, channel, session, info, ended=None):
        keys = self.store.keys
        self._add((kind, keys.members(channel), keys.channel(channel), session_id,
                   account or "", channel,
                   encode_json(membership_event("leave" if kind == "leave" else "join",
                                                channel, account, session_id, info, ended)),
                   encode_json(presence_event("unsubscribe" if kind == "leave" else "subscribe",
                                              account, session_id, self.node_id, channel,
                                              ended=ended)),
                   encode_json(juggernaut_event(channel, session_id, account)),
                   keys.channel_accounts(channel),
                   encode_json(account_membership_event("leave" if kind == "leave" else "join",
                                                        channel, account, info, ended,
                                                        session_id))),
                  session)

    def close_record(self, record, minute, code, keep):
        """A session's close record (its JSON), kept ``keep`` deep and
        counted in its minute."""
        keys = self.store.keys
        self._add(("close", keys.closes, keys.closes_minute(minute), record, str(keep),
                   str(code)))

    # -------------------------------------------------------------- writing

    def _add(self, operation, session=None):
        self._queue.append(operation)
        if session is not None and self.pending > HIGH_WATER and session not in self._paused \
                and session.connected:
            # Backpressure: this client waits until Redis has caught up.
            self._paused.add(session)
            self.stats.paused_for_redis += 1
            session.pause_reading()
        if self._in_flight is None and self._retry is None:
            self._write()

    def _write(self):
        self._retry = None
        queue = self._queue
        if not queue:
            self._drained()
            return
        batch = [queue.popleft() for _ in range(min(MAX_BATCH, len(queue)))]
        self._in_flight = batch
        words = [word for operation in batch for word in operation]
        self.store.apply(self.node_id, words, self.clock.seconds(),
                         self.leave_delay).addCallbacks(self._written, self._failed)

    def _written(self, _):
        self.stats.presence_writes += len(self._in_flight)
        self.stats.presence_batches += 1
        self._in_flight = None
        self._retry_delay = MIN_RETRY_DELAY
        if self._paused and self.pending < HIGH_WATER // 2:
            paused, self._paused = self._paused, set()
            for session in paused:
                if session.connected:
                    session.resume_reading()
        self._write()

    def _failed(self, failure):
        batch = self._in_flight
        self._in_flight = None
        self._queue.extendleft(reversed(batch))  # back at the head, in order
        self.stats.redis_errors += 1
        if self._throttle.due(self.clock.seconds()):
            log.warn("presence: {count} presence changes not written yet ({error}); "
                     "writing them again in {delay} s", count=self.pending,
                     error=failure.getErrorMessage(), delay=self._retry_delay)
        self._retry = self.clock.callLater(self._retry_delay, self._write)
        self._retry_delay = min(self._retry_delay * 2, MAX_RETRY_DELAY)

    def _drained(self):
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.called:  # a waiter that timed out was cancelled
                waiter.callback(None)

    def finished(self):
        """A Deferred firing once every change so far is written."""
        if not self.pending:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._waiting.append(waiter)
        return waiter

    def stop(self):
        """No more writing again (the node stops); what is not written is
        dropped, and counted: the node's sweep, or a survivor's, takes its
        records out of presence."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        dropped = len(self._queue)
        self._queue.clear()
        self._drained()
        return dropped


class ShardedWriter:
    """One PresenceWriter a Redis shard (presence/redis/shards.py), as one:
    an account's online and offline go to its account's shard, a
    membership to its channel's, close records to shard 0. Each shard's
    changes stay in order, and a shard that does not answer holds back its
    own queue only: the others' presence goes on. ``shard_of``: name ->
    the index of its shard."""

    def __init__(self, writers, shard_of):
        self.writers = writers
        self.shard_of = shard_of

    @property
    def pending(self):
        return sum(writer.pending for writer in self.writers)

    def _of(self, name):
        return self.writers[self.shard_of(name or "")]

    def online(self, session, info, entry):
        self._of(session.account).online(session, info, entry)

    def offline(self, session_id, account, ended=None):
        self._of(account).offline(session_id, account, ended)

    def join(self, session, channel, again=False):
        self._of(channel).join(session, channel, again)

    def leave(self, session_id, account, channel, session=None, info=None, ended=None):
        self._of(channel).leave(session_id, account, channel, session, info, ended)

    def close_record(self, record, minute, code, keep):
        self.writers[0].close_record(record, minute, code, keep)

    def finished(self):
        return defer.DeferredList([writer.finished() for writer in self.writers],
                                  fireOnOneErrback=True, consumeErrors=True)

    def stop(self):
        return sum(writer.stop() for writer in self.writers)
