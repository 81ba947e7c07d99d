"""Channels: who is subscribed to what, on this node and in Redis, and the
delivery of channel messages across nodes.

A node keeps in memory only what its own sessions need: which local
sessions listen to which channel. Subscribing adds the session to the
channel's members in Redis and, when it is the node's first subscriber of
the channel, subscribes the node to the channel's Redis channel: a message
reaches only nodes with subscribers, is decoded once, encoded once per
protocol form and written to every local subscriber.

Every account has a channel of its own (:func:`account_channel`): a backend
reaches all of a user's sessions, on every node, with one publish to it.
"""

from ..wire.jsontext import encode_document, encode_json
from ..wire.prepared import PreparedMessage

__all__ = ["Channels", "account_channel", "valid_channel", "MAX_CHANNEL", "MAX_PUBLISH_ID",
           "PUBLISH_ID_TTL"]

#: Longest channel name accepted.
MAX_CHANNEL = 200
#: Longest publish id (POST /publish "id") accepted, in characters.
MAX_PUBLISH_ID = 128
#: Seconds a backend's publish id is kept: a publish retried with the same
#: id within them is not published again. A backend retries a 503 within
#: seconds (Retry-After: 1); five minutes cover a Redis freeze of minutes.
PUBLISH_ID_TTL = 300


def account_channel(account):
    """Every account's own channel; its sessions are subscribed to it when
    they open."""
    return "account:%s" % account


def valid_channel(channel):
    """A channel name: 1 to MAX_CHANNEL printable characters, no spaces
    (the same rule for clients and for the API)."""
    return (isinstance(channel, str) and 0 < len(channel) <= MAX_CHANNEL
            and channel.isprintable() and " " not in channel)


class Channels:
    """``store``: the node's PresenceStore; ``writer``: its PresenceWriter.
    ``server`` (the node's client side) and ``subscriber`` (its pub/sub
    connection) are given when the hub starts."""

    def __init__(self, store, writer, node_id, stats, history):
        self.store = store
        #: The channels that keep a history (presence/hub/history.py).
        self.history = history
        self.writer = writer
        self.node_id = node_id
        self.stats = stats
        self.server = None
        self.subscriber = None
        #: Presence channel -> {session id: session} of this node.
        self.listeners = {}
        #: Presence channel -> the local sessions that asked for its join and
        #: leave events ({"type": "subscribe", ..., "presence": true}).
        self.presence_listeners = {}
        #: Presence channel -> the local sessions that asked for its
        #: account-level join and leave events ("presence": "accounts").
        self.account_listeners = {}
        #: Session id -> the channels it subscribed to (its own one apart).
        self.subscriptions = {}

    # ------------------------------------------------- local routing

    def listen(self, session, channel):
        """Deliver ``channel``'s messages to ``session`` (on this node)."""
        listeners = self.listeners.get(channel)
        if listeners is None:
            listeners = self.listeners[channel] = {}
            self.subscriber.subscribe(self.store.keys.channel(channel))
        listeners[session.id] = session

    def stop_listening(self, session, channel):
        self.history.forget(session.id, channel)
        for kind in (self.presence_listeners, self.account_listeners):
            watching = kind.get(channel)
            if watching is not None:
                watching.pop(session.id, None)
                if not watching:
                    del kind[channel]
        listeners = self.listeners.get(channel)
        if listeners is None:
            return
        listeners.pop(session.id, None)
        if not listeners:
            del self.listeners[channel]
            self.subscriber.unsubscribe(self.store.keys.channel(channel))

    def watch_presence(self, session, channel, accounts=False):
        """Send ``session`` the channel's join and leave events too: each
        session's, or (``accounts``) each account's."""
        if accounts:
            self.presence_listeners.get(channel, {}).pop(session.id, None)
            self.account_listeners.setdefault(channel, {})[session.id] = session
        else:
            self.account_listeners.get(channel, {}).pop(session.id, None)
            self.presence_listeners.setdefault(channel, {})[session.id] = session

    # ------------------------------------------------- membership in Redis

    def joined(self, session, channel):
        """``session`` subscribed to ``channel``: it is a member (and its node
        records the membership), and the channel and backends hear of it."""
        self.writer.join(session, channel)

    def left(self, session_id, account, channel, session=None, info=None, ended=None):
        """A session left ``channel`` (``session``: it is still open;
        ``ended``: it ended, how, events.ended_by)."""
        self.writer.leave(session_id, account, channel, session, info, ended)

    def rejoin(self, session, channel):
        """After this node was reaped (or Redis lost everything): make
        ``session`` a member of ``channel`` again, and say so if it was not."""
        self.writer.join(session, channel, again=True)

    def members(self, channel):
        return self.store.members(channel)

    # ---------------------------------------------------------- delivery

    def _outgoing(self, channel, document, exclude):
        """The Redis channel and payload carrying ``document`` to
        ``channel``'s subscribers but ``exclude`` (session ids)."""
        if exclude:
            document = dict(document, **{"except": list(exclude)})
        return self.store.keys.channel(channel), encode_json(document)

    def publish_to_channel(self, channel, document, exclude=()):
        """Publish ``document`` to ``channel``'s subscribers on every node;
        fires with the number of nodes that had subscribers."""
        return self.store.publish(*self._outgoing(channel, document, exclude))

    async def publish(self, channels, data, exclude=()):
        """A backend's message to channels, cluster-wide. Fires with the
        number of nodes that had subscribers (summed over the channels)."""
        if self.history.keeps_any(channels):
            nodes, _, _ = await self.publish_recorded(None, channels, data, exclude)
            return nodes
        reached = 0
        for channel in channels:
            reached += await self.publish_to_channel(
                channel, {"type": "message", "channel": channel, "data": data}, exclude)
        return reached

    def publish_once(self, publish_id, channels, data, exclude=()):
        """:meth:`publish` under a backend's id: to every channel in one step,
        and only if ``publish_id`` was not used in the last PUBLISH_ID_TTL
        seconds. Fires with ``(nodes, duplicate)``: a duplicate publishes
        nothing, and ``nodes`` is what the first publish reached."""
        if self.history.keeps_any(channels):
            return self.publish_recorded(publish_id, channels, data, exclude).addCallback(
                lambda answer: answer[:2])
        return self.store.publish_once(publish_id, PUBLISH_ID_TTL, [
            self._outgoing(channel, {"type": "message", "channel": channel, "data": data},
                           exclude) for channel in channels])

    def publish_recorded(self, publish_id, channels, data, exclude=()):
        """:meth:`publish` (``publish_id`` None) or :meth:`publish_once`,
        in one step whether or not the channels keep a history
        (scripts.PUBLISH_RECORDED): fires with ``(nodes, duplicate,
        offsets)``, ``offsets`` ``{channel: {"epoch", "offset"}}`` for those
        that do (None for a duplicate of a publish that recorded none)."""
        history = self.history
        data_json = encode_json(data)
        records = []
        kept = []
        for channel in channels:
            if history.rule(channel) is not None:
                records.append(history.record(channel, data_json, exclude))
                kept.append(channel)
            else:
                records.append(self._outgoing(
                    channel, {"type": "message", "channel": channel, "data": data}, exclude)
                    + ("", "", "", 0, 0, "", ""))

        def answered(answer):
            nodes, duplicate, offsets = answer
            if offsets is not None:
                offsets = {channel: {"epoch": epoch, "offset": offset}
                           for channel, (epoch, offset) in zip(kept, offsets)}
            return nodes, duplicate, offsets
        return self.store.publish_recorded(publish_id, PUBLISH_ID_TTL, records).addCallback(
            answered)

    def deliver(self, channel, document, exclude=None, epoch=None):
        """Write ``document`` to this node's subscribers of ``channel``
        (join and leave events: to those that asked for them), encoded once,
        but for ``exclude`` (session ids). Returns how many sessions got it.
        A backend's text with a lone surrogate (what JavaScript's
        JSON.stringify writes for a broken pair) goes out escaped."""
        if document.get("type") in ("join", "leave"):
            # A session's join names it; an account's does not
            # (events.account_membership_event).
            listeners = (self.presence_listeners if "session" in document
                         else self.account_listeners).get(channel)
        else:
            listeners = self.listeners.get(channel)
        if not listeners:
            return 0
        excluded = set(exclude) if exclude else ()
        joining = self.history.joining.get(channel) if self.history.joining else None
        if joining:
            # Sessions whose subscribe is being answered: theirs is kept, or
            # sent after their history (presence/hub/history.py).
            states = list(joining.items())
            for sid, state in states:
                if (sid in listeners and sid not in excluded
                        and not state.receive(document, epoch)):
                    self.history.forget(sid, channel)
            excluded = set(excluded).union(sid for sid, _ in states)
        prepared = PreparedMessage(encode_document(document))
        if excluded:
            sessions = [s for sid, s in listeners.items() if sid not in excluded]
        else:
            sessions = listeners.values()
        sent = self.server.fan_out(prepared, sessions)
        self.stats.delivered += sent
        return sent

    def channel_message(self, channel, message, exclude):
        """A message on a Presence channel's Redis channel (presence/hub/pubsub.py
        checked it)."""
        message.setdefault("channel", channel)
        # A history channel's publication names its epoch for the node
        # (presence/hub/history.py); clients learn it from subscribed.
        epoch = message.pop("epoch", None) if "offset" in message else None
        self.deliver(channel, message, exclude, epoch)

    def juggernaut_message(self, channels, data, exclude):
        """``PUBLISH juggernaut {"channels": [...], "data": ..., "except":
        ...}``, as Juggernaut's backends send it."""
        for channel in channels:
            self.deliver(channel, {"type": "message", "channel": channel, "data": data},
                         exclude)
