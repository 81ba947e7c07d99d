"""The dashboard's questions to the cluster, both ends.

Nodes report themselves with every announcement (presence/hub/liveness.py
``node_report``) and record every session's end in Redis; a node's own
sessions are asked for on demand: :class:`ClusterQueries` (on the node whose
dashboard is asked) publishes a query on the control channel, every node's
:class:`QueryAnswers` answers with the sessions that match (filtered and cut
on the node) into the asker's reply key, and the answers are merged.

With ``--workers``, a scrape of the dashboard's ``/metrics`` lands on any
worker, so the worker it lands on asks its siblings (the nodes whose
announcements name the same ``workers_of``) for their metrics the same way
(:meth:`ClusterQueries.worker_metrics`), within METRICS_TIMEOUT, and adds
them up (presence/web/metrics.py).
"""

import json
import secrets

from twisted.internet import task

from ..redis.engine import RedisUnavailable
from ..wire.jsontext import MAX_SHOWN, encode_json, shown

__all__ = ["ClusterQueries", "QueryAnswers", "QUERY_TIMEOUT"]

#: How long a query waits for every node's answer.
QUERY_TIMEOUT = 1.5
#: How long a /metrics scrape waits for the other workers' metrics: a
#: worker stopped, or too busy to answer, is left out of that scrape's sums
#: (and said to be) rather than making the scrape wait for it; well within
#: Prometheus's default scrape timeout of 10 s.
METRICS_TIMEOUT = 1.0
#: Seconds between two reads of the metrics answers: a sibling answers in
#: a millisecond or two, and a scrape should not wait a dashboard query's
#: 20 ms for it (a read is one LRANGE of a few KiB).
METRICS_POLL = 0.005
#: Rows one node sends at most for one query.
MAX_ROWS = 10000
#: Bytes of one close record read back: a node writes far less (every field
#: is bounded); a larger one in Redis was not written by a node, and is
#: left out rather than rendered.
MAX_RECORD = 16 * MAX_SHOWN


class ClusterQueries:
    """What the dashboard asks, from any node. ``store``: the node's
    PresenceStore; ``control``: its Control (to close a session anywhere)."""

    def __init__(self, store, control, clock):
        self.store = store
        self.control = control
        self.clock = clock

    async def nodes(self):
        """The reports of the live nodes, ordered by id."""
        reports = []
        for node in sorted(await self.store.nodes()):
            info = await self.store.node_info(node)
            if info is None:
                continue
            try:
                reports.append(json.loads(info))
            except ValueError:
                continue
        return reports

    async def redis_ok(self):
        try:
            await self.store.engine.ping()
        except RedisUnavailable:
            return False
        return True

    async def overview(self):
        """Totals over the live nodes."""
        nodes = await self.nodes()
        totals = {"sessions": 0, "messages_in_per_s": 0.0, "messages_out_per_s": 0.0,
                  "heartbeat_timeouts": 0, "slow_consumers": 0, "protocol_errors": 0,
                  "redis_reconnects": 0, "bad_redis_messages": 0, "auth_throttled_addresses": 0}
        by_protocol, by_extension, tickets, refused, auth, limits, bad = {}, {}, {}, {}, {}, {}, {}
        throttled, resume_tokens, shard_errors = {}, {}, {}
        recoveries = {"attempted": 0, "succeeded": 0, "failed": 0}
        # The history channels a node listens to are those of every node,
        # often: the largest node's sample, not their sum.
        history_memory = {"channels": 0, "bytes": 0}
        for report in nodes:
            sampled = report.get("history_memory") or {}
            if sampled.get("bytes", 0) > history_memory["bytes"]:
                history_memory = sampled
            for name in totals:
                totals[name] += report.get(name, 0) or 0
            for target, field in ((by_protocol, "by_protocol"), (by_extension, "by_extension"),
                                  (tickets, "tickets"), (refused, "handshakes_refused"),
                                  (auth, "auth_failures"), (limits, "limits_hit"),
                                  (bad, "bad_redis_messages_by_reason"),
                                  (throttled, "auth_throttled"),
                                  (resume_tokens, "resume_tokens"),
                                  (shard_errors, "redis_shard_errors"),
                                  (recoveries, "recoveries")):
                for key, value in (report.get(field) or {}).items():
                    target[key] = target.get(key, 0) + value
        return {"nodes": nodes, "totals": totals, "by_protocol": by_protocol,
                "by_extension": by_extension, "tickets": tickets, "handshakes_refused": refused,
                "auth_failures": auth, "limits_hit": limits, "bad_redis_messages": bad,
                "auth_throttled": throttled, "resume_tokens": resume_tokens,
                "recoveries": recoveries, "history_memory": history_memory,
                "redis_shard_errors": shard_errors,
                "redis": await self.redis_ok(),
                "now": self.clock.seconds()}

    async def _ask(self, query, enough, timeout, poll):
        """Publish ``query`` on the control channel, then read the answers
        the nodes write to its reply key every ``poll`` seconds until
        ``enough(answers)`` or ``timeout`` seconds: the answers (JSON
        texts) read last."""
        keys = self.store.keys
        reply = keys.reply(secrets.token_hex(8))
        await self.store.publish(keys.control, encode_json(dict(query, type="query",
                                                                 reply=reply)))
        deadline = self.clock.seconds() + timeout
        while True:
            answers = await self.store.replies(reply)
            if enough(answers) or self.clock.seconds() >= deadline:
                return answers
            await task.deferLater(self.clock, poll, lambda: None)

    async def _query(self, query):
        nodes = await self.nodes()
        answers = await self._ask(query, lambda answers: len(answers) >= len(nodes),
                                  QUERY_TIMEOUT, 0.02)
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
        for entry in await self.store.recent_closes(count):
            if len(entry) > MAX_RECORD:
                continue
            try:
                entry = json.loads(entry)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append({name: shown(value) for name, value in entry.items()})
        return entries

    async def close_counts(self, minutes=60):
        """Closes by code over the last ``minutes``."""
        now = int(self.clock.seconds() // 60)
        counts = {}
        for minute in range(now - minutes + 1, now + 1):
            for code, count in (await self.store.close_counts(minute)).items():
                counts[int(code)] = counts.get(int(code), 0) + int(count)
        return dict(sorted(counts.items()))

    def disconnect(self, session, code, reason):
        return self.control.disconnect(session=session, code=code, reason=reason)

    async def worker_metrics(self, group, node_id, timeout=METRICS_TIMEOUT):
        """The metrics of the other live workers of ``group`` (``HOST:PID``,
        HubSettings.workers_of) than ``node_id``, each its list of families
        (presence/web/metrics.py): ``(answers, missing)``, ``missing`` the
        ids of those that did not answer within ``timeout`` seconds."""
        others = {report.get("id") for report in await self.nodes()
                  if report.get("workers_of") == group and report.get("id") != node_id}
        if not others:
            return [], []
        answered = {}

        def enough(answers):
            for answer in answers:
                try:
                    answer = json.loads(answer)
                except ValueError:
                    continue
                if isinstance(answer, dict) and answer.get("node") in others \
                        and isinstance(answer.get("families"), list):
                    answered[answer["node"]] = answer["families"]
            return len(answered) == len(others)
        await self._ask({"what": "metrics", "group": group, "asker": node_id}, enough, timeout,
                        METRICS_POLL)
        return list(answered.values()), sorted(others - set(answered))


class QueryAnswers:
    """Every node's end: the rows of its own sessions. ``channels``: the
    hub's Channels (what each session subscribed to); ``server`` (the node's
    client side) is given when the hub starts."""

    def __init__(self, store, channels, node_id, workers_of=""):
        self.store = store
        self.channels = channels
        self.node_id = node_id
        #: HubSettings.workers_of: the workers whose /metrics this node sums.
        self.workers_of = workers_of
        #: With --workers, a function answering this node's metrics as
        #: families (presence/web/metrics.py), given by its dashboard.
        self.metrics = None
        self.server = None

    def session_row(self, session):
        """One session as the dashboard shows it."""
        return {
            "session": session.id, "account": shown(session.account), "node": self.node_id,
            "ip": shown(session.client_ip), "proxy": session.proxy,
            "protocol": session.protocol_name, "subprotocol": shown(session.subprotocol),
            "extensions": [shown(extension) for extension in session.extension_details],
            "origin": shown(session.origin), "user_agent": shown(session.user_agent),
            "since": session.opened_at, "last_heartbeat": session.last_heartbeat,
            "rtt": session.rtt, "messages_in": session.messages_in,
            "messages_out": session.messages_out, "bytes_in": session.bytes_in,
            "bytes_out": session.bytes_out, "ready": session.ready,
            "ip_mismatch": session.ip_mismatch,
            "channels": sorted(self.channels.subscriptions.get(session.id, ())),
            # The ticket's info, as its JSON (at most 1 KiB: POST /tickets).
            "info": shown(encode_json(session.info)) if session.info is not None else None}

    def matching_sessions(self, filters):
        """This node's sessions whose account, IP or channel contains the
        given text (case-insensitive), newest first."""
        account = (filters.get("account") or "").lower()
        ip = filters.get("ip") or ""
        channel = (filters.get("channel") or "").lower()
        subscriptions = self.channels.subscriptions
        found = []
        for session in self.server.sessions.values():
            if account and account not in (session.account or "").lower():
                continue
            if ip and ip not in (session.client_ip or ""):
                continue
            if channel and not any(channel in name.lower()
                                   for name in subscriptions.get(session.id, ())):
                continue
            found.append(session)
        found.sort(key=lambda session: session.opened_at or 0, reverse=True)
        return found

    async def answer(self, message):
        """Answer a query from the control channel into its reply key."""
        reply = message.get("reply")
        if not isinstance(reply, str) or not reply.startswith(self.store.keys.reply("")):
            return
        if message.get("what") == "sessions":
            filters = message.get("filter") if isinstance(message.get("filter"), dict) else {}
            limit = message.get("limit") if isinstance(message.get("limit"), int) else 50
            found = self.matching_sessions(filters)
            answer = {"node": self.node_id, "total": len(found),
                      "rows": [self.session_row(s) for s in found[:max(0, min(limit, MAX_ROWS))]]}
        elif message.get("what") == "session":
            session = self.server.sessions.get(message.get("session"))
            if session is None:
                answer = {"node": self.node_id, "found": False}
            else:
                answer = {"node": self.node_id, "found": True,
                          "row": self.session_row(session),
                          "rtt_history": list(session.rtt_history or ()),
                          "events": list(session.events or ())}
        elif message.get("what") == "metrics":
            # Only a sibling worker, not the asker, and only one serving a
            # dashboard (whose metrics they are) answers.
            if (not self.workers_of or message.get("group") != self.workers_of
                    or message.get("asker") == self.node_id or self.metrics is None):
                return
            answer = {"node": self.node_id, "families": self.metrics()}
        else:
            return
        await self.store.reply(reply, encode_json(answer))
