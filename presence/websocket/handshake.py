"""The server's opening handshake (RFC 6455 sections 4.2.1 and 4.2.2).

:func:`server_handshake` reads a parsed request head and decides: either an
:class:`Accepted` (the ``101 Switching Protocols`` response, the chosen
subprotocol and extensions) or a :class:`Refused` (an HTTP error response
whose plain-text body names what was wrong). Pure: no I/O, no clock.
"""

import base64
import binascii
import hashlib

from ..wire.httphead import Refused, split_list
from .extensions import negotiate_extensions

__all__ = [
    "HandshakeConfig", "Accepted", "Refused", "server_handshake", "accept_key",
    "normalize_origin", "WEBSOCKET_GUID",
]

# 1.3: the GUID concatenated to the client's key.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept_key(key):
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode("ascii")).digest())


def accept_key(key):
    """4.2.2 step 5.4: base64(SHA-1(key + GUID))."""
    return _accept_key(key).decode("ascii")


def normalize_origin(origin):
    """RFC 6454 serialisation is lower-case scheme and host; compare on that,
    ignoring a trailing slash some configurations carry."""
    return origin.strip().rstrip("/").lower()


class HandshakeConfig:
    """What the server accepts.

    ``subprotocols``: names in the server's order of preference (4.2.2 step
    5.4: the server selects one of the client's values, or none).
    ``origins``: allowed ``Origin`` values, or ``None`` for any. A request
    without ``Origin`` is allowed either way: only browsers send it, and the
    allowlist exists to stop other sites' pages from connecting with the
    user's cookies (10.2).
    ``extensions``: :class:`~presence.websocket.extensions.ExtensionFactory`
    objects; empty means no extension is ever accepted.
    """

    __slots__ = ("subprotocols", "origins", "extensions")

    def __init__(self, subprotocols=(), origins=None, extensions=()):
        self.subprotocols = tuple(subprotocols)
        self.origins = None if not origins else frozenset(normalize_origin(o) for o in origins)
        self.extensions = tuple(extensions)


class Accepted:
    """The handshake succeeded: write ``response`` and start framing."""

    __slots__ = ("response", "path", "host", "origin", "subprotocol", "extensions", "user_agent")

    def __init__(self, response, path, host, origin, subprotocol, extensions, user_agent):
        self.response = response
        self.path = path
        self.host = host
        self.origin = origin
        self.subprotocol = subprotocol
        self.extensions = extensions
        self.user_agent = user_agent


def _decode_key(key):
    # 4.2.1 item 5: base64 of a 16-byte value; strict, so that trailing
    # garbage or missing padding is refused rather than silently dropped.
    try:
        raw = binascii.a2b_base64(key.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if len(raw) == 16 else None


def _request_path(target):
    # 4.1 / RFC 9112 3.2: origin-form, or absolute-form through a proxy.
    if target.startswith("/"):
        return target
    lowered = target.lower()
    for scheme in ("ws://", "wss://", "http://", "https://"):
        if lowered.startswith(scheme):
            # RFC 3986 3.2: the authority ends at the first "/", "?" or "#".
            rest = target[len(scheme):]
            end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
            path = rest[end:].partition("#")[0]
            if not path.startswith("/"):
                path = "/" + path
            return path
    return None


def _has_token(values, token):
    """Whether list field ``values`` holds ``token`` (case-insensitive)."""
    if values is None:
        return False
    for value in values:
        lowered = value.lower()
        if lowered == token or token in (item.strip(" \t") for item in lowered.split(",")):
            return True
    return False


_ACCEPTED = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Accept: ")


def server_handshake(head, config):
    """Validate a WebSocket opening handshake (4.2.1) and build the answer
    (4.2.2). Returns :class:`Accepted` or :class:`Refused`."""
    fields = head.index
    if head.method != "GET":
        return Refused(400, "not_get", "a WebSocket handshake must use GET, not %s" % head.method)
    if head.version < (1, 1):
        return Refused(400, "http_version", "a WebSocket handshake needs HTTP/1.1 or later")
    path = _request_path(head.target)
    if path is None:
        return Refused(400, "bad_target", "malformed request target %r" % head.target)
    hosts = fields.get("host")
    if hosts is None or len(hosts) != 1 or not hosts[0]:
        return Refused(400, "host", "a WebSocket handshake needs exactly one Host header")
    if "transfer-encoding" in fields or any(v != "0" for v in fields.get("content-length", ())):
        return Refused(400, "body", "a WebSocket handshake has no request body")
    if not _has_token(fields.get("upgrade"), "websocket"):
        return Refused(400, "no_upgrade", "missing Upgrade: websocket")
    if not _has_token(fields.get("connection"), "upgrade"):
        return Refused(400, "no_connection_upgrade", "missing Connection: Upgrade")
    versions = fields.get("sec-websocket-version")
    if versions is None:
        return Refused(400, "missing_version", "missing Sec-WebSocket-Version",
                        [("Sec-WebSocket-Version", "13")])
    if versions != ["13"]:
        # 4.2.2: an unsupported version is answered 426 with the versions we
        # speak, so a client can retry with one of them.
        return Refused(426, "unsupported_version",
                        "unsupported Sec-WebSocket-Version %s; this server speaks 13"
                        % ", ".join(versions), [("Sec-WebSocket-Version", "13")])
    keys = fields.get("sec-websocket-key")
    if keys is None or len(keys) != 1:
        return Refused(400, "bad_key", "a WebSocket handshake needs exactly one Sec-WebSocket-Key")
    key = keys[0]
    if _decode_key(key) is None:
        return Refused(400, "bad_key", "Sec-WebSocket-Key is not the base64 encoding of 16 bytes")
    origin = head.get("origin")
    if config.origins is not None and origin is not None \
            and normalize_origin(origin) not in config.origins:
        return Refused(403, "origin", "origin %s is not allowed" % origin)

    response = _ACCEPTED + _accept_key(key) + b"\r\n"
    subprotocol = None
    if config.subprotocols and "sec-websocket-protocol" in fields:
        offered = set()
        for value in fields["sec-websocket-protocol"]:
            offered.update(split_list(value))
        # The server's preference decides; never answer with a protocol the
        # client did not offer (browsers fail such a connection).
        for candidate in config.subprotocols:
            if candidate in offered:
                subprotocol = candidate
                response += b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n"
                break
    extensions = []
    if config.extensions and "sec-websocket-extensions" in fields:
        extension_header, extensions = negotiate_extensions(
            fields["sec-websocket-extensions"], config.extensions)
        if extension_header is not None:
            response += (b"Sec-WebSocket-Extensions: " + extension_header.encode("latin-1")
                         + b"\r\n")
    return Accepted(
        response + b"\r\n",
        path=path,
        host=hosts[0],
        origin=origin,
        subprotocol=subprotocol,
        extensions=extensions,
        user_agent=head.get("user-agent"),
    )
