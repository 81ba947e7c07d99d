"""What Presence asks of Redis, as operations on its keys: tickets, presence
(sessions, accounts, channel members), the node registry, what clients
publish, and the dashboard's records. Every Redis command Presence sends is
in this file or in presence/redis/scripts.py; the keys are
presence/redis/keys.py's."""

from . import scripts

__all__ = ["PresenceStore"]


def _pairs(flat):
    """A Redis HGETALL answer as a dict."""
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[0::2], flat[1::2])) if flat else {}


class PresenceStore:
    """``engine``: a RedisEngine; ``keys``: the PresenceKeys of the prefix."""

    def __init__(self, engine, keys):
        self.engine = engine
        self.keys = keys
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

    def take_ticket(self, ticket):
        """GETDEL: the ticket's value, removed in the same step, so that two
        nodes redeeming it at once cannot both succeed (Redis >= 6.2)."""
        return self.execute("GETDEL", self.keys.ticket(ticket))

    # ---------------------------------------------------------- presence

    def session_online(self, node, session, account, info, entry):
        """Fires with True when the account just came online."""
        keys = self.keys
        return self.execute(
            "EVAL", scripts.ONLINE, 3, keys.account(account), keys.online,
            keys.node_sessions(node), session, account, info, entry).addCallback(
            lambda reply: reply == 1)

    def session_offline(self, node, session, account):
        """Fires with True when the account just went offline."""
        keys = self.keys
        return self.execute(
            "EVAL", scripts.OFFLINE, 3, keys.account(account), keys.online,
            keys.node_sessions(node), session, account).addCallback(lambda reply: reply == 1)

    def set_session_entry(self, node, session, entry):
        return self.execute("HSET", self.keys.node_sessions(node), session, entry)

    def join(self, channel, session, account):
        """Fires with 1 when the session was not a member yet."""
        return self.execute("HSET", self.keys.members(channel), session, account)

    def leave(self, channel, session):
        return self.execute("HDEL", self.keys.members(channel), session)

    def members(self, channel):
        return self.execute("HGETALL", self.keys.members(channel)).addCallback(_pairs)

    def online_accounts(self):
        return self.execute("SMEMBERS", self.keys.online)

    def account_sessions(self, account):
        return self.execute("HGETALL", self.keys.account(account)).addCallback(_pairs)

    # ------------------------------------------------------------- nodes

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

    def reap_node(self, node):
        """The sessions of a node whose key expired, claimed once: fires
        with ``{session: entry}`` or ``None`` (alive, or claimed already)."""
        keys = self.keys
        return self.execute("EVAL", scripts.REAP, 3, keys.nodes, keys.node(node),
                            keys.node_sessions(node), node).addCallback(
            lambda reply: _pairs(reply) if reply else None)

    def forget_node(self, node):
        keys = self.keys
        return self.execute("SREM", keys.nodes, node).addCallback(
            lambda _: self.execute("DEL", keys.node(node), keys.node_sessions(node)))

    # ---------------------------------------------------- client publishes

    def add_to_stream(self, fields, maxlen):
        """XADD to the stream backends read, with an approximate length
        bound; fires with the entry id."""
        flat = []
        for name, value in fields:
            flat.extend((name, value))
        return self.execute("XADD", self.keys.stream, "MAXLEN", "~", maxlen, "*", *flat)

    # --------------------------------------------------------- dashboard

    def record_close(self, entry, minute, code, keep):
        keys = self.keys
        return self.execute("EVAL", scripts.RECORD_CLOSE, 2, keys.closes,
                            keys.closes_minute(minute), entry, keep, code)

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
