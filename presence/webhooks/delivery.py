"""Delivering the event log to webhooks.

Each webhook (``--webhook URL``) has a consumer group of the event log
(presence/redis/store.py ``EventLogStore``), and one node at a time delivers
it: the node holding the webhook's lease (scripts.LEAD, renewed every third
of ``lease`` seconds). So every event goes out from one node, and in the
log's order: one batch is in flight at a time, and a batch that fails is
sent again before anything after it. Events of one account therefore stay
in order (every event does), and a receiver that refuses a batch holds the
events after it back until it takes it or the batch is past ``max_age``.

- **A batch** is what XREADGROUP answers: the node's own pending entries
  first (a batch not delivered yet, or claimed from a node that died), else
  up to ``batch_size`` new ones; after a batch of fewer the node waits
  ``batch_wait`` for more to come.
- **Acknowledged only after a 2xx** (scripts.SETTLE: XACK and the count in
  one step). Any other answer, no answer within ``timeout``, or no
  connection is a failure: the batch stays pending, and is sent again after
  ``retry_min`` seconds, doubled each time up to ``retry_max``, each wait a
  random 50-100% of that (jitter).
- **Dead letters.** The events of a failing batch older than ``max_age`` go
  to the webhook's dead-letter stream with the last error (acknowledged and
  counted in the same step); the rest are retried.
- **A node that dies** holding the lease leaves its batch pending: the
  node that takes the lease next claims every pending entry (XAUTOCLAIM)
  and delivers them first. Receivers deduplicate by the event's ``id``.
- **Never in the way.** The log is written by the scripts that change
  presence whether or not anyone delivers it; delivery is a few Redis
  round trips and one HTTP request at a time, so a slow receiver slows
  only its own webhook.

Time is the injected clock's (tests drive retries and ages with a Clock):
an event's age is the clock's now against the event's ``time_ms`` (Redis's
clock), so a Clock in a test starts at the wall clock's time.
"""

import collections
import math
import random
from urllib.parse import urlsplit, urlunsplit

import treq
from twisted.internet import defer, task
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool

from ..redis.engine import RedisUnavailable
from ..redis.store import EventLogStore
from ..wire.throttle import LogThrottle
from .settings import webhook_name
from .signing import HEADER, signature

__all__ = ["Webhook", "Webhooks", "shown_url"]

log = Logger()

#: Bytes of a receiver's answer read at most (and dropped): the status is
#: the answer; a body is read only so that the connection can be reused.
MAX_ANSWER = 64 * 1024
#: Seconds between two refreshes of what Redis knows of a webhook (its
#: counts across the cluster, pending events, the oldest undelivered).
STATUS_INTERVAL = 5.0
#: Delivery latencies kept for the percentiles (the last ones).
LATENCIES_KEPT = 1000


def shown_url(url):
    """``url`` without a password, for logs, the dashboard and /metrics."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname + (":%d" % parts.port if parts.port else "")
    return urlunsplit((parts.scheme, "%s:***@%s" % (parts.username, host), parts.path,
                       parts.query, parts.fragment))


def _id_ms(entry_id):
    return int(entry_id.split("-", 1)[0])


def percentile(values, fraction):
    """The ``fraction`` percentile of sorted ``values`` (nearest rank), or None."""
    if not values:
        return None
    return values[min(len(values), max(1, math.ceil(fraction * len(values)))) - 1]


class _Drained(Protocol):
    """A receiver's answer body, read up to MAX_ANSWER and dropped."""

    def __init__(self):
        self.size = 0
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.size += len(data)
        if self.size > MAX_ANSWER and not self.done.called:
            self.transport.stopProducing()
            self.done.callback(None)

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(None)


class Webhook:
    """One ``url``'s delivery on this node. ``settings``: the
    WebhookSettings; ``store``: an EventLogStore; ``pool``: treq's
    connection pool."""

    def __init__(self, url, settings, store, node_id, clock, pool=None, rng=random.random):
        self.url = url
        self.shown = shown_url(url)
        self.name = webhook_name(url)
        self.group = "webhook:" + self.name
        self.settings = settings
        self.store = store
        self.node_id = node_id
        self.clock = clock
        self.pool = pool
        self.random = rng
        #: After an event's log entry id in its ``id``: "" on one Redis,
        #: "@SHARD" with several (each shard's log counts ids on its own).
        self.id_suffix = ""
        #: Whether this node holds the lease (delivers this webhook now).
        self.leading = False
        #: This node's counts (/metrics): events delivered, given up (dead),
        #: skipped (filtered out, or trimmed from the log before delivery),
        #: requests sent and failed.
        self.delivered = 0
        self.dead = 0
        self.skipped = 0
        self.requests = 0
        self.failures = 0
        #: Events of the batch being retried (0 when none is).
        self.retrying = 0
        self.attempts = 0
        self.last_error = None
        self.last_error_at = None
        #: Milliseconds from an event to its acknowledged delivery.
        self.latencies = collections.deque(maxlen=LATENCIES_KEPT)
        #: What Redis knows of the webhook, cluster-wide (EventLogStore.status).
        self.status = {}
        self._running = False
        self._loop = None
        self._sleep = None
        self._request = None
        self._group_ready = False
        self._renewing = None
        self._refreshing = None
        self._throttle = LogThrottle()

    # ---------------------------------------------------------- life cycle

    def start(self):
        self._running = True
        self._loop = defer.ensureDeferred(self._run())
        self._renewing = task.LoopingCall(self._renew)
        self._renewing.clock = self.clock
        self._renewing.start(self.settings.lease / 3, now=False).addErrback(
            lambda failure: log.failure("presence: webhook lease", failure))
        self._refreshing = task.LoopingCall(self.refresh_status)
        self._refreshing.clock = self.clock
        self._refreshing.start(STATUS_INTERVAL, now=True).addErrback(
            lambda failure: log.failure("presence: webhook status", failure))

    async def stop(self):
        """No more delivering: a request under way is given up (its batch
        stays pending for whichever node leads next), and the lease let go
        so that another node takes over at once."""
        self._running = False
        for loop in (self._renewing, self._refreshing):
            if loop is not None and loop.running:
                loop.stop()
        for waiting in (self._sleep, self._request):
            if waiting is not None:
                waiting.cancel()
        if self._loop is not None:
            await self._loop
        if self.leading:
            self.leading = False
            try:
                await self.store.release(self.name, self.node_id)
            except RedisUnavailable:
                pass

    async def _renew(self):
        if not self.leading:
            return
        try:
            if await self.store.lead(self.name, self.node_id, self.settings.lease) == 0:
                self.leading = False
        except RedisUnavailable:
            pass

    async def refresh_status(self):
        try:
            self.status = await self.store.status(self.group, self.name)
        except Exception:
            pass  # shown as it was; Redis's trouble is counted elsewhere

    # ------------------------------------------------------------ delivery

    async def _run(self):
        while self._running:
            try:
                delay = await self._step()
            except defer.CancelledError:
                break
            except RedisUnavailable:
                delay = 1.0
            except Exception as error:
                if "NOGROUP" in str(error):
                    self._group_ready = False  # the log was deleted: made again
                else:
                    log.failure("presence: webhook {url}", url=self.shown)
                delay = 1.0
            if delay and self._running:
                self._sleep = task.deferLater(self.clock, delay, lambda: None)
                try:
                    await self._sleep
                except defer.CancelledError:
                    break
                finally:
                    self._sleep = None

    async def _step(self):
        """Lead, read one batch and deliver it: the seconds to wait before
        the next step."""
        settings, store = self.settings, self.store
        if not self._group_ready:
            await store.create_group(self.group)
            self._group_ready = True
        lead = await store.lead(self.name, self.node_id, settings.lease)
        if lead == 0:
            self.leading = False
            return settings.lease / 3
        if lead == 2 or not self.leading:
            self.leading = True
            claimed = await store.claim_all(self.group, self.node_id)
            if claimed:
                log.info("presence: webhook {url}: delivering {count} events another node "
                         "had not delivered", url=self.shown, count=claimed)
        entries = await store.read(self.group, self.node_id, "0", settings.batch_size)
        if not entries:
            entries = await store.read(self.group, self.node_id, ">", settings.batch_size)
            if not entries:
                return settings.batch_wait
        delay = await self._deliver(entries)
        if delay is None:
            return 0 if len(entries) >= settings.batch_size else settings.batch_wait
        return delay

    async def _deliver(self, entries):
        """POST the batch; None when it is settled, else the seconds before
        it is retried."""
        settings = self.settings
        wanted, skipped = [], []
        for entry_id, fields in entries:
            if fields is not None and settings.wants(fields.get("name")):
                wanted.append((entry_id, fields.get("data", "{}")))
            else:
                skipped.append((entry_id, ""))
        if skipped:
            await self.store.settle(self.group, self.name, "skipped", skipped)
            self.skipped += len(skipped)
        if not wanted:
            self.attempts = self.retrying = 0
            return None
        now = self.clock.seconds()
        body = ('{"time_ms":%d,"events":[%s]}' % (int(now * 1000), ",".join(
            '{"id":"%s%s",%s' % (entry_id, self.id_suffix, data[1:])
            for entry_id, data in wanted))).encode("utf-8")
        error = await self._post(body, now)
        now = self.clock.seconds()
        if error is None:
            await self.store.settle(self.group, self.name, "delivered", wanted)
            self.delivered += len(wanted)
            self.latencies.extend(now * 1000 - _id_ms(entry_id) for entry_id, _ in wanted)
            self.attempts = self.retrying = 0
            return None
        self.failures += 1
        self.attempts += 1
        self.last_error, self.last_error_at = error, now
        try:
            await self.store.note_error(self.name, error, now)
        except RedisUnavailable:
            pass
        oldest_kept = now * 1000 - settings.max_age * 1000
        dead = [(entry_id, '{"id":"%s%s",%s' % (entry_id, self.id_suffix, data[1:]))
                for entry_id, data in wanted if _id_ms(entry_id) <= oldest_kept]
        if dead:
            await self.store.settle(self.group, self.name, "dead", dead, error,
                                    settings.dead_letters_kept)
            self.dead += len(dead)
            log.warn("presence: webhook {url}: {count} events older than {age:g} s given up "
                     "(dead letters): {error}", url=self.shown, count=len(dead),
                     age=settings.max_age, error=error)
            if len(dead) == len(wanted):
                self.attempts = self.retrying = 0
                return 0
        self.retrying = len(wanted) - len(dead)
        delay = min(settings.retry_min * 2 ** (self.attempts - 1), settings.retry_max)
        delay *= 0.5 + self.random() / 2
        if self._throttle.due(now):
            log.warn("presence: webhook {url} failed ({error}); {count} events retried in "
                     "{delay:.1f} s", url=self.shown, error=error, count=self.retrying,
                     delay=delay)
        return delay

    async def _post(self, body, now):
        """POST ``body``, signed: None for a 2xx, else the error in words."""
        headers = {b"Content-Type": [b"application/json"],
                   HEADER.encode("ascii"): [signature(self.settings.secret, body, now).encode(
                       "ascii")],
                   b"User-Agent": [b"Presence-Webhooks"]}
        self.requests += 1
        requesting = self._request = defer.ensureDeferred(self._ask(body, headers))
        late = []

        def give_up():
            late.append(True)
            requesting.cancel()
        timer = self.clock.callLater(self.settings.timeout, give_up)
        try:
            code = await requesting
        except Exception as error:
            if late:
                return "no answer within %g s" % self.settings.timeout
            if not self._running:
                raise defer.CancelledError()
            return _in_words(error)
        finally:
            self._request = None
            if timer.active():
                timer.cancel()
        if 200 <= code < 300:
            return None
        return "HTTP %d" % code

    async def _ask(self, body, headers):
        response = await treq.post(self.url, data=body, headers=headers, pool=self.pool)
        drained = _Drained()
        response.deliverBody(drained)
        await drained.done
        return response.code

    # ------------------------------------------------------------- reports

    def report(self):
        """This webhook for the dashboard and /metrics: this node's counts,
        the cluster's (from Redis, refreshed every STATUS_INTERVAL), the
        latency percentiles of this node's deliveries, and the age of the
        oldest event not delivered yet."""
        status = self.status
        latencies = sorted(self.latencies)
        oldest = status.get("oldest")
        now_ms = self.clock.seconds() * 1000
        return {
            "url": self.shown, "name": self.name, "leading": self.leading,
            "delivered": self.delivered, "dead": self.dead, "skipped": self.skipped,
            "requests": self.requests, "failures": self.failures, "retrying": self.retrying,
            "last_error": self.last_error or status.get("last_error"),
            "last_error_at": self.last_error_at or status.get("last_error_at"),
            "latency_p50_ms": percentile(latencies, 0.5),
            "latency_p99_ms": percentile(latencies, 0.99),
            "oldest_undelivered_s": max(0.0, (now_ms - _id_ms(oldest)) / 1000.0)
            if oldest else 0.0,
            "cluster_delivered": status.get("delivered", 0),
            "cluster_dead": status.get("dead", 0), "pending": status.get("pending", 0),
            "dead_letters": status.get("dead_letters", 0)}


class Webhooks:
    """Every webhook of ``settings`` (WebhookSettings) on this node.
    ``engine``: the node's RedisEngine, or a list of them, one a Redis shard
    (presence/redis/shards.py); ``keys``: its PresenceKeys.

    Each shard has its own event log (an event is written in the script of
    the change it tells of, on that change's shard), so a webhook is
    delivered a shard at a time: one Webhook a URL and a shard, with its
    consumer group, lease, dead letters and counts on that shard. Events
    of one shard stay in order; events of two shards (an account's offline
    on its shard, its leave of a channel on the channel's) may reach the
    receiver in either order (their ``time_ms`` tells)."""

    def __init__(self, settings, engine, keys, node_id, clock, reactor=None, rng=random.random):
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        engines = list(engine) if isinstance(engine, (list, tuple)) else [engine]
        self.stores = [EventLogStore(shard, keys) for shard in engines]
        self.store = self.stores[0]
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 2
        self.pool.retryAutomatically = False
        #: URL -> its Webhook on each shard, in shard order.
        self.by_url = {url: [Webhook(url, settings, store, node_id, clock, self.pool, rng)
                             for store in self.stores] for url in settings.urls}
        self.hooks = [hook for hooks in self.by_url.values() for hook in hooks]
        if len(self.stores) > 1:
            for hooks in self.by_url.values():
                for index, hook in enumerate(hooks):
                    hook.id_suffix = "@%d" % index

    def start(self):
        for hook in self.hooks:
            hook.start()

    async def stop(self):
        for hook in self.hooks:
            await hook.stop()
        await self.pool.closeCachedConnections()

    def reports(self):
        """One report a URL (its shards' added up)."""
        return [hooks[0].report() if len(hooks) == 1 else _merged(hooks)
                for hooks in self.by_url.values()]


#: Counts a webhook's report adds up over shards.
_SUMMED = ("delivered", "dead", "skipped", "requests", "failures", "retrying",
           "cluster_delivered", "cluster_dead", "pending", "dead_letters")


def _merged(hooks):
    """The report of one URL's Webhooks on several shards: counts summed,
    latencies of every shard's deliveries, the oldest undelivered event and
    the last error of any."""
    reports = [hook.report() for hook in hooks]
    merged = dict(reports[0])
    for field in _SUMMED:
        merged[field] = sum(report[field] for report in reports)
    merged["leading"] = any(report["leading"] for report in reports)
    failed = [report for report in reports if report["last_error_at"]]
    if failed:
        last = max(failed, key=lambda report: report["last_error_at"])
        merged["last_error"], merged["last_error_at"] = last["last_error"], last["last_error_at"]
    latencies = sorted(latency for hook in hooks for latency in hook.latencies)
    merged["latency_p50_ms"] = percentile(latencies, 0.5)
    merged["latency_p99_ms"] = percentile(latencies, 0.99)
    merged["oldest_undelivered_s"] = max(report["oldest_undelivered_s"] for report in reports)
    return merged


def _in_words(error):
    """A failure to connect, in words (treq's are lists of Failures)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(reason.getErrorMessage() for reason in reasons)
    return str(error) or type(error).__name__
