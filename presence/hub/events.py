"""What backends and channels hear of presence, as documents
(docs/messages.md has their fields): ``online``, ``offline``, ``subscribe``
and ``unsubscribe`` on the events channel (``P events``); the subscription
events again in Juggernaut's form (``juggernaut:subscribe``,
``juggernaut:unsubscribe``); ``join`` and ``leave`` on a channel itself, for
the sessions that asked for them. They are published with the change they
tell of, in one script (presence/hub/writer.py); a survivor sweeping a dead
node writes the same documents (presence/redis/scripts.py ``SWEEP``)."""

__all__ = ["presence_event", "membership_event", "juggernaut_event"]


def presence_event(kind, account, session_id, node, channel=None):
    """An event on the events channel."""
    event = {"type": kind, "account": account, "session": session_id, "node": node}
    if channel is not None:
        event["channel"] = channel
    return event


def membership_event(kind, channel, account, session_id):
    """A ``join`` or ``leave`` on the channel, not sent to the session itself."""
    return {"type": kind, "channel": channel, "account": account, "session": session_id,
            "except": [session_id]}


def juggernaut_event(channel, session_id, account):
    """A subscription event in Juggernaut's form."""
    return {"channel": channel, "session_id": session_id, "meta": {"account": account}}
