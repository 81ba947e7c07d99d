"""The hub: channels, presence and delivery across nodes, over Redis.

Every node runs one :class:`Hub` as its application. It keeps, in memory,
only what its own sessions need (which local sessions listen to which
channel); everything another node or a backend must see lives in Redis
(presence/engine.py names every key and channel; docs/redis.md documents
them for backend authors):

- A session that opens with an account is online in Redis until its last
  session ends; ``online``/``offline`` events go out on the events channel.
- Subscribing adds the session to the channel's members and, when it is the
  node's first subscriber of the channel, subscribes the node to the
  channel's Redis channel: a message reaches only nodes with subscribers,
  is decoded once, encoded into a frame once and written to every local
  subscriber.
- Backends publish through the HTTP API or with Juggernaut's
  ``PUBLISH juggernaut {"channels": [...], "data": ..., "except": ...}``.
  Clients publish into a Redis Stream (``XADD``, length-bounded) that
  backends read at their own pace, so nothing is lost while they are down.
- Each node announces itself every ``node_heartbeat`` seconds with a key
  that expires after three; a surviving node reaps a dead node's sessions
  (atomically, once) and publishes their offline events.
- After a Redis outage the subscriptions are restored, the node's presence
  re-asserted, and the gap logged and counted.
"""

import fnmatch
import json
import os
import socket

from twisted.internet import defer, task
from twisted.logger import Logger

from .application import Application
from .engine import PresenceKeys, RedisSubscriber, RedisUnavailable
from .jsontext import escapes_lone_surrogate
from .websocket.close import GOING_AWAY, NORMAL_CLOSURE, is_valid_received_code
from .websocket.connection import PreparedMessage

__all__ = ["Hub", "HubStats", "account_channel", "JUGGERNAUT"]

log = Logger()

#: Juggernaut's publish channel and its subscription events.
JUGGERNAUT = "juggernaut"
JUGGERNAUT_SUBSCRIBE = "juggernaut:subscribe"
JUGGERNAUT_UNSUBSCRIBE = "juggernaut:unsubscribe"

#: Longest channel name accepted.
MAX_CHANNEL = 200

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def account_channel(account):
    """Every account's own channel: a backend reaches all of a user's
    sessions, on every node, with one publish to it. Its sessions are
    subscribed to it when they open."""
    return "account:%s" % account


def valid_channel(channel):
    """A channel name: 1 to MAX_CHANNEL printable characters, no spaces
    (the same rule for clients and for the API)."""
    return (isinstance(channel, str) and 0 < len(channel) <= MAX_CHANNEL
            and channel.isprintable() and " " not in channel)


class HubStats:
    def __init__(self):
        self.published = 0  # client publishes added to the stream
        self.delivered = 0  # messages written to local sessions
        self.redis_messages = 0
        self.redis_errors = 0
        self.redis_reconnects = 0
        self.redis_outage_seconds = 0.0
        self.reaped_nodes = 0
        self.reasserted = 0  # times this node found it had been reaped, and re-asserted
        self.errors = {}  # reasons sent in error messages, counted


class Hub(Application):
    def __init__(self, engine, prefix="presence:", node_heartbeat=5.0, stream_maxlen=100000,
                 clock=None, node_id=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.engine = engine
        self.keys = PresenceKeys(prefix)
        self.clock = clock
        self.node_heartbeat = node_heartbeat
        self.stream_maxlen = stream_maxlen
        self.node_id = node_id or "%s-%d-%s" % (socket.gethostname(), os.getpid(),
                                                os.urandom(2).hex())
        self.node = None
        self.stats = HubStats()
        self.started_at = clock.seconds()
        #: Presence channel -> {session id: session} of this node.
        self.channels = {}
        #: Presence channel -> the local sessions that asked for its join and
        #: leave events ({"type": "subscribe", ..., "presence": true}).
        self.presence_listeners = {}
        #: Session id -> the channels it subscribed to (its own one apart).
        self.subscriptions = {}
        self.subscriber = None
        self._heartbeat = None
        self._pending = set()
        self._lost_at = None
        self._redis_channel_prefix = self.keys.channel("")
        self._previous_report = None
        #: Where this node listens for clients (shown on the dashboard).
        self.addresses = []
        #: How many session ends the cluster keeps in Redis.
        self.closes_kept = 1000

    # ----------------------------------------------------------- life cycle

    def start(self, node):
        """Begin serving ``node``'s sessions: listen to Redis, announce the
        node, and start its heartbeat."""
        self.node = node
        node.application = self
        self.subscriber = RedisSubscriber(self.engine.url, self._redis_message,
                                          self._redis_connected, self._redis_lost,
                                          reactor=self.clock)
        self.subscriber.subscribe(self.keys.control)
        self.subscriber.subscribe(JUGGERNAUT)
        self._heartbeat = task.LoopingCall(self._node_heartbeat)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(self.node_heartbeat, now=True)

    async def stop(self):
        """After the node's sessions were closed: wait for their Redis
        updates, then take the node out of Redis."""
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self._pending:
            await defer.DeferredList(list(self._pending), consumeErrors=True)
        try:
            await self.engine.forget_node(self.keys, self.node_id)
        except RedisUnavailable:
            log.warn("presence: Redis unavailable at shutdown; node {node} will expire",
                     node=self.node_id)
        if self.subscriber is not None:
            await self.subscriber.close()

    def _track(self, deferred, what):
        """Keep a Redis update until it completes; log (and count) failures."""
        self._pending.add(deferred)

        def done(result):
            self._pending.discard(deferred)
            return result

        def failed(failure):
            self.stats.redis_errors += 1
            if failure.check(RedisUnavailable):
                log.warn("presence: Redis unavailable: {what} not recorded", what=what)
            else:
                log.failure("presence: {what}", failure, what=what)
        return deferred.addBoth(done).addErrback(failed)

    # --------------------------------------------------------- node liveness

    def _node_info(self):
        return _encode(self.node_report())

    def node_report(self):
        """What the node tells the cluster about itself with each heartbeat
        (the dashboard's overview adds these up)."""
        node = self.node
        now = self.clock.seconds()
        report = {"id": self.node_id, "started_at": self.started_at, "heartbeat_at": now,
                  "addresses": list(self.addresses), "sessions": 0}
        if node is None:
            return report
        stats = node.stats
        by_protocol = {}
        by_extension = {}
        totals = {"messages_in": stats.messages_in, "messages_out": stats.messages_out,
                  "bytes_in": stats.bytes_in, "bytes_out": stats.bytes_out}
        for session in node.sessions.values():
            by_protocol[session.protocol_name] = by_protocol.get(session.protocol_name, 0) + 1
            for name in getattr(session, "extensions", ()) or ("none",):
                by_extension[name] = by_extension.get(name, 0) + 1
            totals["messages_in"] += session.messages_in
            totals["messages_out"] += session.messages_out
            totals["bytes_in"] += session.bytes_in
            totals["bytes_out"] += session.bytes_out
        rates = {}
        previous = self._previous_report
        if previous is not None and now > previous["heartbeat_at"]:
            elapsed = now - previous["heartbeat_at"]
            for name in ("messages_in", "messages_out"):
                rates[name + "_per_s"] = max(0.0, (totals[name] - previous[name]) / elapsed)
        tickets = node.tickets
        report.update(
            sessions=len(node.sessions), by_protocol=by_protocol, by_extension=by_extension,
            handshakes_refused=dict(stats.handshakes_refused),
            auth_failures=dict(stats.auth_failures),
            tickets={"issued": getattr(tickets, "issued", 0),
                     "redeemed": getattr(tickets, "redeemed", 0),
                     "refused": getattr(tickets, "refused", 0)},
            heartbeat_timeouts=stats.heartbeat_timeouts, slow_consumers=stats.slow_consumers,
            limits_hit=dict(stats.limits_hit), connections=node.connections,
            protocol_errors=sum(stats.protocol_errors.values()),
            redis_reconnects=self.stats.redis_reconnects, redis_errors=self.stats.redis_errors,
            **totals, **rates)
        self._previous_report = report
        return report

    @defer.inlineCallbacks
    def _node_heartbeat(self):
        keys = self.keys
        try:
            reaped = yield self.engine.announce_node(keys, self.node_id, self._node_info(),
                                                     int(self.node_heartbeat * 3) or 1)
            if reaped:
                self.stats.reasserted += 1
                log.warn("presence: this node's heartbeat lapsed and another node took its "
                         "sessions out of presence; re-asserting them")
                yield self._reassert()
            nodes = yield self.engine.nodes(keys)
            for other in nodes:
                if other == self.node_id:
                    continue
                info = yield self.engine.node_info(keys, other)
                if info is None:
                    yield self._reap(other)
        except RedisUnavailable:
            self.stats.redis_errors += 1
        except Exception:
            log.failure("presence: node heartbeat")

    @defer.inlineCallbacks
    def _reap(self, dead):
        sessions = yield self.engine.reap_node(self.keys, dead)
        if sessions is None:
            return  # alive after all, or another node claimed it
        self.stats.reaped_nodes += 1
        log.info("presence: node {node} is gone; {count} of its sessions leave presence",
                 node=dead, count=len(sessions))
        for session_id, entry in sessions.items():
            try:
                entry = json.loads(entry)
            except ValueError:
                continue
            account = entry.get("account")
            for channel in entry.get("channels", ()):
                yield self._left(channel, session_id, account, dead)
            if account is not None:
                went_offline = yield self.engine.session_offline(self.keys, dead, session_id,
                                                                 account)
                yield self._went_offline(went_offline, account, session_id, dead)
        # Should the node be alive after all, its next heartbeat re-asserts
        # its sessions; an hour covers any pause worth surviving.
        yield self.engine.mark_reaped(self.keys, dead, 3600)

    # -------------------------------------------------------------- sessions

    def session_opened(self, session):
        account = session.account
        if account is None:
            return
        self._subscribe_locally(session, account_channel(account))
        info = _encode({"node": self.node_id, "ip": session.client_ip,
                        "protocol": session.protocol_name, "since": session.opened_at})
        entry = self._session_entry(session)
        self._track(self.engine.session_online(self.keys, self.node_id, session.id, account,
                                               info, entry)
                    .addCallback(self._came_online, session), "presence of " + session.id)

    def _came_online(self, came_online, session):
        if came_online:
            return self._event("online", session.account, session.id, self.node_id)

    def session_closed(self, session, record):
        self._track(self._record_close(session, record), "close record of " + session.id)
        channels = self.subscriptions.pop(session.id, ())
        for channel in channels:
            self._unsubscribe_locally(session, channel)
            self._track(self._left(channel, session.id, session.account, self.node_id),
                        "leaving " + channel)
        account = session.account
        if account is None:
            return
        self._unsubscribe_locally(session, account_channel(account))
        self._track(self.engine.session_offline(self.keys, self.node_id, session.id, account)
                    .addCallback(self._went_offline, account, session.id, self.node_id),
                    "presence of " + session.id)

    def _went_offline(self, went_offline, account, session_id, node):
        if went_offline:
            return self._event("offline", account, session_id, node)

    def _record_close(self, session, record):
        now = self.clock.seconds()
        entry = _encode({
            "at": now, "session": session.id, "account": session.account, "node": self.node_id,
            "ip": session.client_ip, "protocol": session.protocol_name, "code": record.code,
            "meaning": record.meaning, "reason": record.reason,
            "initiated_by": record.initiated_by, "clean": record.clean,
            "duration": record.duration})
        return self.engine.record_close(self.keys, entry, int(now // 60), record.code,
                                        self.closes_kept)

    def _session_entry(self, session):
        return _encode({"account": session.account,
                        "channels": sorted(self.subscriptions.get(session.id, ()))})

    # -------------------------------------------------------------- messages

    def text_received(self, session, text):
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self._error(session, "message is not a JSON object")
            return
        if escapes_lone_surrogate(text, message):
            self._error(session, "message is not Unicode text: it escapes a lone surrogate")
            return
        kind = message.get("type")
        # The type may be any JSON value: a list or an object is no key.
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._error(session, "unknown message type",
                        request=kind if isinstance(kind, str) else None)
            return
        handler(self, session, message)

    def binary_received(self, session, data):
        self._error(session, "binary messages are not understood: send JSON text")

    def _error(self, session, reason, **details):
        self.stats.errors[reason] = self.stats.errors.get(reason, 0) + 1
        session.note("error: %s" % reason)
        document = {"type": "error", "reason": reason}
        document.update((name, value) for name, value in details.items() if value is not None)
        session.send_document(document)

    def _allowed(self, session, channel):
        if session.account is not None and channel == account_channel(session.account):
            return True
        return any(fnmatch.fnmatchcase(channel, pattern) for pattern in session.allowed_channels)

    def _checked_channel(self, session, message):
        channel = message.get("channel")
        if not valid_channel(channel):
            self._error(session, "channel must be a name of 1-%d printable characters"
                        % MAX_CHANNEL, request=message.get("type"))
            return None
        if not self._allowed(session, channel):
            self._error(session, "channel not allowed by the ticket",
                        request=message.get("type"), channel=channel)
            return None
        return channel

    def _on_subscribe(self, session, message):
        channel = self._checked_channel(session, message)
        if channel is None:
            return
        channels = self.subscriptions.setdefault(session.id, set())
        if channel not in channels and channel != account_channel(session.account):
            limit = self.node.settings.max_channels_per_session
            if len(channels) >= limit > 0:
                self.node.stats.limits_hit["max-channels-per-session"] += 1
                self._error(session, "too many channels: at most %d per session" % limit,
                            request="subscribe", channel=channel)
                return
            channels.add(channel)
            self._subscribe_locally(session, channel)
            self._track(self._joined(session, channel), "joining " + channel)
        session.note("subscribed to %s" % channel)
        if message.get("presence") is True:
            # Join and leave events are opt-in: on a channel of 10,000
            # members, sending every join to everyone would be 10^8 messages.
            self.presence_listeners.setdefault(channel, {})[session.id] = session
        session.send_document({"type": "subscribed", "channel": channel})

    def _on_unsubscribe(self, session, message):
        channel = message.get("channel")
        channels = self.subscriptions.get(session.id, set())
        if not isinstance(channel, str) or channel not in channels:
            self._error(session, "not subscribed", request="unsubscribe",
                        channel=channel if isinstance(channel, str) else None)
            return
        channels.discard(channel)
        self._unsubscribe_locally(session, channel)
        self._track(self._left(channel, session.id, session.account, self.node_id,
                               entry=self._session_entry(session)), "leaving " + channel)
        session.note("unsubscribed from %s" % channel)
        session.send_document({"type": "unsubscribed", "channel": channel})

    def _on_publish(self, session, message):
        channel = self._checked_channel(session, message)
        if channel is None:
            return
        fields = [("channel", channel), ("data", _encode(message.get("data"))),
                  ("account", session.account or ""), ("session", session.id),
                  ("node", self.node_id), ("time", repr(self.clock.seconds()))]

        def published(entry_id):
            self.stats.published += 1
            session.send_document({"type": "published", "channel": channel, "id": entry_id})

        def failed(failure):
            failure.trap(RedisUnavailable)
            self.stats.redis_errors += 1
            self._error(session, "not published: the message store is unavailable",
                        request="publish", channel=channel)

        self.engine.add_to_stream(self.keys.stream, fields, self.stream_maxlen).addCallbacks(
            published, failed)

    def _on_members(self, session, message):
        channel = message.get("channel")
        if not isinstance(channel, str) or channel not in self.subscriptions.get(session.id, ()):
            self._error(session, "subscribe to a channel to see its members",
                        request="members", channel=channel if isinstance(channel, str) else None)
            return

        def answer(members):
            session.send_document({"type": "members", "channel": channel, "members": [
                {"session": member, "account": account or None}
                for member, account in sorted(members.items())]})

        def failed(failure):
            failure.trap(RedisUnavailable)
            self._error(session, "members unavailable: Redis did not answer",
                        request="members", channel=channel)

        self.engine.members(self.keys, channel).addCallbacks(answer, failed)

    def _on_ping(self, session, message):
        # An application-level round trip (WebSocket clients cannot send
        # pings from a browser): the browser client checks, when its tab
        # wakes, that the connection still carries messages both ways.
        session.send_document({"type": "pong", "id": message.get("id")})

    _handlers = {
        "ping": _on_ping,
        "subscribe": _on_subscribe,
        "unsubscribe": _on_unsubscribe,
        "publish": _on_publish,
        "members": _on_members,
    }

    # ------------------------------------------------- local channel routing

    def _subscribe_locally(self, session, channel):
        listeners = self.channels.get(channel)
        if listeners is None:
            listeners = self.channels[channel] = {}
            self.subscriber.subscribe(self.keys.channel(channel))
        listeners[session.id] = session

    def _unsubscribe_locally(self, session, channel):
        watching = self.presence_listeners.get(channel)
        if watching is not None:
            watching.pop(session.id, None)
            if not watching:
                del self.presence_listeners[channel]
        listeners = self.channels.get(channel)
        if listeners is None:
            return
        listeners.pop(session.id, None)
        if not listeners:
            del self.channels[channel]
            self.subscriber.unsubscribe(self.keys.channel(channel))

    @defer.inlineCallbacks
    def _joined(self, session, channel):
        keys = self.keys
        yield self.engine.join(keys, channel, session.id, session.account or "")
        yield self.engine.set_session_entry(keys, self.node_id, session.id,
                                            self._session_entry(session))
        yield self._publish_channel(channel, {"type": "join", "channel": channel,
                                              "account": session.account,
                                              "session": session.id}, [session.id])
        yield self._event("subscribe", session.account, session.id, self.node_id, channel)

    @defer.inlineCallbacks
    def _left(self, channel, session_id, account, node, entry=None):
        keys = self.keys
        yield self.engine.leave(keys, channel, session_id)
        if entry is not None:
            yield self.engine.set_session_entry(keys, node, session_id, entry)
        yield self._publish_channel(channel, {"type": "leave", "channel": channel,
                                              "account": account, "session": session_id},
                                    [session_id])
        yield self._event("unsubscribe", account, session_id, node, channel)

    def _publish_channel(self, channel, document, except_=()):
        if except_:
            document = dict(document, **{"except": list(except_)})
        return self.engine.publish(self.keys.channel(channel), _encode(document))

    @defer.inlineCallbacks
    def _event(self, kind, account, session_id, node, channel=None):
        """Tell backends: on the events channel, and in Juggernaut's form."""
        event = {"type": kind, "account": account, "session": session_id, "node": node}
        if channel is not None:
            event["channel"] = channel
        yield self.engine.publish(self.keys.events, _encode(event))
        if kind in ("subscribe", "unsubscribe"):
            yield self.engine.publish(
                JUGGERNAUT_SUBSCRIBE if kind == "subscribe" else JUGGERNAUT_UNSUBSCRIBE,
                _encode({"channel": channel, "session_id": session_id,
                         "meta": {"account": account}}))

    # ---------------------------------------------------- messages from Redis

    def _redis_message(self, redis_channel, payload):
        self.stats.redis_messages += 1
        try:
            message = json.loads(payload)
        except ValueError:
            log.warn("presence: ignoring a message that is not JSON on {channel}",
                     channel=redis_channel)
            return
        if not isinstance(message, dict):
            return
        if redis_channel.startswith(self._redis_channel_prefix):
            channel = redis_channel[len(self._redis_channel_prefix):]
            exclude = message.pop("except", None)
            message.setdefault("channel", channel)
            self.deliver(channel, message, exclude)
        elif redis_channel == JUGGERNAUT:
            channels = message.get("channels")
            if isinstance(channels, str):
                channels = [channels]
            if not isinstance(channels, list):
                return
            for channel in channels:
                if isinstance(channel, str):
                    self.deliver(channel, {"type": "message", "channel": channel,
                                           "data": message.get("data")}, message.get("except"))
        elif redis_channel == self.keys.control:
            self._control(message)

    def deliver(self, channel, document, exclude=None):
        """Write ``document`` to this node's subscribers of ``channel``
        (join and leave events: to those that asked for them), encoded once.
        Returns how many sessions got it."""
        if document.get("type") in ("join", "leave"):
            listeners = self.presence_listeners.get(channel)
        else:
            listeners = self.channels.get(channel)
        if not listeners:
            return 0
        prepared = PreparedMessage.text(_encode(document))
        if exclude:
            if isinstance(exclude, str):
                exclude = (exclude,)
            excluded = set(exclude)
            sessions = [s for sid, s in listeners.items() if sid not in excluded]
        else:
            sessions = listeners.values()
        sent = self.node.fan_out(prepared, sessions)
        self.stats.delivered += sent
        return sent

    def _control(self, message):
        if message.get("type") == "query":
            self._track(self._answer_query(message), "answering a query")
            return
        if message.get("type") != "disconnect":
            return
        code = message.get("code", NORMAL_CLOSURE)
        if not (isinstance(code, int) and is_valid_received_code(code)):
            code = NORMAL_CLOSURE
        reason = message.get("reason") if isinstance(message.get("reason"), str) else ""
        session_id = message.get("session")
        account = message.get("account")
        for session in list(self.node.sessions.values()):
            if session.id == session_id or (account is not None and session.account == account):
                session.close(code, reason)

    def _redis_connected(self):
        if self._lost_at is None:
            return  # the first connection
        gap = self.clock.seconds() - self._lost_at
        self._lost_at = None
        self.stats.redis_reconnects += 1
        self.stats.redis_outage_seconds += gap
        log.warn("presence: Redis is back after {gap:.1f} s: subscriptions restored, "
                 "re-asserting presence; messages published meanwhile were not delivered",
                 gap=gap)
        self._track(self._reassert(), "re-asserting presence")

    def _redis_lost(self):
        if self._lost_at is None:
            self._lost_at = self.clock.seconds()
            log.warn("presence: lost the Redis subscription connection; reconnecting")

    @defer.inlineCallbacks
    def _reassert(self):
        keys = self.keys
        reaped = yield self.engine.announce_node(keys, self.node_id, self._node_info(),
                                                 int(self.node_heartbeat * 3) or 1)
        if reaped:
            self.stats.reasserted += 1
        for session in list(self.node.sessions.values()):
            if session.account is None or not session.ready:
                continue
            info = _encode({"node": self.node_id, "ip": session.client_ip,
                            "protocol": session.protocol_name, "since": session.opened_at})
            came_online = yield self.engine.session_online(
                keys, self.node_id, session.id, session.account, info,
                self._session_entry(session))
            # Whoever saw this session go (a reaper's offline and leave
            # events) sees it come back; after a restart of a Redis that
            # kept nothing, the events announce what the cluster lost.
            yield self._came_online(came_online, session)
            for channel in self.subscriptions.get(session.id, ()):
                added = yield self.engine.join(keys, channel, session.id, session.account)
                if int(added) == 1:
                    yield self._publish_channel(channel, {
                        "type": "join", "channel": channel, "account": session.account,
                        "session": session.id}, [session.id])
                    yield self._event("subscribe", session.account, session.id, self.node_id,
                                      channel)

    # ------------------------------------------------ for the dashboard

    def session_row(self, session):
        """One session as the dashboard shows it."""
        return {
            "session": session.id, "account": session.account, "node": self.node_id,
            "ip": session.client_ip, "proxy": session.proxy, "protocol": session.protocol_name,
            "subprotocol": getattr(session, "subprotocol", None),
            "extensions": list(getattr(session, "extension_details", ()) or ()),
            "origin": session.origin, "user_agent": session.user_agent,
            "since": session.opened_at, "last_heartbeat": session.last_heartbeat,
            "rtt": session.rtt, "messages_in": session.messages_in,
            "messages_out": session.messages_out, "bytes_in": session.bytes_in,
            "bytes_out": session.bytes_out, "ready": session.ready,
            "ip_mismatch": session.ip_mismatch,
            "channels": sorted(self.subscriptions.get(session.id, ()))}

    def matching_sessions(self, filters):
        """This node's sessions whose account, IP or channel contains the
        given text (case-insensitive), newest first."""
        account = (filters.get("account") or "").lower()
        ip = filters.get("ip") or ""
        channel = (filters.get("channel") or "").lower()
        found = []
        for session in self.node.sessions.values():
            if account and account not in (session.account or "").lower():
                continue
            if ip and ip not in (session.client_ip or ""):
                continue
            if channel and not any(channel in name.lower()
                                   for name in self.subscriptions.get(session.id, ())):
                continue
            found.append(session)
        found.sort(key=lambda session: session.opened_at or 0, reverse=True)
        return found

    @defer.inlineCallbacks
    def _answer_query(self, message):
        reply = message.get("reply")
        if not isinstance(reply, str) or not reply.startswith(self.keys.reply("")):
            return
        if message.get("what") == "sessions":
            filters = message.get("filter") if isinstance(message.get("filter"), dict) else {}
            limit = message.get("limit") if isinstance(message.get("limit"), int) else 50
            found = self.matching_sessions(filters)
            answer = {"node": self.node_id, "total": len(found),
                      "rows": [self.session_row(s) for s in found[:max(0, min(limit, 10000))]]}
        elif message.get("what") == "session":
            session = self.node.sessions.get(message.get("session"))
            if session is None:
                answer = {"node": self.node_id, "found": False}
            else:
                answer = {"node": self.node_id, "found": True,
                          "row": self.session_row(session),
                          "rtt_history": list(session.rtt_history or ()),
                          "events": list(session.events or ())}
        else:
            return
        yield self.engine.reply(reply, _encode(answer))

    # ------------------------------------------------------- for the HTTP API

    @defer.inlineCallbacks
    def publish(self, channels, data, exclude=()):
        """Publish ``data`` to channels, cluster-wide. Fires with the number
        of nodes that had subscribers (summed over the channels)."""
        reached = 0
        for channel in channels:
            document = {"type": "message", "channel": channel, "data": data}
            if exclude:
                document["except"] = list(exclude)
            reached += yield self.engine.publish(self.keys.channel(channel), _encode(document))
        return reached

    @defer.inlineCallbacks
    def online_accounts(self):
        accounts = yield self.engine.online_accounts(self.keys)
        return sorted(accounts)

    @defer.inlineCallbacks
    def account_sessions(self, account):
        sessions = yield self.engine.account_sessions(self.keys, account)
        result = []
        for session_id, info in sorted(sessions.items()):
            try:
                details = json.loads(info)
            except ValueError:
                details = {}
            result.append(dict(details, session=session_id))
        return result

    def disconnect(self, session=None, account=None, code=GOING_AWAY, reason=""):
        """Close a session, or every session of an account, on every node."""
        message = {"type": "disconnect", "code": code, "reason": reason}
        if session is not None:
            message["session"] = session
        if account is not None:
            message["account"] = account
        return self.engine.publish(self.keys.control, _encode(message))
