"""The control channel (``P control``): what any node, backend or dashboard
asks every node to do. Both ends are here: :meth:`Control.disconnect` asks,
:meth:`Control.received` does it on each node (and hands the dashboard's
queries to presence/hub/queries.py).

``{"type": "disconnect", "session" | "account", "code", "reason"}`` closes
the matching sessions wherever they are. The code must be one an operator
may use (presence/wire/close.py ``is_operator_close_code``, the same rule as
the HTTP API's and the dashboard's); any other closes with 1000.
"""

from ..wire.close import GOING_AWAY, NORMAL_CLOSURE, is_operator_close_code
from ..wire.jsontext import encode_json

__all__ = ["Control"]


class Control:
    """``store``: the node's PresenceStore; ``answers``: its QueryAnswers;
    ``server`` (the node's client side) is given when the hub starts."""

    def __init__(self, store, answers, work):
        self.store = store
        self.answers = answers
        self.work = work
        self.server = None
        #: The hub's ServerSubscriptions (presence/hub/subscriptions.py).
        self.subscriptions = None

    def disconnect(self, session=None, account=None, code=GOING_AWAY, reason=""):
        """Close a session, or every session of an account, on every node."""
        message = {"type": "disconnect", "code": code, "reason": reason}
        if session is not None:
            message["session"] = session
        if account is not None:
            message["account"] = account
        return self.store.publish(self.store.keys.control, encode_json(message))

    def received(self, message):
        """A message on the control channel."""
        kind = message.get("type")
        if kind == "query":
            self.work.track(self.answers.answer(message), "answering a query")
        elif kind == "disconnect":
            self._disconnect(message)
        elif kind == "server-subscription" and self.subscriptions is not None:
            self.subscriptions.received(message)

    def _disconnect(self, message):
        code = message.get("code", NORMAL_CLOSURE)
        if not is_operator_close_code(code):
            code = NORMAL_CLOSURE
        reason = message.get("reason") if isinstance(message.get("reason"), str) else ""
        session_id = message.get("session")
        account = message.get("account")
        for session in list(self.server.sessions.values()):
            if session.id == session_id or (account is not None and session.account == account):
                session.close(code, reason)
