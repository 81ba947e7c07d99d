"""Close codes (RFC 6455 section 7.4), the rules about them, and the record of
how a session ended.

Every protocol ends its sessions with these codes and reasons (firepresence
sends them in its close line), so the dashboard, the metrics and the close
records speak one vocabulary whatever the transport. How a WebSocket Close
frame carries them is the WebSocket core's business
(presence/websocket/frames.py).
"""

__all__ = [
    "NORMAL_CLOSURE", "GOING_AWAY", "PROTOCOL_ERROR", "UNSUPPORTED_DATA",
    "NO_STATUS_RECEIVED", "ABNORMAL_CLOSURE", "INVALID_PAYLOAD",
    "POLICY_VIOLATION", "MESSAGE_TOO_BIG", "MANDATORY_EXTENSION",
    "INTERNAL_ERROR", "SERVICE_RESTART", "TRY_AGAIN_LATER",
    "CLOSE_CODE_MEANINGS", "meaning", "is_valid_received_code", "MAX_REASON_BYTES",
    "cut_reason", "bounded_reason", "OPERATOR_CLOSE_CODES", "is_operator_close_code", "CloseRecord",
    "SERVER", "CLIENT",
]

# 7.4.1 Defined Status Codes
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
NO_STATUS_RECEIVED = 1005  # never sent: "no status code was present"
ABNORMAL_CLOSURE = 1006  # never sent: "closed without a Close frame"
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
MANDATORY_EXTENSION = 1010
INTERNAL_ERROR = 1011
# Registered later in the IANA WebSocket Close Code Number Registry; sent by
# this server (restart, overload) but, per this server's strict reading of
# 7.4.1, not accepted from a client.
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013

CLOSE_CODE_MEANINGS = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status code",
    1006: "abnormal closure (no close frame)",
    1007: "invalid payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension missing",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}

#: Who started the end of a session (the "initiated_by" of a close record).
SERVER = "server"
CLIENT = "client"

#: 5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
#: Every protocol holds close reasons to the same bound, so that a record
#: reads the same whichever transport the session used.
MAX_REASON_BYTES = 123

#: The codes an operator or a backend may close a session with, besides the
#: application's own 4000-4999 (the HTTP API's POST /disconnect, the
#: dashboard's close button and the control channel in Redis).
OPERATOR_CLOSE_CODES = (NORMAL_CLOSURE, GOING_AWAY, POLICY_VIOLATION, INTERNAL_ERROR)


def meaning(code):
    """A close code in words, for logs and the dashboard."""
    if code in CLOSE_CODE_MEANINGS:
        return CLOSE_CODE_MEANINGS[code]
    if 3000 <= code <= 3999:
        return "registered by a library or framework"
    if 4000 <= code <= 4999:
        return "application-defined"
    return "unknown"


def is_valid_received_code(code):
    """Whether a peer may send ``code`` in a Close frame (7.4.1, 7.4.2).

    1000-1003 and 1007-1011 are the codes RFC 6455 defines for use on the
    wire; 1004 is reserved, 1005, 1006 and 1015 must never be sent; 0-999 and
    1016-2999 are unassigned or reserved for future RFCs; 3000-4999 belong to
    libraries and applications."""
    return (1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999)


def is_operator_close_code(code):
    """Whether an operator or a backend may close a session with ``code``:
    one of :data:`OPERATOR_CLOSE_CODES`, or an application code (4000-4999).
    The others describe what a protocol found wrong, and only the protocol
    says them."""
    return isinstance(code, int) and not isinstance(code, bool) and (
        code in OPERATOR_CLOSE_CODES or 4000 <= code <= 4999)


def cut_reason(reason):
    """``reason`` as UTF-8 of at most :data:`MAX_REASON_BYTES` bytes, cut on
    a character boundary. A lone surrogate (a JSON client's ``"\\ud800"``)
    has no UTF-8 form and becomes ``?``."""
    data = reason.encode("utf-8", "replace")
    if len(data) > MAX_REASON_BYTES:
        data = data[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
    return data


def bounded_reason(reason):
    """``reason`` as every close record keeps it, whatever the protocol and
    whoever gave it: text of at most :data:`MAX_REASON_BYTES` UTF-8 bytes."""
    if len(reason) <= MAX_REASON_BYTES // 4 and reason.isascii():
        return reason  # the usual short reason, unchanged
    return cut_reason(reason).decode("utf-8")


class CloseRecord:
    """How a session ended: the close code and reason (those of the side that
    started the close, or 1006 when the transport dropped with no close frame),
    who initiated it (``"server"`` or ``"client"``), whether the closing
    handshake completed (``clean``), and the session's duration in seconds
    (set by the transport adapter, which owns the clock)."""

    __slots__ = ("code", "reason", "initiated_by", "clean", "duration")

    def __init__(self, code, reason, initiated_by, clean, duration=None):
        self.code = code
        self.reason = reason
        self.initiated_by = initiated_by
        self.clean = clean
        self.duration = duration

    @property
    def meaning(self):
        return meaning(self.code)

    def as_dict(self):
        return {
            "code": self.code,
            "meaning": self.meaning,
            "reason": self.reason,
            "initiated_by": self.initiated_by,
            "clean": self.clean,
            "duration": self.duration,
        }

    def __eq__(self, other):
        if not isinstance(other, CloseRecord):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self):
        return "CloseRecord(code=%r, reason=%r, initiated_by=%r, clean=%r, duration=%r)" % (
            self.code, self.reason, self.initiated_by, self.clean, self.duration)
