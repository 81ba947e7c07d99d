"""The ``X-Presence-Signature`` header of a webhook request, as Stripe signs:
``t=UNIX_SECONDS,v1=HEX``, HEX the hex HMAC-SHA256, keyed with the secret,
of ``"<t>." + body``. docs/api.md shows a receiver checking it."""

import hashlib
import hmac

__all__ = ["HEADER", "signature", "verify"]

HEADER = "X-Presence-Signature"


def signature(secret, body, timestamp):
    """The header's value for ``body`` (bytes) sent at ``timestamp``."""
    t = int(timestamp)
    mac = hmac.new(secret.encode("utf-8"), b"%d." % t + body, hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, mac)


def verify(secret, header, body, now, tolerance=300):
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance``
    seconds of ``now`` (a replayed request is refused after that)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - t) > tolerance:
        return False
    expected = hmac.new(secret.encode("utf-8"), b"%d." % t + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))
