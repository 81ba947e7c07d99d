"""Command-line options of ``twistd presence``."""

from twisted.python import usage

from .httphead import DEFAULT_MAX_HEAD_SIZE
from .websocket.connection import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["Options"]


def _positive_float(value):
    number = float(value)
    if number <= 0:
        raise ValueError("must be positive")
    return number


def _non_negative_float(value):
    number = float(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _positive_int(value):
    number = int(value)
    if number <= 0:
        raise ValueError("must be positive")
    return number


_positive_float.coerceDoc = "Seconds, greater than 0."
_non_negative_float.coerceDoc = "Seconds; 0 disables."
_positive_int.coerceDoc = "Bytes, greater than 0."


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Presence: a presence server for real-time applications. Serves "
        "WebSocket (RFC 6455) on every --listen endpoint. See docs/ for every "
        "option, limit and close code."
    )

    optParameters = [
        ["max-message-size", None, DEFAULT_MAX_MESSAGE_SIZE,
         "Largest message accepted, in bytes; larger ones close the session with 1009.",
         _positive_int],
        ["max-head-size", None, DEFAULT_MAX_HEAD_SIZE,
         "Largest HTTP request head accepted, in bytes; larger ones get 431.", _positive_int],
        ["handshake-timeout", None, 10.0,
         "Seconds a client may take to send its request head.", _positive_float],
        ["close-timeout", None, 5.0,
         "Seconds to wait for the client's answer to a Close before dropping it.",
         _positive_float],
        ["heartbeat", None, 30.0,
         "Seconds between heartbeat pings to every session (0 disables).", _non_negative_float],
        ["heartbeat-timeout", None, 10.0,
         "Seconds a heartbeat ping may wait for its pong; then the session is closed "
         "with 1011.", _positive_float],
        ["max-outgoing-buffer", None, 1024 * 1024,
         "Bytes that may queue for a client that is not reading before it is dropped.",
         _positive_int],
    ]

    def __init__(self):
        super().__init__()
        self["listen"] = []
        self["origin"] = []
        self["subprotocol"] = []

    def opt_listen(self, endpoint):
        self["listen"].append(endpoint)

    opt_listen.__doc__ = (
        "Endpoint to serve WebSocket on (repeatable; Twisted endpoint syntax, e.g. tcp:8080, "
        "tcp:8080:interface=127.0.0.1, ssl:8443:privateKey=key.pem:certKey=cert.pem). "
        "Default: tcp:8080.")

    def opt_origin(self, origin):
        self["origin"].append(origin)

    opt_origin.__doc__ = (
        "Allowed Origin of browser clients, e.g. https://example.com (repeatable). "
        "None given: any origin is allowed.")

    def opt_subprotocol(self, name):
        self["subprotocol"].append(name)

    opt_subprotocol.__doc__ = (
        "WebSocket subprotocol the server speaks (repeatable, in order of preference).")

    def postOptions(self):
        if not self["listen"]:
            self["listen"] = ["tcp:8080"]
        if self["heartbeat"] and self["heartbeat-timeout"] > self["heartbeat"] * 10:
            raise usage.UsageError("--heartbeat-timeout is more than ten heartbeat intervals")
