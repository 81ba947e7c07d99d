"""What the node's pub/sub connection delivers, decoded and checked before
it is routed: a Presence channel's messages (``P channel:CHANNEL``),
Juggernaut's publishes (``juggernaut``) and the control channel.

Anything may be published on these channels, by any backend, so every
message is validated on its own, and one that cannot be delivered is
counted (``bad_redis_messages``, by reason, on the dashboard and in
/metrics), logged at most once a minute, and dropped: it never reaches the
pub/sub connection (txredisapi would drop the connection, and the messages
after it, for an exception raised in its callback).
"""

from twisted.logger import Logger

from ..redis.keys import JUGGERNAUT
from ..wire.jsontext import JSONError, decode_json
from ..wire.throttle import LogThrottle

__all__ = ["RedisMessages", "BadMessage"]

log = Logger()


class BadMessage(Exception):
    """A message that cannot be delivered; ``reason`` says why."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _sessions(value, what):
    """An ``except`` field: absent, one session id, or a list of them."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise BadMessage("%s must be a session id or a list of them" % what)


class RedisMessages:
    """``channels``: the hub's Channels; ``control``: its Control."""

    def __init__(self, keys, channels, control, stats, clock):
        self.keys = keys
        self.channels = channels
        self.control = control
        self.stats = stats
        self.clock = clock
        self._throttle = LogThrottle()

    def received(self, redis_channel, payload):
        """One message from Redis; never raises."""
        self.stats.redis_messages += 1
        try:
            self._route(redis_channel, self._decoded(payload))
        except BadMessage as error:
            self._bad(redis_channel, error.reason)
        except Exception:
            # A fault of ours, not of the message: logged with its traceback
            # (at most once a minute), and the next message is delivered.
            self._bad(redis_channel, "not delivered: internal error", traceback=True)

    @staticmethod
    def _decoded(payload):
        if isinstance(payload, bytes):
            try:
                payload = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise BadMessage("not UTF-8") from None
        try:
            message = decode_json(payload)
        except JSONError as error:
            raise BadMessage(error.reason) from None
        if not isinstance(message, dict):
            raise BadMessage("not a JSON object")
        return message

    def _route(self, redis_channel, message):
        prefix = self.keys.channel_prefix
        if redis_channel.startswith(prefix):
            exclude = _sessions(message.pop("except", None), "except")
            self.channels.channel_message(redis_channel[len(prefix):], message, exclude)
        elif redis_channel == JUGGERNAUT:
            channels = message.get("channels")
            if isinstance(channels, str):
                channels = [channels]
            if not (isinstance(channels, list) and all(isinstance(c, str) for c in channels)):
                raise BadMessage("channels must be a channel or a list of them")
            exclude = _sessions(message.get("except"), "except")
            self.channels.juggernaut_message(channels, message.get("data"), exclude)
        elif redis_channel == self.keys.control:
            self.control.received(message)

    def _bad(self, redis_channel, reason, traceback=False):
        self.stats.bad_redis_messages[reason] += 1
        if not self._throttle.due(self.clock.seconds()):
            return
        suppressed = self._throttle.suppressed
        more = " (and %d more since the last report)" % suppressed if suppressed else ""
        if traceback:
            log.failure("presence: a message on {channel} was not delivered{more}",
                        channel=redis_channel, more=more)
        else:
            log.warn("presence: ignored a message on {channel}: {reason}{more}",
                     channel=redis_channel, reason=reason, more=more)
