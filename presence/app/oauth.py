"""OAuth 2.0 token introspection (RFC 7662), for users who ask for their own
ticket with the access token the web service gave them.

Presence does not implement OAuth: it asks the authorization server whether
a token is active and whom it belongs to (``sub``), with the client
credentials it was given (HTTP Basic, RFC 7662 section 2.1), through treq.
"""

import treq
from twisted.internet import defer

from ..wire.jsontext import JSONError, decode_json

__all__ = ["Introspector", "IntrospectionUnavailable"]


class IntrospectionUnavailable(Exception):
    """The introspection endpoint could not be asked (down, slow, or an
    answer that is not RFC 7662)."""


class Introspector:
    def __init__(self, url, client_id=None, client_secret=None, timeout=5.0, pool=None,
                 reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.url = url
        self.auth = (client_id, client_secret or "") if client_id else None
        self.timeout = timeout
        self.pool = pool
        self.reactor = reactor

    @defer.inlineCallbacks
    def introspect(self, token):
        """Fires with the introspection answer (a dict) when the token is
        active, ``None`` when it is not."""
        try:
            response = yield treq.post(
                self.url, data={"token": token, "token_type_hint": "access_token"},
                auth=self.auth, timeout=self.timeout, pool=self.pool,
                headers={b"Accept": [b"application/json"]})
            body = yield treq.content(response)
        except Exception as error:
            raise IntrospectionUnavailable("introspection request failed: %s" % error) from None
        if response.code != 200:
            raise IntrospectionUnavailable("introspection answered %d" % response.code)
        try:
            answer = decode_json(body.decode("utf-8"))
        except (UnicodeDecodeError, JSONError):
            raise IntrospectionUnavailable("introspection answer is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise IntrospectionUnavailable("introspection answer has no boolean 'active'")
        if not answer["active"]:
            return None
        return answer
