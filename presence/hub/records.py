"""Presence records: which sessions of which accounts are online, on which
node, and how sessions ended (presence/redis/store.py writes them)."""

import json

from ..wire.jsontext import encode_json, shown

__all__ = ["PresenceRecords"]


class PresenceRecords:
    """``store``: the node's PresenceStore; ``events``: its BackendEvents;
    ``node_id``: this node's id."""

    def __init__(self, store, events, node_id, clock, closes_kept):
        self.store = store
        self.events = events
        self.node_id = node_id
        self.clock = clock
        self.closes_kept = closes_kept

    def session_info(self, session):
        """What ``GET /presence/ACCOUNT`` and ``P account:ACCOUNT`` say of a
        session."""
        return encode_json({"node": self.node_id, "ip": session.client_ip,
                            "protocol": session.protocol_name, "since": session.opened_at})

    def online(self, session, entry):
        """Record ``session`` online (``entry``: its node session entry);
        backends hear ``online`` when it is its account's first session.
        Fires with whether it was."""
        def came_online(first):
            if first:
                return self.events.publish("online", session.account, session.id,
                                           self.node_id).addCallback(lambda _: True)
            return False
        return self.store.session_online(self.node_id, session.id, session.account,
                                         self.session_info(session), entry).addCallback(
            came_online)

    def offline(self, node, session_id, account):
        """Take a session of ``node`` out of presence; backends hear
        ``offline`` when it was its account's last one."""
        def went_offline(last):
            if last:
                return self.events.publish("offline", account, session_id, node)
            return None
        return self.store.session_offline(node, session_id, account).addCallback(went_offline)

    def record_close(self, session, record):
        """Keep how ``session`` ended, for the dashboard (cluster-wide)."""
        now = self.clock.seconds()
        # Every field is bounded (the reason by its record already): the
        # dashboard renders the last thousand of these.
        entry = encode_json({
            "at": now, "session": session.id, "account": shown(session.account),
            "node": self.node_id, "ip": shown(session.client_ip),
            "protocol": session.protocol_name, "code": record.code,
            "meaning": record.meaning, "reason": shown(record.reason),
            "initiated_by": record.initiated_by, "clean": record.clean,
            "duration": record.duration})
        return self.store.record_close(entry, int(now // 60), record.code, self.closes_kept)

    async def online_accounts(self):
        return sorted(await self.store.online_accounts())

    async def account_sessions(self, account):
        sessions = await self.store.account_sessions(account)
        result = []
        for session_id, info in sorted(sessions.items()):
            try:
                details = json.loads(info)
            except ValueError:
                details = {}
            result.append(dict(details, session=session_id))
        return result
