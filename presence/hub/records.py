"""Presence records: which sessions of which accounts are online, on which
node, and how sessions ended (written in order by presence/hub/writer.py,
read from presence/redis/store.py)."""

import json

from ..wire.jsontext import encode_json, shown

__all__ = ["PresenceRecords"]


class PresenceRecords:
    """``writer``: the node's PresenceWriter (every change goes through it,
    in order); ``store``: its PresenceStore (for reading)."""

    def __init__(self, store, writer, node_id, clock, closes_kept):
        self.store = store
        self.writer = writer
        self.node_id = node_id
        self.clock = clock
        self.closes_kept = closes_kept

    def session_info(self, session):
        """What ``GET /presence/ACCOUNT`` and ``P account:ACCOUNT`` say of a
        session."""
        return encode_json({"node": self.node_id, "ip": session.client_ip,
                            "protocol": session.protocol_name, "since": session.opened_at,
                            "info": session.info})

    def online(self, session):
        """``session`` (with an account) is online; backends hear ``online``
        when it is its account's first session."""
        self.writer.online(session, self.session_info(session),
                           encode_json({"account": session.account}))

    def offline(self, session_id, account, ended=None):
        """A session of this node is gone; backends hear ``offline`` when it
        was its account's last one (``ended``: how, events.ended_by)."""
        self.writer.offline(session_id, account, ended)

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
        self.writer.close_record(entry, int(now // 60), record.code, self.closes_kept)

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
