"""Events a :class:`~presence.websocket.connection.ServerConnection` reports."""

__all__ = ["Event", "TextMessage", "BinaryMessage", "Ping", "Pong", "CloseReceived",
           "ProtocolError"]


class Event:
    __slots__ = ()

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (name, getattr(self, name)) for name in self.__slots__))


class TextMessage(Event):
    """A complete text message, validated as UTF-8 (5.6, 8.1)."""
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class BinaryMessage(Event):
    """A complete binary message."""
    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


class Ping(Event):
    """The peer sent a ping. ``pong`` is the answer to write (5.5.2: a Pong
    with the same payload), or ``b""`` once this side has sent a Close. It
    travels with the event, not through ``data_to_send()``, so that answers
    leave in the order their causes arrived: a pong for a ping that came
    between two fragments goes out before the echo of the message."""
    __slots__ = ("payload", "pong")

    def __init__(self, payload, pong=b""):
        self.payload = payload
        self.pong = pong


class Pong(Event):
    """The peer sent a pong (5.5.3), solicited or not."""
    __slots__ = ("payload",)

    def __init__(self, payload):
        self.payload = payload


class CloseReceived(Event):
    """The peer sent a valid Close frame: it either started the closing
    handshake (our answer is queued) or answered ours. ``code`` is 1005 when
    the frame had no status code."""
    __slots__ = ("code", "reason")

    def __init__(self, code, reason):
        self.code = code
        self.reason = reason


class ProtocolError(Event):
    """The peer broke the protocol; the connection is failed (7.1.7): a Close
    frame with ``code`` and ``reason`` is queued and the transport should be
    closed once it is written."""
    __slots__ = ("code", "reason")

    def __init__(self, code, reason):
        self.code = code
        self.reason = reason
