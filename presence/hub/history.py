"""Channel history: offsets and epochs, and subscribes that recover what a
client missed (docs/messages.md; the keys are docs/redis.md's).

A channel matching ``--history PATTERN=SIZE,TTL`` keeps its last SIZE
publications in Redis. Each publication gets the channel's next offset (1,
2, 3, ...) in the script that PUBLISHes it (scripts.PUBLISH_RECORDED), so
the live message and the stored one carry the same offset. The channel's
epoch names its history: a history Redis lost, or let expire, starts again
at 1 under a new epoch, and a client holding the old one knows it cannot
recover.

A subscribe to a history channel is answered once the node's pub/sub
subscription to it is confirmed and its history read, in that order: every
publication after the history read then comes live. Live messages that
reach the session meanwhile are kept (:class:`_Joining`) and merged after
the history by offset, those the history held dropped: no gap, no
duplicate, whatever the publish rate.
"""

import os

from twisted.internet import defer, task
from twisted.logger import Logger

from ..redis.engine import RedisUnavailable
from ..wire.jsontext import decode_json, encode_json

__all__ = ["History", "MAX_PAGE", "DEFAULT_PAGE", "new_epoch"]

log = Logger()

#: Most publications GET /history answers at once, and its default.
MAX_PAGE = 1000
DEFAULT_PAGE = 100
#: Seconds a subscribe to a history channel waits for the node's pub/sub
#: subscription (Redis away): then it is answered without its history.
SUBSCRIBED_TIMEOUT = 5.0
#: Seconds between two samples of the history's memory in Redis, and the
#: most channels one sample asks about (MEMORY USAGE, two keys each).
MEMORY_EVERY = 30.0
MEMORY_SAMPLE = 100
#: Channels whose rule is remembered (matching a name against the rules
#: costs a regular expression a rule; a publish asks for every channel).
_RULES_REMEMBERED = 10000


def new_epoch():
    """A new epoch: 12 random hex digits (a client compares it, nothing
    more)."""
    return os.urandom(6).hex()


class _Joining:
    """A session subscribing to a history channel. While its history is
    read, what the channel delivers to it is kept (``buffer``: documents and
    their epochs); once the history is sent, a live message of ``epoch`` at
    or before ``last`` (the last offset sent) is a duplicate and dropped,
    and the first one after it (or of another epoch: the history was lost
    and started again) ends the joining: every later one is after it too
    (one script assigns offsets and publishes, and pub/sub keeps their
    order)."""

    __slots__ = ("session", "buffer", "last", "epoch")

    def __init__(self, session):
        self.session = session
        self.buffer = []
        self.last = None
        self.epoch = None

    def duplicate(self, document, epoch, last):
        """Whether ``document`` is a publication at or before ``last`` of
        this subscription's epoch (the history sent it already)."""
        offset = document.get("offset")
        return (document.get("type") == "message" and isinstance(offset, int)
                and (epoch is None or epoch == self.epoch) and offset <= last)

    def receive(self, document, epoch=None):
        """Keep or send ``document``; False once the joining is over."""
        if self.buffer is not None:
            self.buffer.append((document, epoch))
            return True
        if self.duplicate(document, epoch, self.last):
            return True
        self.session.send_document(document)
        return document.get("type") != "message" or not isinstance(
            document.get("offset"), int)


def _message_text(channel_json, offset, data):
    """A stored publication as the message a live one is: the same fields,
    in the same order (its data's JSON as it was stored)."""
    return '{"type":"message","channel":%s,"offset":%d,"data":%s}' % (channel_json, offset,
                                                                     data)


def recovery_budget(max_outgoing_buffer):
    """Bytes of history a subscribe sends at most: half the bytes a client
    may leave unread (``--max-outgoing-buffer``). A history written at once
    goes past the transport's buffer into what is counted against a client
    that does not read; one larger than that would close the client as a
    slow consumer, and it would reconnect to recover it again."""
    return max_outgoing_buffer // 2


class History:
    """``rules``: the HubSettings' HistoryRules; ``subscriber`` (the node's
    pub/sub connection) and ``server`` (its client side: the outgoing bound)
    are given when the hub starts."""

    def __init__(self, store, rules, stats, clock):
        self.store = store
        self.keys = store.keys
        self.rules = tuple(rules)
        self.stats = stats
        self.clock = clock
        self.subscriber = None
        self.server = None
        #: Channel -> {session id: _Joining}: subscribes being answered.
        self.joining = {}
        self._rules_of = {}
        #: The last sample of what the history of the channels this node
        #: listens to costs Redis (:meth:`start_measuring`).
        self.memory = {"channels": 0, "bytes": 0}
        self._measuring = None

    def rule(self, channel):
        """The HistoryRule of ``channel`` (the first that matches), or None."""
        if not self.rules:
            return None
        try:
            return self._rules_of[channel]
        except KeyError:
            pass
        found = next((rule for rule in self.rules if rule.matches(channel)), None)
        if len(self._rules_of) >= _RULES_REMEMBERED:
            self._rules_of.clear()
        self._rules_of[channel] = found
        return found

    def keeps_any(self, channels):
        return bool(self.rules) and any(self.rule(channel) is not None for channel in channels)

    # ------------------------------------------------------------ memory

    def start_measuring(self, listened):
        """Sample, every MEMORY_EVERY seconds, the Redis memory of the
        history channels among ``listened()`` (the channels this node's
        sessions listen to): MEMORY USAGE of up to MEMORY_SAMPLE of them,
        scaled to them all, in :attr:`memory` (the node report, /metrics).
        Nothing when no channel keeps history."""
        if not self.rules:
            return
        self._measuring = task.LoopingCall(self.measure, listened)
        self._measuring.clock = self.clock
        self._measuring.start(MEMORY_EVERY, now=True)

    def stop_measuring(self):
        if self._measuring is not None and self._measuring.running:
            self._measuring.stop()

    def measure(self, listened):
        """One sample (:meth:`start_measuring`); fires when taken."""
        channels = [channel for channel in listened() if self.rule(channel) is not None]
        sample = channels[:MEMORY_SAMPLE]

        def measured(sizes):
            total = sum(sizes)
            self.memory = {"channels": len(channels),
                           "bytes": total * len(channels) // len(sample) if sample else 0}

        def failed(failure):
            if not failure.check(RedisUnavailable):  # else the next sample will tell
                log.failure("presence: sampling the history's memory", failure)
        return defer.gatherResults(
            [self.store.history_memory(channel) for channel in sample],
            consumeErrors=True).addCallbacks(
            measured, lambda failure: failure.value.subFailure).addErrback(failed)

    # ------------------------------------------------------------ publishing

    def record(self, channel, data_json, exclude):
        """The fields of scripts.PUBLISH_RECORDED for a publish of
        ``data_json`` to ``channel``, a history channel."""
        rule = self.rule(channel)
        keys = self.keys
        rest = ',"except":%s}' % encode_json(list(exclude)) if exclude else "}"
        head = '{"type":"message","channel":%s,"offset":' % encode_json(channel)
        return (keys.channel(channel), head, rest, keys.history(channel),
                keys.history_meta(channel), rule.size, rule.ttl, new_epoch(), data_json)

    # ------------------------------------------------------------ reading

    def read(self, channel, since, limit):
        """GET /history: fires with ``{"channel", "epoch", "offset",
        "messages": [{"offset", "data"}]}``, the publications after
        ``since`` (or the oldest kept), at most ``limit``; None for a channel
        without history."""
        rule = self.rule(channel)
        if rule is None:
            return defer.succeed(None)

        def answer(reply):
            epoch, latest, _, _, entries = reply
            return {"channel": channel, "epoch": epoch, "offset": latest,
                    "messages": [{"offset": offset, "data": decode_json(data)}
                                 for offset, data in entries]}
        return self.store.read_history(channel, new_epoch(), rule.ttl, "*", since, -1,
                                       limit).addCallback(answer)

    # ------------------------------------------------------------ subscribing

    def subscribe(self, session, channel, rule, recover=None, last=None):
        """Answer ``session``'s subscribe to ``channel`` (it listens already):
        ``subscribed`` with the channel's epoch and offset, then the
        publications after ``recover`` (``(epoch, offset)``) when they are
        all kept, or else the ``last`` ones, then live ones."""
        joining = _Joining(session)
        self.joining.setdefault(channel, {})[session.id] = joining
        if recover is not None:
            self.stats.recoveries["attempted"] += 1
        return defer.ensureDeferred(self._answer(session, channel, rule, recover, last,
                                                 joining))

    def forget(self, session_id, channel):
        """``session`` no longer listens to ``channel``."""
        joining = self.joining.get(channel)
        if joining is not None and joining.pop(session_id, None) is not None and not joining:
            del self.joining[channel]

    def _within_budget(self, entries, recovered):
        """The ``entries`` a subscribe may send (recovery_budget): a recovery
        longer than that is not made (the client reloads its state instead,
        and goes on live); of the last K, the latest that fit."""
        if self.server is None:
            return entries, recovered
        budget = recovery_budget(self.server.settings.max_outgoing_buffer)
        size = 0
        for kept, (_, data) in enumerate(reversed(entries)):
            size += len(data) + 64  # the message's envelope, about
            if size > budget:
                if recovered:
                    return (), False
                return entries[len(entries) - kept:], recovered
        return entries, recovered

    async def _answer(self, session, channel, rule, recover, last, joining):
        answer = {"type": "subscribed", "channel": channel}
        entries = ()
        since = None
        recovered = False
        try:
            # The pub/sub subscription first: whatever the read below does
            # not hold is published after it, and comes live.
            ready = self.subscriber.ready(self.keys.channel(channel))
            ready.addTimeout(SUBSCRIBED_TIMEOUT, self.clock)
            await ready
            asked_epoch, asked_offset = recover if recover is not None else (None, 0)
            epoch, latest, _, recovered, entries = await self.store.read_history(
                channel, new_epoch(), rule.ttl, asked_epoch, asked_offset,
                -1 if last is None else min(last, rule.size), rule.size)
        except (RedisUnavailable, defer.TimeoutError, defer.CancelledError):
            log.warn("presence: the history of {channel} could not be read; subscribed "
                     "without it", channel=channel)
        else:
            answer.update(epoch=epoch, offset=latest)
            entries, recovered = self._within_budget(entries, recovered)
            since = entries[0][0] - 1 if entries else latest
            joining.epoch = epoch
        if self.joining.get(channel, {}).get(session.id) is not joining:
            return  # unsubscribed, closed, or subscribed again meanwhile
        if recover is not None:
            answer["recovered"] = recovered
            self.stats.recoveries["succeeded" if recovered else "failed"] += 1
        session.send_document(answer)
        channel_json = encode_json(channel)
        for offset, data in entries:
            session.send_text(_message_text(channel_json, offset, data))
            since = offset
        buffered, joining.buffer = joining.buffer, None
        live = since is None  # no history read: nothing to tell apart
        for document, epoch in buffered:
            if since is not None and joining.duplicate(document, epoch, since):
                continue
            offset = document.get("offset")
            if since is not None and document.get("type") == "message" and isinstance(
                    offset, int):
                live = True  # the live stream passed the history
                if epoch is None or epoch == joining.epoch:
                    since = offset
            session.send_document(document)
        if live:
            self.forget(session.id, channel)
        else:
            joining.last = since
