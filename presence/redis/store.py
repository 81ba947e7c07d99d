"""What Presence asks of Redis, as operations on its keys: tickets, presence
(sessions, accounts, channel members), the node registry, what clients
publish, and the dashboard's records. Every Redis command Presence sends is
in this file or in presence/redis/scripts.py (the dashboard's logins:
presence/redis/dashboard.py); the keys are presence/redis/keys.py's."""

import secrets

from twisted.internet import defer

from . import scripts
from .keys import DEFAULT_EVENT_LOG_MAXLEN, JUGGERNAUT_SUBSCRIBE, JUGGERNAUT_UNSUBSCRIBE

__all__ = ["PresenceStore", "NodeRecords", "EventLogStore"]


def _pairs(flat):
    """A Redis HGETALL answer as a dict."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[0::2], flat[1::2])) if flat else {}


def _redeemed(reply):
    """scripts.REDEEM's answer: None, or (ticket JSON, bound address, stored)."""
    if not reply:
        return None
    ticket, bound, stored = reply
    return ticket, bound or None, int(stored) == 1


class NodeRecords:
    """A node's records in the cluster: its announcements, the registry of
    nodes, and the claim and sweep of a dead node's presence (the half of
    :class:`PresenceStore` presence/hub/liveness.py uses). Mixed into
    PresenceStore, whose ``execute``, ``keys`` and ``event_log_maxlen`` it
    reads."""

    def announce_node(self, node, info, ttl):
        """The node's heartbeat: fires with True when another node had
        reaped it meanwhile (its key expired: a pause, a partition, a Redis
        restart), so it must assert its sessions' presence again."""
        keys = self.keys
        return self.execute("EVAL", scripts.ANNOUNCE, 3, keys.nodes, keys.node(node),
                            keys.node_reaped(node), node, info, ttl).addCallback(
            lambda reply: reply == 1)

    def mark_reaped(self, node, ttl):
        """Tell a reaped node, should it be alive after all, that its
        sessions were taken out of presence (set once the reaping is done,
        so its re-assertion cannot be undone by the reaper)."""
        return self.execute("SET", self.keys.node_reaped(node), "1", "EX", ttl)

    def nodes(self):
        return self.execute("SMEMBERS", self.keys.nodes)

    def node_info(self, node):
        return self.execute("GET", self.keys.node(node))

    def claim(self, dead, reaper):
        """Claim the records of ``dead``, a node whose key expired, for
        ``reaper`` to sweep: fires with True for the first to ask, False for
        everyone else (and while the node is alive after all)."""
        keys = self.keys
        sessions, memberships = keys.node_sessions(dead), keys.node_memberships(dead)
        return self.execute("EVAL", scripts.CLAIM, 7, keys.nodes, keys.node(dead), sessions,
                            memberships, keys.swept(sessions), keys.swept(memberships),
                            keys.reaping, dead, reaper).addCallback(lambda reply: reply == 1)

    def claimed(self):
        """``{dead node: the node sweeping it}`` for every sweep under way."""
        return self.execute("HGETALL", self.keys.reaping).addCallback(_pairs)

    def take_over(self, dead, reaper):
        """``reaper`` continues the sweep of ``dead`` (its sweeper died)."""
        return self.execute("HSET", self.keys.reaping, dead, reaper)

    def sweep(self, node, count, claimed=True, now=0.0, leave_delay=0.0):
        """Take up to ``count`` of ``node``'s records out of presence
        (scripts.SWEEP): the swept copies a survivor claimed, or, at the
        node's own stop, its own. Fires with the number of records left."""
        keys = self.keys
        sessions, memberships = keys.node_sessions(node), keys.node_memberships(node)
        if claimed:
            sessions, memberships = keys.swept(sessions), keys.swept(memberships)
        return self.execute(
            "EVAL", scripts.SWEEP, 8, sessions, memberships, keys.online, keys.events,
            JUGGERNAUT_UNSUBSCRIBE, keys.reaping, keys.sweep_cursors, keys.event_log, count,
            node, keys.members(""), keys.channel(""), keys.account(""),
            self.event_log_maxlen,
            keys.channel_accounts(""), keys.leaving, keys.leaving_events, int(now * 1000),
            int(leave_delay * 1000), keys.channels).addCallback(int)

    def forget_node(self, node):
        keys = self.keys
        return self.execute("SREM", keys.nodes, node).addCallback(
            lambda _: self.execute("DEL", keys.node(node), keys.node_sessions(node),
                                   keys.node_memberships(node), keys.node_resumable(node)))


class PresenceStore(NodeRecords):
    """``engine``: a RedisEngine; ``keys``: the PresenceKeys of the prefix;
    ``event_log_maxlen``: the event log's bound (--event-log-maxlen);
    ``sharded``: one of several Redis shards (presence/redis/shards.py)."""

    def __init__(self, engine, keys, event_log_maxlen=DEFAULT_EVENT_LOG_MAXLEN, sharded=False):
        self.engine = engine
        self.keys = keys
        self.event_log_maxlen = event_log_maxlen
        #: Whether memberships name their account (scripts.APPLY).
        self.sharded = sharded
        self.execute = engine.execute
        self.publish = engine.publish

    def ping(self):
        return self.engine.ping()

    # ----------------------------------------------------------- tickets

    def store_ticket(self, ticket, value, ttl):
        """SET the ticket only if new (a collision is astronomically unlikely,
        but a ticket must never be overwritten), expiring after ``ttl``
        seconds. Fires with True when stored."""
        return self.execute("SET", self.keys.ticket(ticket), value, "EX", ttl, "NX").addCallback(
            lambda reply: reply == "OK")

    def redeem(self, kind, credential, node, new_token=None, ip=None, now=0.0, max_age=0,
               resumable_ttl=1):
        """Take a ticket (``kind`` "ticket") or a resume token ("resume")
        with GETDEL, so that two nodes redeeming it at once cannot both
        succeed, and store the session's ``new_token`` (bound to ``ip``, on
        ``node``) in the same step (scripts.REDEEM): ``max_age`` seconds
        from the ticket's issued_at, ``now`` on the node's clock (a resume
        token older is refused); no new token without ``new_token``. Fires
        with None, or
        ``(ticket JSON, the address a resume token was bound to or None,
        whether the new token was stored)``."""
        keys = self.keys
        key = keys.ticket(credential) if kind == "ticket" else keys.resume(credential)
        head, tail = keys.node_resumable_parts()
        return self.execute(
            "EVAL", scripts.REDEEM, 3, key, keys.resume(new_token or "-"),
            keys.node_resumable(node), kind, node, head, tail, ip or "", int(now * 1000),
            int(max_age * 1000), resumable_ttl, "1" if new_token else "0").addCallback(_redeemed)

    def resume_ended(self, token, node, ttl):
        """The session of ``token`` ended: the token is valid ``ttl`` more
        seconds, never past its maximum age (scripts.RESUME_ENDED)."""
        return self.execute("EVAL", scripts.RESUME_ENDED, 1, self.keys.resume(token), node,
                            int(ttl * 1000))

    def remember_subscription(self, token, channel, subscribed):
        """A server-side subscription (or its end) kept in the ticket of
        resume token ``token`` (scripts.REMEMBER)."""
        return self.execute("EVAL", scripts.REMEMBER, 1, self.keys.resume(token), channel,
                            "1" if subscribed else "0")

    @staticmethod
    def draw_ticket():
        """A new ticket: 192 random bits, URL-safe (presence/hub/tickets.py)."""
        return secrets.token_urlsafe(24)

    @staticmethod
    def draw_resume_token(credential):
        """A new session's resume token, redeemed with ``credential``
        (presence/redis/shards.py draws one on the credential's shard)."""
        return secrets.token_urlsafe(24)

    def forget_resume(self, token):
        """A resume token stored for a session that was then refused."""
        return self.execute("DEL", self.keys.resume(token))

    def keep_resumable(self, node, ttl):
        """``node`` is alive: its sessions' resume tokens are redeemable for
        ``ttl`` more seconds (refreshed with every announcement)."""
        return self.execute("SET", self.keys.node_resumable(node), "1", "EX", ttl)

    # ---------------------------------------------------------- presence

    def apply(self, node, operations, now=0.0, leave_delay=0.0):
        """The presence changes of ``node``'s sessions, in order, in one step
        (scripts.APPLY): ``operations`` is their flat list of words; an
        account's leaves and offline are due ``leave_delay`` seconds after
        ``now`` (scripts.DEPARTURES)."""
        keys = self.keys
        return self.execute(
            "EVAL", scripts.APPLY, 2, keys.event_log, self.event_log_maxlen,
            keys.node_sessions(node), keys.node_memberships(node),
            keys.online, keys.events, JUGGERNAUT_SUBSCRIBE, JUGGERNAUT_UNSUBSCRIBE,
            keys.leaving, keys.leaving_events, int(now * 1000), int(leave_delay * 1000),
            keys.channels, "1" if self.sharded else "", *operations)

    def departed(self, now, count):
        """Publish up to ``count`` departures due at ``now`` (scripts.DEPARTED);
        fires with the number taken."""
        keys = self.keys
        return self.execute("EVAL", scripts.DEPARTED, 5, keys.leaving, keys.leaving_events,
                            keys.online, keys.events, keys.event_log, int(now * 1000), count,
                            keys.channel_accounts(""), keys.channel(""), keys.account(""),
                            self.event_log_maxlen).addCallback(int)

    def members(self, channel):
        return self.execute("HGETALL", self.keys.members(channel)).addCallback(_pairs)

    def channels_page(self, cursor, count):
        """A page of the channels with members (scripts.CHANNELS): fires with
        ``(next cursor, [(channel, sessions, accounts), ...])``."""
        keys = self.keys

        def answered(reply):
            flat = reply[1:]
            return str(reply[0]), [(flat[i], int(flat[i + 1]), int(flat[i + 2]))
                                   for i in range(0, len(flat), 3)]
        return self.execute("EVAL", scripts.CHANNELS, 1, keys.channels, cursor, count,
                            keys.members(""), keys.channel_accounts("")).addCallback(answered)

    def channel_counts(self, channel):
        """``(sessions, accounts)`` in ``channel``: two HLENs, O(1)."""
        keys = self.keys
        return defer.gatherResults([
            self.execute("HLEN", keys.members(channel)),
            self.execute("HLEN", keys.channel_accounts(channel))]).addCallback(
            lambda counts: (int(counts[0]), int(counts[1])))

    def channel_members_page(self, channel, cursor, count):
        """A page of ``channel``'s accounts with their sessions in it
        (scripts.CHANNEL_MEMBERS): fires with ``(next cursor, [(session,
        account, entry, node entry), ...])``, cursor "0" when the walk is
        done; entries are JSON or '' (session '': an account whose leave
        waits, its entry the leave's event)."""
        keys = self.keys

        def answered(reply):
            flat = reply[1:]
            return str(reply[0]), [tuple(flat[i:i + 4]) for i in range(0, len(flat), 4)]
        return self.execute("EVAL", scripts.CHANNEL_MEMBERS, 3, keys.members(channel),
                            keys.channel_accounts(channel), keys.leaving_events, cursor, count,
                            keys.account(""), *keys.node_sessions_parts(),
                            channel).addCallback(answered)

    def write_quality(self, node, entries):
        """``[(session, entry JSON)]``: ``node``'s sessions' entries, where
        they are still there (scripts.QUALITY)."""
        flat = []
        for session_id, entry in entries:
            flat.extend((session_id, entry))
        return self.execute("EVAL", scripts.QUALITY, 1, self.keys.node_sessions(node), *flat)

    def session_entries(self, sessions, account=None):
        """``[(node, session)]`` -> their node entries (JSON or None), in
        order: what a node wrote of its sessions' quality (``account``'s
        sessions: their shard's, presence/redis/shards.py)."""
        return defer.gatherResults([
            self.execute("HGET", self.keys.node_sessions(node), session_id)
            for node, session_id in sessions])

    def online_accounts(self):
        return self.execute("SMEMBERS", self.keys.online)

    def account_sessions(self, account):
        return self.execute("HGETALL", self.keys.account(account)).addCallback(_pairs)

    # ---------------------------------------------------- client publishes

    def add_to_stream(self, fields, maxlen):
        """XADD to the stream backends read, with an approximate length
        bound; fires with the entry id."""
        flat = []
        for name, value in fields:
            flat.extend((name, value))
        return self.execute("XADD", self.keys.stream, "MAXLEN", "~", maxlen, "*", *flat)

    def publish_once(self, publish_id, ttl, messages):
        """PUBLISH every ``(Redis channel, message)`` of ``messages``, in one
        step with recording ``publish_id`` for ``ttl`` seconds, and only if
        it was not recorded already (scripts.PUBLISH_ONCE). Fires with
        ``(nodes reached, duplicate)``: for a duplicate, nothing is
        published and ``nodes`` is what the first publish reached."""
        flat = []
        for channel, message in messages:
            flat.extend((channel, message))
        return self.execute("EVAL", scripts.PUBLISH_ONCE, 1, self.keys.publish_id(publish_id),
                            ttl, *flat).addCallback(
            lambda reply: (int(reply[1]), int(reply[0]) == 0))

    # ------------------------------------------------------------ history

    def publish_recorded(self, publish_id, id_ttl, records):
        """Publish to channels of which some keep a history, in one step
        (scripts.PUBLISH_RECORDED), under ``publish_id`` (or None).
        ``records``: one 9-tuple a channel, the script's fields. Fires with
        ``(nodes reached, duplicate, [(epoch, offset), ...] or None)``, one
        pair a history channel; a duplicate's are the first publish's
        (None when that one was made by PUBLISH_ONCE)."""
        flat = []
        for record in records:
            flat.extend(record)
        keys = (1, self.keys.publish_id(publish_id)) if publish_id is not None else (0,)

        def answered(reply):
            if int(reply[0]) == 1:
                words = reply[2:]
                duplicate = False
            else:
                words = str(reply[1] or "0").split(" ")
                reply = [0, words[0]]
                words = words[1:] if len(words) > 1 else None
                duplicate = True
            offsets = None if words is None else [
                (str(words[i]), int(words[i + 1])) for i in range(0, len(words), 2)]
            return int(reply[1]), duplicate, offsets
        return self.execute("EVAL", scripts.PUBLISH_RECORDED, *keys, id_ttl, *flat).addCallback(
            answered)

    def read_history(self, channel, new_epoch, ttl, epoch, offset, last, limit):
        """A history channel's epoch, last offset, oldest kept offset,
        whether ``(epoch, offset)`` was recovered, and up to ``limit``
        publications as ``[(offset, data JSON), ...]`` (scripts.READ_HISTORY:
        ``epoch`` None for none, "*" for any; ``last`` publications when not
        recovered, -1 for none)."""
        keys = self.keys

        def answered(reply):
            found, latest, first, recovered, entries = reply
            return (str(found), int(latest), int(first), int(recovered) == 1,
                    [(int(entry_id.rpartition("-")[2]), _pairs(fields)["d"])
                     for entry_id, fields in entries])
        return self.execute("EVAL", scripts.READ_HISTORY, 2, keys.history(channel),
                            keys.history_meta(channel), new_epoch, ttl,
                            "" if epoch is None else epoch, offset, last, limit).addCallback(
            answered)

    def history_memory(self, channel):
        """Bytes Redis uses for ``channel``'s history (MEMORY USAGE of its
        two keys, every stream node counted)."""
        keys = self.keys

        def total(replies):
            return sum(int(reply or 0) for reply in replies)
        return defer.gatherResults([
            self.execute("MEMORY", "USAGE", key, "SAMPLES", "0")
            for key in (keys.history(channel), keys.history_meta(channel))]).addCallback(total)

    # --------------------------------------------------------- dashboard

    def recent_closes(self, count):
        return self.execute("LRANGE", self.keys.closes, 0, count - 1)

    def close_counts(self, minute):
        return self.execute("HGETALL", self.keys.closes_minute(minute)).addCallback(_pairs)

    def reply(self, key, payload, ttl=30):
        """A node's answer to a query (RPUSH to the asker's key)."""
        return self.execute("RPUSH", key, payload).addCallback(
            lambda _: self.execute("EXPIRE", key, ttl))

    def replies(self, key):
        return self.execute("LRANGE", key, 0, -1)


def _entries(reply):
    """XREADGROUP's or XAUTOCLAIM's entries as ``[(id, fields or None)]``
    (None: the entry was trimmed from the stream while it was pending)."""
    return [(str(entry[0]), _pairs(entry[1]) if entry[1] else None) for entry in reply or ()]


class EventLogStore:
    """The event log (scripts.EVENT_LOG writes it) as webhooks read it:
    one consumer group of the log per webhook, its lease, its dead letters
    and its counts (presence/webhooks/delivery.py). ``engine``: a
    RedisEngine; ``keys``: the PresenceKeys of the prefix."""

    def __init__(self, engine, keys):
        self.engine = engine
        self.keys = keys
        self.execute = engine.execute

    def create_group(self, group):
        """The webhook's consumer group, from the log's end (events from now
        on), unless it exists: fires with True when it was created."""
        def exists(failure):
            if "BUSYGROUP" in failure.getErrorMessage():
                return False
            return failure
        return self.execute("XGROUP", "CREATE", self.keys.event_log, group, "$",
                            "MKSTREAM").addCallbacks(lambda _: True, exists)

    def lead(self, name, node, ttl):
        """Take or keep the webhook's lease for ``ttl`` seconds (scripts.LEAD):
        fires with 2 (taken now), 1 (kept) or 0 (another node's)."""
        return self.execute("EVAL", scripts.LEAD, 1, self.keys.webhook(name, "lease"), node,
                            int(ttl * 1000)).addCallback(int)

    def release(self, name, node):
        return self.execute("EVAL", scripts.RELEASE, 1, self.keys.webhook(name, "lease"), node)

    async def claim_all(self, group, node):
        """XAUTOCLAIM every entry pending in ``group`` (a node that died, or
        lost its lease, was delivering them) for ``node``, then forget the
        other consumers, left with nothing pending. Fires with the count."""
        cursor, claimed = "0-0", 0
        while True:
            reply = await self.execute("XAUTOCLAIM", self.keys.event_log, group, node, 0,
                                       cursor, "COUNT", 100, "JUSTID")
            cursor = str(reply[0])
            claimed += len(reply[1] or ())
            if cursor == "0-0":
                break
        for consumer in await self.execute("XINFO", "CONSUMERS", self.keys.event_log, group):
            info = _pairs(consumer)
            if info.get("name") != node and int(info.get("pending", 0)) == 0:
                await self.execute("XGROUP", "DELCONSUMER", self.keys.event_log, group,
                                   info["name"])
        return claimed

    def read(self, group, node, start, count):
        """XREADGROUP: ``start`` "0" for ``node``'s own pending entries (a
        batch not delivered yet), ">" for new ones. Fires with
        ``[(id, fields or None)]``."""
        def entries(reply):
            return _entries(reply[0][1]) if reply else []
        return self.execute("XREADGROUP", "GROUP", group, node, "COUNT", count, "STREAMS",
                            self.keys.event_log, start).addCallback(entries)

    def settle(self, group, name, outcome, entries, error="", dead_maxlen=10000):
        """Acknowledge ``entries`` (``[(id, event JSON)]``), counted as
        ``outcome`` ("delivered", "dead": then added to the dead letters
        with ``error``; "skipped": filtered out), in one step
        (scripts.SETTLE)."""
        keys = self.keys
        flat = []
        for entry_id, event in entries:
            flat.extend((entry_id, event if outcome == "dead" else ""))
        return self.execute("EVAL", scripts.SETTLE, 3, keys.event_log, keys.webhook(name, "stats"),
                            keys.webhook(name, "dead"), group, outcome, len(entries), error,
                            dead_maxlen, *flat)

    def note_error(self, name, error, at):
        """The webhook's last error, for the dashboard of every node."""
        return self.execute("HSET", self.keys.webhook(name, "stats"), "last_error", error,
                            "last_error_at", repr(at))

    async def status(self, group, name):
        """What the cluster knows of a webhook: ``delivered``, ``dead``,
        ``skipped``, ``last_error``, ``last_error_at`` (its stats hash),
        ``pending`` (read, not acknowledged), ``dead_letters`` (kept), and
        ``oldest`` (the id of the oldest event not delivered, or None)."""
        keys = self.keys
        log = keys.event_log
        status = {"pending": 0, "oldest": None}
        stats = _pairs(await self.execute("HGETALL", keys.webhook(name, "stats")))
        for field in ("delivered", "dead", "skipped"):
            status[field] = int(stats.get(field, 0))
        status["last_error"] = stats.get("last_error") or None
        status["last_error_at"] = float(stats["last_error_at"]) if stats.get(
            "last_error_at") else None
        status["dead_letters"] = int(await self.execute("XLEN", keys.webhook(name, "dead")))
        try:
            groups = await self.execute("XINFO", "GROUPS", log)
        except Exception:
            return status  # no log yet
        ours = [_pairs(g) for g in groups if _pairs(g).get("name") == group]
        if not ours:
            return status
        status["pending"] = int(ours[0].get("pending", 0))
        candidates = []
        if status["pending"]:
            summary = await self.execute("XPENDING", log, group)
            if summary and summary[1]:
                candidates.append(str(summary[1]))
        after = await self.execute("XRANGE", log, "(" + str(ours[0]["last-delivered-id"]),
                                   "+", "COUNT", 1)
        if after:
            candidates.append(str(after[0][0]))
        if candidates:
            status["oldest"] = min(candidates, key=lambda i: tuple(map(int, i.split("-"))))
        return status

    def dead_letters(self, name, count=20):
        """The last ``count`` dead letters: ``[(entry id, {id, event, error})]``."""
        return self.execute("XREVRANGE", self.keys.webhook(name, "dead"), "+", "-", "COUNT",
                            count).addCallback(_entries)
