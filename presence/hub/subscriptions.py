"""Server-side subscriptions (``POST /subscribe``, ``POST /unsubscribe``):
a backend subscribes every session of an account (or one session) to a
channel, on whatever node they are, without a ticket right: the backend
decides. Both ends are here: :meth:`ServerSubscriptions.request` asks every
node on the control channel and adds up their answers (the sessions
affected); :meth:`ServerSubscriptions.received` acts on this node's
sessions, each told ``{"type": "subscribed" | "unsubscribed", "channel",
"by": "server"}``.

A server-side subscription is remembered across resume: it is written into
the session's resume token's ticket (``subscriptions``, scripts.REMEMBER),
so the session a token opens, on any node, is subscribed again when it
opens (and so is the next token's). A history channel's history is not
replayed to a subscription made so: the client asks for it itself."""

import json
import secrets

from twisted.internet import task

from ..wire.jsontext import encode_json
from .channels import account_channel

__all__ = ["ServerSubscriptions", "SUBSCRIBE_TIMEOUT"]

#: Seconds a request waits for every node's answer.
SUBSCRIBE_TIMEOUT = 1.5


class ServerSubscriptions:
    """``store``: the node's PresenceStore; ``channels``: its Channels;
    ``queries``: its ClusterQueries (the live nodes); ``server`` (the
    node's client side) is given when the hub starts."""

    def __init__(self, store, channels, queries, work, node_id, clock):
        self.store = store
        self.channels = channels
        self.queries = queries
        self.work = work
        self.node_id = node_id
        self.clock = clock
        self.server = None

    # -------------------------------------------------- the asking end

    async def request(self, action, channel, session=None, account=None):
        """``action`` ("subscribe" or "unsubscribe") ``channel`` for
        ``session`` or every session of ``account``, on every node; fires
        with the number of sessions affected."""
        nodes = await self.queries.nodes()
        keys = self.store.keys
        reply = keys.reply(secrets.token_hex(8))
        message = {"type": "server-subscription", "action": action, "channel": channel,
                   "reply": reply}
        if session is not None:
            message["session"] = session
        else:
            message["account"] = account
        await self.store.publish(keys.control, encode_json(message))
        deadline = self.clock.seconds() + SUBSCRIBE_TIMEOUT
        while True:
            answers = await self.store.replies(reply)
            if len(answers) >= len(nodes) or self.clock.seconds() >= deadline:
                break
            await task.deferLater(self.clock, 0.02, lambda: None)
        return sum(json.loads(answer).get("sessions", 0) for answer in answers)

    # -------------------------------------------------- every node's end

    def received(self, message):
        """A request on the control channel: act on this node's matching
        sessions, and answer how many it affected."""
        reply = message.get("reply")
        channel = message.get("channel")
        if not isinstance(reply, str) or not reply.startswith(self.store.keys.reply("")) \
                or not isinstance(channel, str):
            return
        subscribe = message.get("action") == "subscribe"
        session_id, account = message.get("session"), message.get("account")
        affected = 0
        for session in list(self.server.sessions.values()):
            if not session.ready or not (session.id == session_id or (
                    account is not None and session.account == account)):
                continue
            if self.act(session, channel, subscribe):
                affected += 1
                if session.resume_token is not None:
                    self.work.track(self.store.remember_subscription(
                        session.resume_token, channel, subscribe),
                        "remembering a server-side subscription")
        self.work.track(self.store.reply(reply, encode_json(
            {"node": self.node_id, "sessions": affected})), "answering a subscription")

    def act(self, session, channel, subscribe):
        """Subscribe (or unsubscribe) ``session``; True if it changed."""
        channels = self.channels
        if channel == account_channel(session.account):
            return False
        subscribed = channels.subscriptions.setdefault(session.id, set())
        if subscribe:
            if channel in subscribed:
                return False
            subscribed.add(channel)
            channels.listen(session, channel)
            channels.joined(session, channel)
            session.note("subscribed to %s by the server" % channel)
            session.send_document({"type": "subscribed", "channel": channel, "by": "server"})
            return True
        if channel not in subscribed:
            return False
        subscribed.discard(channel)
        channels.stop_listening(session, channel)
        channels.left(session.id, session.account, channel, session, session.info)
        session.note("unsubscribed from %s by the server" % channel)
        session.send_document({"type": "unsubscribed", "channel": channel, "by": "server"})
        return True

    def resumed(self, session):
        """A session opened: subscribe it again to the server-side
        subscriptions its resume token remembered."""
        for channel in session.server_channels:
            self.act(session, channel, True)
