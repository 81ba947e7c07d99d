"""The messages clients send the hub, and its answers (docs/messages.md):
``subscribe``, ``unsubscribe``, ``publish``, ``members``, ``whisper`` and ``ping``, each a
JSON object with a ``type``. A message that cannot be done is answered with
an ``error`` naming the reason (and the request and channel it was about);
each reason is counted."""

import collections
import fnmatch

from twisted.internet import defer

from ..redis.engine import RedisUnavailable
from ..wire.jsontext import JSONError, decode_json, encode_json, escapes_lone_surrogate
from .channels import MAX_CHANNEL, account_channel, valid_channel
from .events import whisper_event

__all__ = ["ClientMessages", "MAX_EPOCH"]

#: Longest epoch a client may send back (Presence's are 12 characters).
MAX_EPOCH = 64
#: A session's whispers waiting for Redis at most (one is in flight at a
#: time); more are refused. Only a session past --max-whisper-rate's
#: protection (0: no limit) or a Redis standing still fills it.
MAX_WHISPERS_WAITING = 1000


class ClientMessages:
    """``channels``: the hub's Channels; ``store``: the node's PresenceStore;
    ``server``: the node's client side (its settings and stats), given when
    the hub starts."""

    def __init__(self, channels, store, work, stats, node_id, clock, stream_maxlen):
        self.channels = channels
        self.store = store
        self.work = work
        self.stats = stats
        self.node_id = node_id
        self.clock = clock
        self.stream_maxlen = stream_maxlen
        self.server = None
        #: The hub's Members (presence/hub/members.py), given by the hub.
        self.members = None
        #: The hub's settings (the whisper limits), given by the hub.
        self.settings = None
        #: Session id -> (whispers it may still send, when that was so).
        self._whispers = {}
        #: Session id -> its whispers waiting for the one in flight.
        self._whispering = {}

    def text_received(self, session, text):
        try:
            message = decode_json(text)
        except JSONError as error:
            if error.reason != "not JSON":
                # Too deep, NaN: JSON of a kind no browser or backend reads.
                self._error(session, "message is not JSON Presence takes: %s" % error.reason)
                return
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

    def _recovery_asked(self, session, message, channel):
        """A subscribe's ``recover`` (``(epoch, offset)``) and ``history``
        (publications), each None when not asked; False after answering an
        error."""
        recover = message.get("recover")
        if recover is not None:
            epoch = recover.get("epoch") if isinstance(recover, dict) else None
            offset = recover.get("offset") if isinstance(recover, dict) else None
            if not (isinstance(epoch, str) and 0 < len(epoch) <= MAX_EPOCH
                    and isinstance(offset, int) and not isinstance(offset, bool)
                    and offset >= 0):
                self._error(session, 'recover must be {"epoch": E, "offset": N}',
                            request="subscribe", channel=channel)
                return False
            recover = (epoch, offset)
        last = message.get("history")
        if last is not None and not (isinstance(last, int) and not isinstance(last, bool)
                                     and last >= 0):
            self._error(session, "history must be a number of publications",
                        request="subscribe", channel=channel)
            return False
        return recover, last

    def _on_subscribe(self, session, message):
        channel = self._checked_channel(session, message)
        if channel is None:
            return
        asked = self._recovery_asked(session, message, channel)
        if asked is False:
            return
        channels = self.channels
        subscribed = channels.subscriptions.setdefault(session.id, set())
        if channel not in subscribed and channel != account_channel(session.account):
            limit = self.server.settings.max_channels_per_session
            if len(subscribed) >= limit > 0:
                self.server.stats.limits_hit["max-channels-per-session"] += 1
                self._error(session, "too many channels: at most %d per session" % limit,
                            request="subscribe", channel=channel)
                return
            subscribed.add(channel)
            channels.listen(session, channel)
            channels.joined(session, channel)
        session.note("subscribed to %s" % channel)
        presence = message.get("presence")
        if presence is True or presence == "accounts":
            # Join and leave events are opt-in: on a channel of 10,000
            # members, sending every join to everyone would be 10^8 messages.
            # "accounts": one join per person, and a leave only once its
            # last session is gone for --leave-delay (scripts.DEPARTURES).
            channels.watch_presence(session, channel, accounts=presence == "accounts")
        recover, last = asked
        rule = channels.history.rule(channel)
        if rule is not None:
            # Answered once its history is read (presence/hub/history.py).
            channels.history.subscribe(session, channel, rule, recover, last)
            return
        answer = {"type": "subscribed", "channel": channel}
        if recover is not None:
            # Nothing to recover from: the channel keeps no history.
            self.stats.recoveries["attempted"] += 1
            self.stats.recoveries["failed"] += 1
            answer["recovered"] = False
        session.send_document(answer)

    def _on_unsubscribe(self, session, message):
        channel = message.get("channel")
        channels = self.channels
        subscribed = channels.subscriptions.get(session.id, set())
        if not isinstance(channel, str) or channel not in subscribed:
            self._error(session, "not subscribed", request="unsubscribe",
                        channel=channel if isinstance(channel, str) else None)
            return
        subscribed.discard(channel)
        channels.stop_listening(session, channel)
        channels.left(session.id, session.account, channel, session, session.info)
        session.note("unsubscribed from %s" % channel)
        session.send_document({"type": "unsubscribed", "channel": channel})

    def _on_publish(self, session, message):
        channel = self._checked_channel(session, message)
        if channel is None:
            return
        fields = [("channel", channel), ("data", encode_json(message.get("data"))),
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

        self.store.add_to_stream(fields, self.stream_maxlen).addCallbacks(published, failed)

    def _on_members(self, session, message):
        channel = message.get("channel")
        if not isinstance(channel, str) or channel not in self.channels.subscriptions.get(
                session.id, ()):
            self._error(session, "subscribe to a channel to see its members",
                        request="members", channel=channel if isinstance(channel, str) else None)
            return

        def answer(members):
            session.send_document({"type": "members", "channel": channel, "members": members})

        def failed(failure):
            failure.trap(RedisUnavailable)
            self._error(session, "members unavailable: Redis did not answer",
                        request="members", channel=channel)

        defer.ensureDeferred(self.members.of_channel(channel)).addCallbacks(answer, failed)

    def _on_whisper(self, session, message):
        """A client-to-client event on a channel the session is subscribed
        to and whose ticket allows it to whisper on: published to the
        channel's other subscribers on every node, not stored."""
        channel = message.get("channel")
        if not isinstance(channel, str) or channel not in self.channels.subscriptions.get(
                session.id, ()):
            self._error(session, "subscribe to a channel to whisper on it", request="whisper",
                        channel=channel if isinstance(channel, str) else None)
            return
        if not any(fnmatch.fnmatchcase(channel, pattern)
                   for pattern in session.whisper_channels):
            self._error(session, "whisper not allowed by the ticket", request="whisper",
                        channel=channel)
            return
        settings = self.settings
        data = encode_json(message.get("data"))
        if len(data.encode("utf-8")) > settings.max_whisper_size:
            self._error(session, "whisper too large: at most %d bytes of data as JSON"
                        % settings.max_whisper_size, request="whisper", channel=channel)
            return
        if not self._whisper_allowed(session, settings):
            self._error(session, "too many whispers: at most %g a second"
                        % settings.max_whisper_rate, request="whisper", channel=channel)
            return
        queue = self._whispering.get(session.id)
        if queue is not None and len(queue) >= MAX_WHISPERS_WAITING:
            self._error(session, "too many whispers waiting for Redis", request="whisper",
                        channel=channel)
            return
        whisper = (channel, whisper_event(channel, session.account, session.id,
                                          message.get("data")))
        if queue is not None:
            queue.append(whisper)  # after the one in flight: in order
            return
        self._whispering[session.id] = collections.deque()
        self._publish_whisper(session.id, whisper)

    def _publish_whisper(self, session_id, whisper):
        """One of a session's whispers at a time, so that they arrive in the
        order it sent them (the pool's connections would reorder them)."""
        channel, document = whisper

        def published(_):
            queue = self._whispering.get(session_id)
            if not queue:
                self._whispering.pop(session_id, None)
            else:
                self._publish_whisper(session_id, queue.popleft())
        # A whisper Redis did not take is lost: whispers are not stored.
        self.channels.publish_to_channel(channel, document, exclude=(session_id,)).addBoth(
            published)

    def _whisper_allowed(self, session, settings):
        """A token bucket of --whisper-burst, refilled at --max-whisper-rate."""
        rate = settings.max_whisper_rate
        if not rate:
            return True
        now = self.clock.seconds()
        allowance, at = self._whispers.get(session.id, (settings.whisper_burst, now))
        allowance = min(settings.whisper_burst, allowance + (now - at) * rate)
        if allowance < 1:
            self._whispers[session.id] = (allowance, now)
            return False
        self._whispers[session.id] = (allowance - 1, now)
        return True

    def forget(self, session_id):
        """A session ended: its whisper allowance goes (whispers it sent
        still go out)."""
        self._whispers.pop(session_id, None)

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
        "whisper": _on_whisper,
    }
