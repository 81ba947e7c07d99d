"""What backends hear of presence: ``online``, ``offline``, ``subscribe`` and
``unsubscribe`` on the events channel (``P events``), and the subscription
events again in Juggernaut's form (``juggernaut:subscribe``,
``juggernaut:unsubscribe``); docs/messages.md has their fields."""

from ..redis.keys import JUGGERNAUT_SUBSCRIBE, JUGGERNAUT_UNSUBSCRIBE
from ..wire.jsontext import encode_json

__all__ = ["BackendEvents"]


class BackendEvents:
    """``store``: the node's PresenceStore."""

    def __init__(self, store):
        self.store = store

    def publish(self, kind, account, session_id, node, channel=None):
        """Tell backends of ``kind``; fires once it is published."""
        event = {"type": kind, "account": account, "session": session_id, "node": node}
        if channel is not None:
            event["channel"] = channel
        published = self.store.publish(self.store.keys.events, encode_json(event))
        if kind not in ("subscribe", "unsubscribe"):
            return published
        juggernaut = encode_json({"channel": channel, "session_id": session_id,
                                  "meta": {"account": account}})
        return published.addCallback(lambda _: self.store.publish(
            JUGGERNAUT_SUBSCRIBE if kind == "subscribe" else JUGGERNAUT_UNSUBSCRIBE,
            juggernaut))
