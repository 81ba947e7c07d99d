"""The firepresence handshake: deciding on a request head (docs/protocol.md).

A client asks for firepresence on the same port as WebSocket::

    OPTIONS / HTTP/1.1
    Host: presence.example.com
    Upgrade: firepresence
    X-Auth-Token: <ticket>          (optional)

and is answered ``101 Switching Protocols`` with ``Upgrade: firepresence/1.0``.
"""

from ..wire.httphead import Refused, response, split_list

__all__ = ["PROTOCOL", "VERSION", "UPGRADE", "FirepresenceAccepted", "Refused",
           "firepresence_handshake", "asks_for_firepresence"]

PROTOCOL = "firepresence"
VERSION = "1.0"
#: The value of the Upgrade field in the server's answer.
UPGRADE = "%s/%s" % (PROTOCOL, VERSION)

_ACCEPT = response(101, "Switching Protocols",
                   [("Upgrade", UPGRADE), ("Connection", "Upgrade")])


def _upgrade_tokens(head):
    tokens = []
    for value in head.get_all("upgrade"):
        tokens.extend(item.lower() for item in split_list(value))
    return tokens


def asks_for_firepresence(head):
    """Whether the request's Upgrade field names firepresence (any version)."""
    return any(token == PROTOCOL or token.startswith(PROTOCOL + "/")
               for token in _upgrade_tokens(head))


class FirepresenceAccepted:
    """The handshake succeeded: write ``response``, then lines."""

    __slots__ = ("response", "path", "host", "auth_token", "user_agent")

    def __init__(self, path, host, auth_token, user_agent):
        self.response = _ACCEPT
        self.path = path
        self.host = host
        self.auth_token = auth_token
        self.user_agent = user_agent


def firepresence_handshake(head):
    """Validate a firepresence request (see docs/protocol.md)."""
    if head.method != "OPTIONS":
        return Refused(
            400, "not_options", "a firepresence handshake must use OPTIONS, not %s" % head.method)
    if head.version < (1, 1):
        return Refused(400, "http_version",
                                    "a firepresence handshake needs HTTP/1.1 or later")
    if not head.target.startswith("/"):
        return Refused(400, "bad_target", "malformed request target %r" % head.target)
    hosts = head.get_all("host")
    if len(hosts) != 1 or not hosts[0]:
        return Refused(400, "host",
                                    "a firepresence handshake needs exactly one Host header")
    if head.get_all("transfer-encoding") or any(v != "0" for v in head.get_all("content-length")):
        return Refused(400, "body", "a firepresence handshake has no request body")
    versions = [token.partition("/")[2] for token in _upgrade_tokens(head)
                if token == PROTOCOL or token.startswith(PROTOCOL + "/")]
    if not any(version in ("", VERSION) for version in versions):
        return Refused(426, "unsupported_version",
                                    "unsupported firepresence version %s; this server speaks %s"
                                    % (", ".join(versions), VERSION),
                                    [("Upgrade", UPGRADE), ("Connection", "Upgrade")])
    tokens = head.get_all("x-auth-token")
    if len(tokens) > 1:
        return Refused(400, "auth_token", "more than one X-Auth-Token")
    return FirepresenceAccepted(head.target, hosts[0], tokens[0] if tokens else None,
                                head.get("user-agent"))
