"""The cluster as the dashboard sees it, from any node, through Redis.

Nodes report themselves with every heartbeat (presence/hub.py
``node_report``) and record every session's end in Redis; a node's own
sessions are asked for on demand: the dashboard publishes a query on the
control channel, every node answers with the sessions that match (filtered
and cut on the node), and the answers are merged here.
"""

import json
import secrets

from twisted.internet import task

from .engine import RedisUnavailable

__all__ = ["ClusterView"]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: How long a query waits for every node's answer.
QUERY_TIMEOUT = 1.5


class ClusterView:
    def __init__(self, hub, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.hub = hub
        self.engine = hub.engine
        self.keys = hub.keys
        self.clock = clock

    async def nodes(self):
        """The reports of the live nodes, ordered by id."""
        reports = []
        for node in sorted(await self.engine.nodes(self.keys)):
            info = await self.engine.node_info(self.keys, node)
            if info is None:
                continue
            try:
                reports.append(json.loads(info))
            except ValueError:
                continue
        return reports

    async def redis_ok(self):
        try:
            await self.engine.ping()
        except RedisUnavailable:
            return False
        return True

    async def overview(self):
        """Totals over the live nodes."""
        nodes = await self.nodes()
        totals = {"sessions": 0, "messages_in_per_s": 0.0, "messages_out_per_s": 0.0,
                  "heartbeat_timeouts": 0, "slow_consumers": 0, "protocol_errors": 0,
                  "redis_reconnects": 0}
        by_protocol, by_extension, tickets, refused, auth, limits = {}, {}, {}, {}, {}, {}
        for report in nodes:
            for name in totals:
                totals[name] += report.get(name, 0) or 0
            for target, field in ((by_protocol, "by_protocol"), (by_extension, "by_extension"),
                                  (tickets, "tickets"), (refused, "handshakes_refused"),
                                  (auth, "auth_failures"), (limits, "limits_hit")):
                for key, value in (report.get(field) or {}).items():
                    target[key] = target.get(key, 0) + value
        return {"nodes": nodes, "totals": totals, "by_protocol": by_protocol,
                "by_extension": by_extension, "tickets": tickets, "handshakes_refused": refused,
                "auth_failures": auth, "limits_hit": limits, "redis": await self.redis_ok(),
                "now": self.clock.seconds()}

    async def _query(self, query):
        nodes = await self.nodes()
        reply = self.keys.reply(secrets.token_hex(8))
        query = dict(query, type="query", reply=reply)
        await self.engine.publish(self.keys.control, _encode(query))
        deadline = self.clock.seconds() + QUERY_TIMEOUT
        answers = []
        while True:
            answers = await self.engine.replies(reply)
            if len(answers) >= len(nodes) or self.clock.seconds() >= deadline:
                break
            await task.deferLater(self.clock, 0.02, lambda: None)
        return [json.loads(answer) for answer in answers]

    async def sessions(self, filters=None, offset=0, limit=50):
        """``(rows, total)``: sessions of every node matching ``filters``
        (account, ip, channel: substrings), newest first, one page."""
        filters = {name: value for name, value in (filters or {}).items() if value}
        answers = await self._query({"what": "sessions", "filter": filters,
                                     "limit": offset + limit})
        rows = [row for answer in answers for row in answer.get("rows", ())]
        rows.sort(key=lambda row: row.get("since") or 0, reverse=True)
        total = sum(answer.get("total", 0) for answer in answers)
        return rows[offset:offset + limit], total

    async def session(self, session_id):
        """The dashboard's details of one session, or None."""
        for answer in await self._query({"what": "session", "session": session_id}):
            if answer.get("found"):
                return answer
        return None

    async def closes(self, count=100):
        entries = []
        for entry in await self.engine.recent_closes(self.keys, count):
            try:
                entries.append(json.loads(entry))
            except ValueError:
                continue
        return entries

    async def close_counts(self, minutes=60):
        """Closes by code over the last ``minutes``."""
        now = int(self.clock.seconds() // 60)
        counts = {}
        for minute in range(now - minutes + 1, now + 1):
            for code, count in (await self.engine.close_counts(self.keys, minute)).items():
                counts[int(code)] = counts.get(int(code), 0) + int(count)
        return dict(sorted(counts.items()))

    def disconnect(self, session, code, reason):
        return self.hub.disconnect(session=session, code=code, reason=reason)
