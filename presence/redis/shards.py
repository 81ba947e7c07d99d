"""Several Redis servers as shards (``--redis URL`` given more than once).

Which shard holds what (docs/redis.md, "Shards: which key lives where"):

- a channel's members, account counts, history and Redis pub/sub channel
  live on :func:`shard_of` its name; an account's keys (its session hash,
  its place in ``online``, its offline's departure) on the account's;
  a ticket on the ticket's, a resume token on the token's;
- the node registry, the control channel and its replies, the stream of
  client publishes, the close records, the shard list and the dashboard's
  logins and lockout (presence/redis/dashboard.py) live on shard 0;
  a webhook's group, lease and counts on every shard, for its event log.

Each shard is a whole Presence keyspace for the channels and accounts it
holds: the Lua scripts keep running atomically on one Redis each, with a
node's session and membership hashes, ``online``, ``channels``,
``leaving`` and the event log kept per shard (an event is written in the
script of the change it tells of, so on that change's shard).

The shard is chosen by a jump consistent hash (Lamping and Veach, "A Fast,
Minimal Memory, Consistent Hash Algorithm", 2014) of a stable 64-bit hash
of the name (BLAKE2b, never Python's ``hash()``, which changes from process
to process): every node computes the same shard, and adding a shard to n
moves about 1/(n+1) of the names, all of them to the new shard.

With one shard nothing here is used: the hub talks to its PresenceStore
and RedisSubscriber directly, as it always did.
"""

import hashlib
import json
import secrets
from urllib.parse import urlsplit

from twisted.internet import defer

from . import scripts
from .engine import RedisUnavailable
from .store import PresenceStore, _pairs

__all__ = ["stable_hash", "jump_hash", "shard_of", "canonical_url", "ShardedStore",
           "ShardedSubscriber", "ShardsDisagree", "check_shards"]

_MASK64 = (1 << 64) - 1


def stable_hash(name):
    """A 64-bit hash of ``name`` that every process computes alike."""
    data = name.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def jump_hash(key, buckets):
    """Lamping and Veach's jump consistent hash: the bucket of the 64-bit
    ``key`` among ``buckets`` (their Figure 1, line for line)."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shard_of(name, count):
    """The shard (0 to ``count`` - 1) of a channel, account, ticket or
    resume token named ``name``."""
    if count == 1:
        return 0
    return jump_hash(stable_hash(name), count)


def canonical_url(url):
    """``url`` as the shard list records it: scheme, host, port, path and
    query, never the password (the list is readable by whoever reads
    Redis), with the default port and database spelled out."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return "unix://%s%s" % (parts.path, "?" + parts.query if parts.query else "")
    if parts.scheme != "redis":
        # sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER: as given,
        # less the password.
        return "%s://%s%s%s" % (parts.scheme, parts.netloc.rpartition("@")[2], parts.path,
                                "?" + parts.query if parts.query else "")
    host = parts.hostname or "localhost"
    if ":" in host:
        host = "[%s]" % host
    return "redis://%s:%d/%s%s" % (host, parts.port or 6379, parts.path.lstrip("/") or "0",
                                   "?" + parts.query if parts.query else "")


def _gathered(deferreds):
    """gatherResults, failing with the first failure itself (a
    RedisUnavailable stays one: callers answer it with a 503), not
    FirstError."""
    def unwrapped(failure):
        failure.trap(defer.FirstError)
        return failure.value.subFailure
    return defer.gatherResults(deferreds, consumeErrors=True).addErrback(unwrapped)


class ShardsDisagree(Exception):
    """This node's shard list is not the cluster's: it must not start."""


async def check_shards(stores, urls):
    """Refuse (ShardsDisagree) a shard list that is not the cluster's.

    Shard 0 keeps the cluster's list (canonical URLs, ``P shards``), set by
    the first node that starts; each shard keeps a marker of its own index
    and of the count (``P shard``). A node with the list in another order,
    another count, or another Redis at one of the places, is refused with
    both lists named. A shard that lost its marker (restarted without
    persistence) is marked again when its URL is the list's; the markers
    are checked before the list is written, so that a refused node never
    writes its list (shard 0 restarted empty and a node with the list
    swapped starting first). With one shard nothing is written: its Redis
    is checked for a marker of another index, or a list of more shards,
    only."""
    keys = stores[0].keys
    mine = [canonical_url(url) for url in urls]
    count = len(mine)
    await _check_list(stores[0], mine)
    for index, store in enumerate(stores):
        await _check_marker(store, index, count, mine[index])
    if count > 1:
        await stores[0].execute("SET", keys.shard_list, json.dumps(mine), "NX")
        await _check_list(stores[0], mine)
        for index, store in enumerate(stores):
            await store.execute("SET", keys.shard_marker,
                                json.dumps({"index": index, "of": count}), "NX")
            await _check_marker(store, index, count, mine[index])


async def _check_list(store, mine):
    """The cluster's list on shard 0, if there is one, is ``mine``."""
    listed = await store.execute("GET", store.keys.shard_list)
    if listed is not None and json.loads(listed) != mine:
        raise ShardsDisagree(_difference(mine, json.loads(listed)))


async def _check_marker(store, index, count, url):
    """The marker of ``store``'s Redis, if it has one, says it is shard
    ``index`` of ``count``."""
    found = await store.execute("GET", store.keys.shard_marker)
    if found is None:
        return
    found = json.loads(found)
    if found.get("index") != index or found.get("of") != count:
        raise ShardsDisagree(
            "shard %d is %s here, but that Redis is the cluster's shard %s of %s: "
            "give every node the same --redis URLs, in the same order (docs/redis.md, "
            "Shards)" % (index, url, found.get("index"), found.get("of")))


def _difference(mine, theirs):
    if len(mine) != len(theirs):
        return ("this node has %d Redis shards (%s), but the cluster has %d (%s): give every "
                "node the same --redis URLs, in the same order (docs/redis.md, Shards)"
                % (len(mine), ", ".join(mine), len(theirs), ", ".join(theirs)))
    index = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
    return ("shard %d is %s here, but the cluster's shard %d is %s: give every node the "
            "same --redis URLs, in the same order (docs/redis.md, Shards)"
            % (index, mine[index], index, theirs[index]))


class _NodesOverShards:
    """ShardedStore's part for a node's records, which are on every shard:
    a dead node's claim (once, on shard 0), its sweep, a stopped node's
    keys."""

    async def claim(self, dead, reaper):
        """Shard 0's claim (once, cluster-wide), then the dead node's records
        moved aside on every other shard (scripts.CLAIM_SHARD)."""
        if not await self.first.claim(dead, reaper):
            return False
        await self._claim_others(dead)
        return True

    async def take_over(self, dead, reaper):
        await self.first.take_over(dead, reaper)
        await self._claim_others(dead)

    async def _claim_others(self, dead):
        keys = self.keys
        sessions, memberships = keys.node_sessions(dead), keys.node_memberships(dead)

        def moved(shard):
            return shard.execute("EVAL", scripts.CLAIM_SHARD, 4, sessions, memberships,
                                 keys.swept(sessions), keys.swept(memberships))
        await self._on_every_shard(lambda shard: moved(shard) if shard is not self.first
                                   else defer.succeed(0), must=())

    async def sweep(self, node, count, claimed=True, now=0.0, leave_delay=0.0):
        """A step of the sweep on every shard but 0, then shard 0's (whose
        last step ends the claim in ``P reaping``): fires with the records
        left. A shard that does not answer is left out of the steps after,
        so that the others are swept to the end; then the claim is put back
        and the sweep fails (RedisUnavailable): it is taken up again later
        (presence/hub/liveness.py). Each run of a claimed sweep starts by
        moving aside what is left of the node on the other shards
        (CLAIM_SHARD), should a shard have missed the claim."""
        run = (node, claimed)
        failed = self._sweeping.get(run)
        if failed is None:
            failed = self._sweeping[run] = set()
            if claimed:
                await self._claim_others(node)
        others = [index for index in range(1, self.count) if index not in failed]
        answers = await defer.DeferredList([
            self.shards[index].sweep(node, count, claimed, now, leave_delay)
            for index in others], consumeErrors=True)
        left = 0
        for index, (ok, answer) in zip(others, answers):
            if ok:
                left += answer
            else:
                failed.add(index)
        if left:
            return left
        try:
            holder = None
            if failed and claimed:
                holder = await self.first.execute("HGET", self.keys.reaping, node)
            left = await self.first.sweep(node, count, claimed, now, leave_delay)
            if failed and not left:
                if holder is not None:
                    await self.first.take_over(node, holder)
                raise RedisUnavailable("the sweep of %s waits for shard(s) %s" % (
                    node, ", ".join(map(str, sorted(failed)))))
        except Exception:
            del self._sweeping[run]
            raise
        if not left:
            del self._sweeping[run]
        return left

    async def forget_node(self, node):
        await self.first.forget_node(node)
        keys = self.keys
        await self._on_every_shard(lambda shard: shard.execute(
            "DEL", keys.node_sessions(node), keys.node_memberships(node),
            keys.node_resumable(node)), must=())


class ShardedStore(_NodesOverShards):
    """The PresenceStore's operations over several shards, each sent to the
    shard that holds its keys; operations of every shard (departures,
    sweeps) run on each, and answers of several (the online accounts, the
    channels' pages) are merged. ``engines``: a RedisEngine a shard.
    ``errors``: failed commands by shard (the dashboard, /metrics)."""

    def __init__(self, engines, keys, event_log_maxlen):
        self.keys = keys
        self.event_log_maxlen = event_log_maxlen
        self.shards = [PresenceStore(engine, keys, event_log_maxlen, sharded=True)
                       for engine in engines]
        self.count = len(self.shards)
        self.errors = [0] * self.count
        #: Shards whose last command failed (RedisUnavailable): new tickets
        #: are drawn elsewhere (:meth:`draw_ticket`).
        self.down = set()
        #: (node, claimed) -> the shards that failed in the sweep under way.
        self._sweeping = {}
        for index, shard in enumerate(self.shards):
            shard.execute = self._counted(index, shard.engine.execute)
            shard.publish = self._counted(index, shard.engine.publish)
        self.engine = engines[0]

    def _counted(self, index, command):
        def counted(*args):
            return command(*args).addCallbacks(self._answered, self._failed,
                                               callbackArgs=(index,), errbackArgs=(index,))
        return counted

    def _answered(self, result, index):
        self.down.discard(index)
        return result

    def _failed(self, failure, index):
        if failure.check(RedisUnavailable):
            self.errors[index] += 1
            self.down.add(index)
        return failure

    # --------------------------------------------------------- the routes

    def index_of(self, name):
        return shard_of(name, self.count)

    def of(self, name):
        """The store of the shard holding ``name`` (a channel, an account,
        a ticket, a resume token)."""
        return self.shards[shard_of(name, self.count)]

    @property
    def first(self):
        return self.shards[0]

    def index_of_redis_channel(self, redis_channel):
        """The shard of a Redis pub/sub channel: a Presence channel's is its
        channel's; every other (control, events, Juggernaut's) is shard 0."""
        prefix = self.keys.channel_prefix
        if redis_channel.startswith(prefix):
            return self.index_of(redis_channel[len(prefix):])
        return 0

    def of_redis_channel(self, redis_channel):
        return self.shards[self.index_of_redis_channel(redis_channel)]

    def __getattr__(self, name):
        # What only shard 0 holds (the node registry, the stream, the close
        # records, replies): PresenceStore's operation on shard 0.
        if name in _FIRST:
            return getattr(self.shards[0], name)
        raise AttributeError(name)

    def ping(self):
        return self.first.ping()

    def publish(self, redis_channel, message):
        return self.of_redis_channel(redis_channel).publish(redis_channel, message)

    # ----------------------------------------------------------- tickets

    def draw_ticket(self):
        """A new ticket, on a shard that answered last time: a ticket lives
        on its own hash's shard, so one shard down need not refuse a third
        of the tickets (while every shard is down, any)."""
        for _ in range(64):
            ticket = secrets.token_urlsafe(24)
            if self.index_of(ticket) not in self.down:
                return ticket
        return ticket

    def store_ticket(self, ticket, value, ttl):
        return self.of(ticket).store_ticket(ticket, value, ttl)

    def draw_resume_token(self, credential):
        """A new resume token on the shard of ``credential`` (REDEEM stores
        it in the script that takes the credential, on one Redis): tokens
        are drawn until one hashes there, ``count`` draws on average."""
        home = self.index_of(credential)
        while True:
            token = secrets.token_urlsafe(24)
            if self.index_of(token) == home:
                return token

    def redeem(self, kind, credential, *args, **kwargs):
        return self.of(credential).redeem(kind, credential, *args, **kwargs)

    def resume_ended(self, token, node, ttl):
        return self.of(token).resume_ended(token, node, ttl)

    def remember_subscription(self, token, channel, subscribed):
        return self.of(token).remember_subscription(token, channel, subscribed)

    def forget_resume(self, token):
        return self.of(token).forget_resume(token)

    def keep_resumable(self, node, ttl):
        """On every shard (a token is checked on its own shard). The
        announcement waits for shard 0's only: a shard that does not answer
        is counted, and must not make the node miss its heartbeat."""
        for shard in self.shards[1:]:
            shard.keep_resumable(node, ttl).addErrback(lambda failure: None)
        return self.first.keep_resumable(node, ttl)

    # ---------------------------------------------------------- presence

    def _on_every_shard(self, call, must=None):
        """``call(shard)`` on each shard at once: fires with the answers
        (None for a shard that failed). Fails when a shard of ``must``
        (indexes; None: all of them) failed, after every shard answered."""
        def settled(results):
            answers = []
            for index, (ok, value) in enumerate(results):
                if not ok and (must is None or index in must):
                    return value
                answers.append(value if ok else None)
            return answers
        return defer.DeferredList([defer.ensureDeferred(call(shard)) for shard in self.shards],
                                  consumeErrors=True).addCallback(settled)

    def departed(self, now, count):
        """Each shard's departures that are due (a shard down waits; the
        others go on): fires with the number taken."""
        return self._on_every_shard(lambda shard: shard.departed(now, count), must=()).addCallback(
            lambda answers: sum(answer or 0 for answer in answers))

    def members(self, channel):
        return self.of(channel).members(channel)

    def channel_counts(self, channel):
        return self.of(channel).channel_counts(channel)

    def channels_page(self, cursor, count):
        """A page of one shard's channels: the cursor is the shard's SSCAN
        cursor times the shard count, plus the shard's index (0 to start,
        "0" when every shard was walked)."""
        cursor = int(cursor)
        index, inner = cursor % self.count, cursor // self.count

        def answered(reply):
            following, page = reply
            following = int(following)
            if following:
                return str(following * self.count + index), page
            return str(index + 1 if index + 1 < self.count else 0), page
        return self.shards[index].channels_page(str(inner), count).addCallback(answered)

    async def channel_members_page(self, channel, cursor, count):
        """PresenceStore.channel_members_page's rows, over shards: the
        channel's accounts from its shard, their sessions from their own
        shards (scripts.ACCOUNT_SESSIONS), kept when members of the
        channel. Accounts on a shard that does not answer are listed
        without sessions (as one whose leave waits)."""
        home, keys = self.of(channel), self.keys
        reply = await home.execute("HSCAN", keys.channel_accounts(channel), cursor, "COUNT",
                                   count)
        found = list(_pairs(reply[1]).items())
        rows = []
        waiting = [who for who, sessions in found if int(sessions) <= 0]
        if waiting:
            events = await home.execute("HMGET", keys.leaving_events,
                                        *[channel + "\n" + who for who in waiting])
            rows.extend(("", who, event or "", "") for who, event in zip(waiting, events))
        by_shard = {}
        for who, _ in found:
            by_shard.setdefault(self.index_of(who), []).append(who)
        candidates = []
        for index, accounts in sorted(by_shard.items()):
            try:
                flat = await self.shards[index].execute(
                    "EVAL", scripts.ACCOUNT_SESSIONS, 0, keys.account(""),
                    *keys.node_sessions_parts(), *accounts)
            except RedisUnavailable:
                # Their shard does not answer: the channel's own shard
                # does, so they are listed, without their sessions.
                rows.extend(("", who, "", "") for who in accounts)
                continue
            candidates.extend(tuple(flat[i:i + 4]) for i in range(0, len(flat), 4))
        if candidates:
            present = await home.execute("HMGET", keys.members(channel),
                                         *[row[0] for row in candidates])
            rows.extend(row for row, member in zip(candidates, present) if member is not None)
        return str(reply[0]), rows

    def write_quality(self, node, entries):
        """Each entry on its account's shard (the entry names it)."""
        by_shard = {}
        for session_id, entry in entries:
            account = json.loads(entry).get("account") or ""
            by_shard.setdefault(self.index_of(account), []).append((session_id, entry))
        return _gathered([self.shards[index].write_quality(node, part)
                          for index, part in by_shard.items()])

    def session_entries(self, sessions, account=None):
        return self.of(account or "").session_entries(sessions)

    def online_accounts(self):
        """Every shard's online accounts (fails when a shard does not answer:
        a partial answer would say accounts are offline that are not)."""
        return _gathered([shard.online_accounts() for shard in self.shards]).addCallback(
            lambda answers: sorted({account for answer in answers for account in answer}))

    def account_sessions(self, account):
        return self.of(account).account_sessions(account)

    # ---------------------------------------------------- client publishes

    def _by_shard(self, items):
        """``items`` (each starting with its Redis channel) by shard, in
        order: ``{index: [(position, item)]}``."""
        parts = {}
        for position, item in enumerate(items):
            index = self.index_of_redis_channel(item[0])
            parts.setdefault(index, []).append((position, item))
        return parts

    def publish_once(self, publish_id, ttl, messages):
        """Each shard's channels in one step there, under the id on that
        shard: a retry publishes only what a shard had not (nodes: summed;
        a duplicate when every shard's part was)."""
        parts = self._by_shard(messages)

        def merged(answers):
            return (sum(nodes for nodes, _ in answers),
                    all(duplicate for _, duplicate in answers))
        return _gathered([
            self.shards[index].publish_once(publish_id, ttl, [item for _, item in part])
            for index, part in parts.items()]).addCallback(merged)

    def publish_recorded(self, publish_id, id_ttl, records):
        """As :meth:`publish_once`, the offsets of the history channels
        (records with a stream key) put back in the records' order."""
        parts = self._by_shard(records)
        order = list(parts.items())

        def merged(answers):
            offsets = {}
            known = True
            for (_, part), (_, _, found) in zip(order, answers):
                kept = [position for position, record in part if record[3]]
                if found is None:
                    known = known and not kept
                    continue
                offsets.update(zip(kept, found))
            return (sum(nodes for nodes, _, _ in answers),
                    all(duplicate for _, duplicate, _ in answers),
                    [offsets[position] for position in sorted(offsets)] if known else None)
        return _gathered([
            self.shards[index].publish_recorded(publish_id, id_ttl,
                                                [record for _, record in part])
            for index, part in order]).addCallback(merged)

    # ------------------------------------------------------------ history

    def read_history(self, channel, *args):
        return self.of(channel).read_history(channel, *args)

    def history_memory(self, channel):
        return self.of(channel).history_memory(channel)


#: PresenceStore operations on keys that only shard 0 holds.
_FIRST = frozenset(("announce_node", "mark_reaped", "nodes", "node_info", "claimed",
                    "add_to_stream", "recent_closes", "close_counts", "reply", "replies"))


class ShardedSubscriber:
    """A RedisSubscriber a shard, as one: each Redis channel is subscribed
    on its shard (ShardedStore.of_redis_channel)."""

    def __init__(self, store, subscribers):
        self.store = store
        self.subscribers = subscribers

    def _of(self, redis_channel):
        return self.subscribers[self.store.index_of_redis_channel(redis_channel)]

    @property
    def connected(self):
        return all(subscriber.connected for subscriber in self.subscribers)

    @property
    def channels(self):
        return set().union(*(subscriber.channels for subscriber in self.subscribers))

    def subscribe(self, redis_channel):
        self._of(redis_channel).subscribe(redis_channel)

    def unsubscribe(self, redis_channel):
        self._of(redis_channel).unsubscribe(redis_channel)

    def ready(self, redis_channel):
        return self._of(redis_channel).ready(redis_channel)

    def close(self):
        return defer.DeferredList([subscriber.close() for subscriber in self.subscribers],
                                  consumeErrors=True)
