"""A Python client of the HTTP API for backends on Twisted (treq).

    client = PresenceClient("http://127.0.0.1:8081", api_key)
    ticket = yield client.issue_ticket("user-42", channels=["room:lobby"])

Every call is bounded by ``timeout`` seconds, and a refusal raises
:class:`PresenceAPIError` carrying the server's status and JSON error body.
docs/api.md documents the endpoints; docs/tickets.md shows a client that
needs only the standard library.
"""

import json
from urllib.parse import quote

import treq
from twisted.internet import defer

__all__ = ["PresenceClient", "PresenceAPIError", "PresenceUnavailable"]


class PresenceAPIError(Exception):
    """The API refused a request: ``status`` is the HTTP status, ``body`` the
    decoded JSON error (``{"error": KIND, "message": TEXT}``)."""

    def __init__(self, status, body):
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__("%d %s" % (status, message))

    @property
    def kind(self):
        return self.body.get("error") if isinstance(self.body, dict) else None


class PresenceUnavailable(PresenceAPIError):
    """503: Presence could not serve the request now; retrying later may."""


class PresenceClient:
    def __init__(self, url, api_key, timeout=10.0, pool=None):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.pool = pool

    @defer.inlineCallbacks
    def _request(self, method, path, body=None):
        headers = {b"Authorization": [b"Bearer " + self.api_key.encode("utf-8")],
                   b"Accept": [b"application/json"]}
        data = None
        if body is not None:
            headers[b"Content-Type"] = [b"application/json"]
            data = json.dumps(body).encode("utf-8")
        response = yield treq.request(method, self.url + path, headers=headers, data=data,
                                      timeout=self.timeout, pool=self.pool)
        content = yield treq.content(response)
        try:
            decoded = json.loads(content) if content else None
        except ValueError:
            decoded = {"error": "not_json", "message": content.decode("utf-8", "replace")}
        if response.code >= 400:
            error = PresenceUnavailable if response.code == 503 else PresenceAPIError
            raise error(response.code, decoded)
        return decoded

    def issue_ticket(self, account, attributes=None, channels=None, ip=None):
        """A ticket for ``account``: fires with ``{"ticket", "expires_in"}``."""
        body = {"account": account}
        if attributes is not None:
            body["attributes"] = attributes
        if channels is not None:
            body["channels"] = list(channels)
        if ip is not None:
            body["ip"] = ip
        return self._request("POST", "/tickets", body)

    def publish(self, channels, data, exclude=()):
        """Publish ``data`` to a channel (a string) or channels (a list), on
        every node; ``exclude``: session ids not to deliver to. Fires with
        ``{"channels": N, "nodes": M}``."""
        body = {"channels": [channels] if isinstance(channels, str) else list(channels),
                "data": data}
        if exclude:
            body["except"] = list(exclude)
        return self._request("POST", "/publish", body)

    def presence(self):
        """The online accounts, cluster-wide: fires with a list."""
        return self._request("GET", "/presence").addCallback(lambda body: body["accounts"])

    def account_presence(self, account):
        """``{"account", "online", "sessions": [...]}`` for one account."""
        return self._request("GET", "/presence/" + quote(account, safe=""))

    def disconnect(self, session=None, account=None, code=1000, reason=""):
        """Close a session, or all of an account's, on every node."""
        body = {"code": code, "reason": reason}
        if session is not None:
            body["session"] = session
        if account is not None:
            body["account"] = account
        return self._request("POST", "/disconnect", body)
