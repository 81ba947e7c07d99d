"""The events and states a protocol core shares with its adapter: one
vocabulary for every protocol (WebSocket's ServerConnection, firepresence's
FirepresenceConnection), so that the session reads every protocol with one
loop (presence/net/session.py)."""

import enum

__all__ = ["ConnectionState", "OPEN", "CLOSING", "CLOSED", "InvalidState", "Event",
           "TextMessage", "BinaryMessage", "Ping", "Pong", "CloseReceived", "ProtocolError",
           "Malformed"]


class ConnectionState(enum.Enum):
    """Where a protocol core's connection is, after its opening handshake."""

    #: Messages flow both ways.
    OPEN = "open"
    #: This side sent its close and waits for the peer's answer; it sends no
    #: more messages (RFC 6455 5.5.1).
    CLOSING = "closing"
    #: The close is complete, or the connection was failed: nothing more is
    #: read or sent, and the transport should be closed.
    CLOSED = "closed"


# The members under short names, for the hot paths that compare them.
OPEN = ConnectionState.OPEN
CLOSING = ConnectionState.CLOSING
CLOSED = ConnectionState.CLOSED


class InvalidState(RuntimeError):
    """A send was attempted in a state that does not allow it (RFC 6455
    5.5.1: after sending a Close frame, an endpoint sends no more data
    frames)."""


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
    """The peer sent a ping. ``pong`` is the answer to write (RFC 6455 5.5.2:
    a Pong with the same payload; firepresence: a pong line with the same
    id), or ``b""`` once this side has sent a Close. It
    travels with the event, not through ``data_to_send()``, so that answers
    leave in the order their causes arrived: a pong for a ping that came
    between two fragments goes out before the echo of the message."""
    __slots__ = ("payload", "pong")

    def __init__(self, payload, pong=b""):
        self.payload = payload
        self.pong = pong


class Pong(Event):
    """The peer sent a pong (RFC 6455 5.5.3), solicited or not; ``payload``
    is what it echoed (a WebSocket pong's payload, a firepresence pong's id),
    which the heartbeat matches against its ping."""
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
    """The peer broke the protocol; the connection is failed (RFC 6455
    7.1.7): a close with ``code`` and ``reason`` is queued and the transport
    should be closed once it is written. ``limit`` names the operator limit
    the peer went past (``"max-fragments"``), if that was the fault."""
    __slots__ = ("code", "reason", "limit")

    def __init__(self, code, reason, limit=None):
        self.code = code
        self.reason = reason
        self.limit = limit


class Malformed(Event):
    """The peer sent something the protocol answers without failing the
    connection (a firepresence line that is not a JSON object); ``answer``
    is what to write back (an error line), in order with every other answer
    of the read, and ``reason`` is counted like a protocol error's."""
    __slots__ = ("reason", "answer")

    def __init__(self, reason, answer=b""):
        self.reason = reason
        self.answer = answer
