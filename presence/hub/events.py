"""What backends and channels hear of presence, as documents
(docs/messages.md has their fields): ``online``, ``offline``, ``subscribe``
and ``unsubscribe`` on the events channel (``P events``); the subscription
events again in Juggernaut's form (``juggernaut:subscribe``,
``juggernaut:unsubscribe``); ``join`` and ``leave`` on a channel itself, for
the sessions that asked for them. They are published with the change they
tell of, in one script (presence/hub/writer.py); a survivor sweeping a dead
node writes the same documents (presence/redis/scripts.py ``SWEEP``)."""

__all__ = ["presence_event", "membership_event", "account_membership_event",
           "juggernaut_event", "whisper_event", "ended_by", "REAPED"]

#: What ``ended`` says of a session a surviving node reaped (its node died:
#: no close record). presence/redis/scripts.py SWEEP writes the same.
REAPED = {"reaped": True}


def ended_by(record):
    """The ``ended`` of an ``offline`` or ``leave`` event: the close record
    of the session that ended (wire/close.py ``CloseRecord``)."""
    return {"code": record.code, "reason": record.reason, "initiator": record.initiated_by,
            "clean": record.clean}


def presence_event(kind, account, session_id, node, channel=None, info=None, ended=None):
    """An event on the events channel (``info``: the session's ticket's;
    ``ended``: how the session ended, on an ``offline``)."""
    event = {"type": kind, "account": account, "session": session_id, "node": node}
    if channel is not None:
        event["channel"] = channel
    if info is not None:
        event["info"] = info
    if ended is not None:
        event["ended"] = ended
    return event


def membership_event(kind, channel, account, session_id, info=None, ended=None):
    """A ``join`` or ``leave`` on the channel, not sent to the session itself
    (``ended``: on a leave, how the session ended, if it did)."""
    event = {"type": kind, "channel": channel, "account": account, "session": session_id,
             "info": info, "except": [session_id]}
    if ended is not None:
        event["ended"] = ended
    return event


def account_membership_event(kind, channel, account, info=None, ended=None, session_id=None):
    """An account-level ``join`` (its first session in the channel) or
    ``leave`` (its last one, once the leave delay passed: scripts.DEPARTURES),
    for the sessions that asked for ``"presence": "accounts"``. It names no
    session: that is how the channel's subscribers tell it from a
    session's. A join is not sent to the session that made it
    (``session_id``)."""
    event = {"type": kind, "channel": channel, "account": account, "info": info}
    if ended is not None:
        event["ended"] = ended
    if session_id is not None and kind == "join":
        event["except"] = [session_id]
    return event


def juggernaut_event(channel, session_id, account):
    """A subscription event in Juggernaut's form."""
    return {"channel": channel, "session_id": session_id, "meta": {"account": account}}


def whisper_event(channel, account, session_id, data):
    """A client's whisper, as the channel's other subscribers get it (not
    stored, not logged: it is no presence event)."""
    return {"type": "whisper", "channel": channel, "account": account, "session": session_id,
            "data": data}
