"""The names of every Redis key and channel Presence uses, under one prefix
(``--redis-prefix``); docs/redis.md documents them for backend authors.

Keys (``P`` is the prefix):

- ``P online``: set of accounts with at least one session
- ``P account:ACCOUNT``: hash, session id -> JSON {node, ip, protocol, since}
- ``P nodes``: set of the ids of nodes that announced themselves
- ``P node:NODE``: string, JSON about the node; expires unless refreshed
- ``P node:NODE:sessions``: hash, session id -> JSON {account}: the node's
  sessions in presence
- ``P node:NODE:channels``: hash, "SESSION CHANNEL" -> "" (with shards, its
  account): its sessions' memberships (what the node, or a survivor, sweeps out of presence)
- ``P node:NODE:sessions:swept``, ``P node:NODE:channels:swept``: the same,
  claimed by a survivor while it sweeps a dead node
- ``P reaping``: hash, dead node -> the survivor sweeping it
- ``P node:NODE:reaped``: string, set when another node reaped it
- ``P members:CHANNEL``: hash, session id -> account
- ``P accounts:CHANNEL``: hash, account -> its sessions in the channel (one
  join per person; ``HLEN`` is the channel's account count)
- ``P channels``: set of the channels with members (``GET /channels``)
- ``P leaving``: sorted set, "CHANNEL\nACCOUNT" (or "\nACCOUNT": its offline)
  -> when its leave is due (ms), while the leave delay runs
- ``P leaving:events``: hash, the same -> the leave's (or offline's) event
- ``P ticket:SHA256``: string, a ticket's JSON, until redeemed or expired
- ``P resume:SHA256``: string, a resume token's ``NODE\nIP\nTICKET-JSON``
  (NODE empty once its session ended), until redeemed or expired
- ``P node:NODE:resumable``: string, set while NODE's sessions' resume
  tokens are redeemable: refreshed by its announcements, it outlives them
  by ``--resume-ttl`` (so a dead node's tokens last that long after it)
- ``P stream``: the Stream of what clients publish, for backends
- ``P closes``, ``P closes:MINUTE``: recent session ends, counts by code
- ``P reply:TOKEN``: a node's answers to a dashboard query
- ``P publish:ID``: string, the nodes a backend's publish with that id
  reached (``POST /publish`` ``"id"``); expires, so a retry within its
  lifetime is not published again
- ``P history:CHANNEL``: stream, a history channel's last publications,
  entry id ``0-OFFSET``, field ``d`` (the data's JSON)
- ``P history-epoch:CHANNEL``: hash, its ``epoch`` and last ``offset``
- ``P event-log``: the Stream of every presence event (the event log),
  written in the scripts that make the changes they tell of
- ``P webhook:NAME:lease``: string, the node delivering to webhook NAME
  (a hash of its URL); ``P webhook:NAME:dead``: stream, its dead letters;
  ``P webhook:NAME:stats``: hash, its counts and last error. Its consumer
  group of the event log is ``webhook:NAME``

- ``P dashboard:login:SHA256``: string, a dashboard login's CSRF token,
  under a SHA-256 of its cookie; expires when idle (presence/redis/dashboard.py)
- ``P dashboard:failures:NETWORK``: string, the passwords an address (an
  IPv6 client's /64) tried lately; expires a lockout after the last

- ``P shards``: string, on shard 0 with several ``--redis``: the cluster's
  shard list (JSON, URLs without passwords); ``P shard``: string, on every
  shard, its index and the count (JSON) (presence/redis/shards.py)

Channels: ``P channel:CHANNEL`` (a Presence channel's messages), ``P events``
(online, offline, subscribe, unsubscribe), ``P control`` (disconnects,
queries), and Juggernaut's ``juggernaut``, ``juggernaut:subscribe`` and
``juggernaut:unsubscribe``, which are not prefixed.
"""

import hashlib

__all__ = ["DEFAULT_PREFIX", "DEFAULT_EVENT_LOG_MAXLEN", "PresenceKeys", "JUGGERNAUT",
           "JUGGERNAUT_SUBSCRIBE", "JUGGERNAUT_UNSUBSCRIBE"]

#: The prefix of every key, so that Presence can share a Redis.
DEFAULT_PREFIX = "presence:"

#: Approximate length bound of the event log (--event-log-maxlen): a
#: backend or a webhook that is down finds the last 100,000 presence events
#: there (about 28 MB of Redis at some 280 bytes an entry: bench/README.md).
DEFAULT_EVENT_LOG_MAXLEN = 100000

#: Juggernaut's publish channel and its subscription events.
JUGGERNAUT = "juggernaut"
JUGGERNAUT_SUBSCRIBE = "juggernaut:subscribe"
JUGGERNAUT_UNSUBSCRIBE = "juggernaut:unsubscribe"


class PresenceKeys:
    """The names of Presence's Redis keys and channels under one prefix."""

    def __init__(self, prefix=DEFAULT_PREFIX):
        self.prefix = prefix
        self.online = prefix + "online"
        self.nodes = prefix + "nodes"
        self.stream = prefix + "stream"
        self.control = prefix + "control"
        self.events = prefix + "events"
        self.closes = prefix + "closes"
        #: Dead node -> the survivor sweeping its records.
        self.reaping = prefix + "reaping"
        #: A sweep's HSCAN cursor, by the hash it sweeps (scripts.SWEEP).
        self.sweep_cursors = prefix + "sweep:cursors"
        #: Departures waiting for the leave delay (scripts.DEPARTURES).
        self.leaving = prefix + "leaving"
        self.leaving_events = prefix + "leaving:events"
        #: The channels with members.
        self.channels = prefix + "channels"
        #: What every Presence channel's Redis channel starts with.
        self.channel_prefix = prefix + "channel:"
        #: The event log: every presence event, as a Stream.
        self.event_log = prefix + "event-log"
        #: Shard 0's list of the cluster's shards, and each shard's marker
        #: of its own place in it (presence/redis/shards.py check_shards).
        self.shard_list = prefix + "shards"
        self.shard_marker = prefix + "shard"

    def account(self, account):
        return "%saccount:%s" % (self.prefix, account)

    def node(self, node):
        return "%snode:%s" % (self.prefix, node)

    def node_sessions(self, node):
        return "%snode:%s:sessions" % (self.prefix, node)

    def node_sessions_parts(self):
        """What comes before and after a node's id in its session hash's key
        (scripts.CHANNEL_MEMBERS finds the node in a session's account entry)."""
        return self.prefix + "node:", ":sessions"

    def node_memberships(self, node):
        return "%snode:%s:channels" % (self.prefix, node)

    @staticmethod
    def swept(key):
        """Where a node's session or membership hash is kept while a
        survivor sweeps it."""
        return key + ":swept"

    def node_reaped(self, node):
        return "%snode:%s:reaped" % (self.prefix, node)

    def members(self, channel):
        return "%smembers:%s" % (self.prefix, channel)

    def channel_accounts(self, channel):
        """A channel's accounts, each with its number of sessions in it."""
        return "%saccounts:%s" % (self.prefix, channel)

    def channel(self, channel):
        """The Redis pub/sub channel carrying a Presence channel's messages."""
        return self.channel_prefix + channel

    def ticket(self, ticket):
        """A ticket's key holds a SHA-256 of it, not the ticket: reading
        Redis (or its logs) gives nobody a usable ticket."""
        return "%sticket:%s" % (self.prefix, hashlib.sha256(ticket.encode("utf-8")).hexdigest())

    def resume(self, token):
        """A resume token's key, a SHA-256 of it as a ticket's
        (presence/hub/tickets.py)."""
        return "%sresume:%s" % (self.prefix, hashlib.sha256(token.encode("utf-8")).hexdigest())

    def node_resumable(self, node):
        """Set while ``node``'s sessions' resume tokens may be redeemed."""
        head, tail = self.node_resumable_parts()
        return head + node + tail

    def node_resumable_parts(self):
        """What comes before and after the node's id in its resumable key
        (scripts.REDEEM finds the node in the token it redeems)."""
        return self.prefix + "node:", ":resumable"

    def closes_minute(self, minute):
        return "%scloses:%d" % (self.prefix, minute)

    def reply(self, token):
        return "%sreply:%s" % (self.prefix, token)

    def publish_id(self, publish_id):
        """A backend's publish id (``POST /publish`` ``"id"``), kept while a
        retry of that publish must not be published again."""
        return "%spublish:%s" % (self.prefix, publish_id)

    def history(self, channel):
        """A history channel's stream of publications (entry ``0-OFFSET``)."""
        return "%shistory:%s" % (self.prefix, channel)

    def history_meta(self, channel):
        """A history channel's epoch and last offset (hash)."""
        return "%shistory-epoch:%s" % (self.prefix, channel)

    def dashboard_login(self, cookie):
        """A dashboard login's key: a SHA-256 of its cookie, as a ticket's,
        so that reading Redis logs nobody in."""
        return "%sdashboard:login:%s" % (self.prefix,
                                         hashlib.sha256(cookie.encode("utf-8")).hexdigest())

    def dashboard_failures(self, network):
        """The count of the passwords ``network`` (an address, an IPv6
        client's /64: presence/wire/clientip.py counted_network) tried."""
        return "%sdashboard:failures:%s" % (self.prefix, network)

    def webhook(self, name, what):
        """A webhook's ``lease``, ``dead`` (letters) or ``stats`` key;
        ``name`` is presence/webhooks/settings.py's hash of its URL."""
        return "%swebhook:%s:%s" % (self.prefix, name, what)
