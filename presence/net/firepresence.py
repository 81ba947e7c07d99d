"""The firepresence adapter: the handshake (docs/protocol.md) answered for a
connection whose request head asked for ``Upgrade: firepresence``
(presence/net/dispatch.py), then a session on the sans-I/O core
(presence/firepresence/connection.py). To the rest of the server it is a
session like a WebSocket one: the handler receives its messages as text
(each one a JSON object), sends text back, and sees the same close codes and
reasons in its close record."""

from ..firepresence.connection import FirepresenceConnection
from ..firepresence.handshake import FirepresenceAccepted, firepresence_handshake
from .authentication import credential_in_token
from .session import Session

__all__ = ["FirepresenceSession"]


class FirepresenceSession(Session):
    protocol_name = "firepresence"

    __slots__ = ()

    def start(self, head, rest):
        """Answer the handshake in ``head``; ``rest`` is what followed it."""
        outcome = firepresence_handshake(head)
        if outcome.__class__ is not FirepresenceAccepted:
            self.refuse(outcome.kind, outcome.response)
            return
        if outcome.auth_token is None or self.server.tickets is None:
            self._accept(outcome, rest, False)
        else:
            self.redeem_before_answering(credential_in_token(outcome.auth_token), self._accept,
                                         outcome, rest)

    def _accept(self, outcome, rest, authenticated):
        settings = self.server.settings
        self.path = outcome.path
        self.user_agent = outcome.user_agent
        connection = FirepresenceConnection(settings.max_message_size, settings.max_bad_lines)
        self.open(connection, outcome.response, rest, authenticated)
