"""The WebSocket adapter: the opening handshake of RFC 6455 (4.2) answered
for a connection whose request head asked for ``Upgrade: websocket``
(presence/net/dispatch.py), then a session on the sans-I/O core
(presence/websocket/connection.py). Everything after the handshake is the
shared session's (presence/net/session.py)."""

from urllib.parse import parse_qs, urlsplit

from ..websocket.connection import ServerConnection
from ..websocket.deflate import DeflateExtension
from ..websocket.extensions import format_extension
from ..websocket.handshake import Refused, server_handshake
from .session import Session

__all__ = ["WebSocketSession"]


def _credential_in(path):
    """The ``ticket`` (or ``resume``) query parameter of a request target,
    as a credential (presence/net/authentication.py), or None."""
    if "ticket=" not in path and "resume=" not in path:
        return None
    query = parse_qs(urlsplit(path).query)
    for kind in ("ticket", "resume"):
        values = query.get(kind)
        if values:
            return kind, values[0]
    return None


class WebSocketSession(Session):
    protocol_name = "websocket"

    __slots__ = ()

    def start(self, head, rest):
        """Answer the handshake in ``head``; ``rest`` is what followed it."""
        server = self.server
        outcome = server_handshake(head, server.settings.handshake)
        if outcome.__class__ is Refused:
            self.refuse(outcome.kind, outcome.response)
            return
        credential = _credential_in(outcome.path) if server.tickets is not None else None
        if credential is None:
            self._accept(outcome, rest, False)
        else:
            self.redeem_before_answering(credential, self._accept, outcome, rest)

    def _accept(self, outcome, rest, authenticated):
        settings = self.server.settings
        self.path = outcome.path
        self.origin = outcome.origin
        self.user_agent = outcome.user_agent
        self.subprotocol = outcome.subprotocol
        if outcome.extensions:
            self.extensions = tuple(extension.name for extension in outcome.extensions)
        connection = ServerConnection(settings.max_message_size, outcome.extensions,
                                      settings.max_fragments)
        for extension in connection.extensions:
            if extension.__class__ is DeflateExtension:
                self.charge_inflation(extension)
        self.open(connection, outcome.response, rest, authenticated)

    @property
    def extension_details(self):
        """The negotiated extensions with their agreed parameters, as in the
        handshake's Sec-WebSocket-Extensions answer."""
        connection = self.connection
        if connection is None:
            return ()
        return tuple(format_extension(extension.name, extension.response_params())
                     for extension in connection.extensions)
