"""A Python client of the HTTP API for backends on Twisted (treq).

    client = PresenceClient("http://127.0.0.1:8081", api_key)
    ticket = yield client.issue_ticket("user-42", channels=["room:lobby"])

Every call is bounded by ``timeout`` seconds, from connecting to the last
byte of the answer. Every failure is a :class:`PresenceError`:

- :class:`PresenceAPIError`: the API refused the request; it carries the
  server's status and JSON error body (``{"error": KIND, "message": TEXT}``);
  :class:`PresenceUnavailable` is its 503 (retry later, ``retry_after``);
- :class:`PresenceTimeout`: no complete answer within ``timeout``;
- :class:`PresenceConnectionError`: the API could not be reached, or the
  connection broke before the answer.

A failure of these three does not say whether the call was done (a 503 may
come after Redis took the command: docs/api.md). Every publish carries an id,
so that a retry is harmless: a failed publish's ``publish_id`` sent again
with it within 300 s is not delivered twice.

docs/clients.md documents every call; docs/api.md the endpoints.
"""

import json
import uuid
from urllib.parse import quote

import treq
from twisted.internet import defer, protocol
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError
from twisted.web.client import PotentialDataLoss, ResponseDone, ResponseFailed

__all__ = ["PresenceClient", "PresenceError", "PresenceAPIError", "PresenceUnavailable",
           "PresenceTimeout", "PresenceConnectionError"]


class _BodyReader(protocol.Protocol):
    """Reads a response body into ``finished``. Cancelling ``finished`` (the
    call's timeout) stops the transfer and closes the connection, rather
    than leaving a stalled server's connection open."""

    def __init__(self):
        self.chunks = []
        self.finished = defer.Deferred(self._cancel)

    def _cancel(self, finished):
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data):
        self.chunks.append(data)

    def connectionLost(self, reason):
        if self.finished.called:
            return
        # PotentialDataLoss: a body without a length, ended by the close.
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(reason)


def _read_body(response):
    if response.length == 0:
        return defer.succeed(b"")
    reader = _BodyReader()
    response.deliverBody(reader)
    return reader.finished


class PresenceError(Exception):
    """Any failure of a PresenceClient call. ``publish_id``: for a publish,
    its id (retry with it: the publish is then made once)."""

    publish_id = None


class PresenceTimeout(PresenceError):
    """No complete answer within the client's ``timeout``."""


class PresenceConnectionError(PresenceError):
    """The API could not be reached, or the connection broke."""


class PresenceAPIError(PresenceError):
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
    """503: Presence could not serve the request now (Redis did not answer);
    retrying later may. ``retry_after``: the server's Retry-After, seconds."""

    def __init__(self, status, body, retry_after=None):
        super().__init__(status, body)
        self.retry_after = retry_after


class PresenceClient:
    """``url``: the API's base URL; ``api_key``: the backends' key;
    ``timeout``: seconds a call may take in all; ``pool``: a treq/Agent
    HTTPConnectionPool (default: treq's shared one)."""

    def __init__(self, url, api_key, timeout=10.0, pool=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.pool = pool
        self.reactor = reactor

    def _request(self, method, path, body=None):
        """The decoded JSON answer, or a PresenceError, within ``timeout``."""
        call = self._call(method, path, body)
        # Over the whole call: treq's own timeout stops at the response head.
        expired = []

        def expire():
            expired.append(True)
            call.cancel()
        timer = self.reactor.callLater(self.timeout, expire)

        def done(result):
            if timer.active():
                timer.cancel()
            return result

        def failed(failure):
            if expired:
                raise PresenceTimeout("%s %s: no answer within %s s"
                                      % (method, path, self.timeout))
            if failure.check(ConnectError, ConnectionLost, DNSLookupError, ResponseFailed):
                raise PresenceConnectionError("%s %s: %s" % (method, path, failure.value))
            return failure
        return call.addBoth(done).addErrback(failed)

    @defer.inlineCallbacks
    def _call(self, method, path, body):
        headers = {b"Authorization": [b"Bearer " + self.api_key.encode("utf-8")],
                   b"Accept": [b"application/json"]}
        data = None
        if body is not None:
            headers[b"Content-Type"] = [b"application/json"]
            data = json.dumps(body).encode("utf-8")
        response = yield treq.request(method, self.url + path, headers=headers, data=data,
                                      pool=self.pool, reactor=self.reactor)
        content = yield _read_body(response)
        try:
            decoded = json.loads(content) if content else None
        except ValueError:
            decoded = {"error": "not_json", "message": content.decode("utf-8", "replace")}
        if response.code == 503:
            raise PresenceUnavailable(response.code, decoded,
                                      _seconds(response.headers.getRawHeaders(b"retry-after")))
        if response.code >= 400:
            raise PresenceAPIError(response.code, decoded)
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

    def publish(self, channels, data, exclude=(), publish_id=None):
        """Publish ``data`` to a channel (a string) or channels (a list), on
        every node; ``exclude``: session ids not to deliver to. Fires with
        ``{"channels": N, "nodes": M, "duplicate": False}``.

        ``publish_id``: the publish's id (``"id"``), a new one for every call
        unless given. A failure carries it (``PresenceError.publish_id``):
        the same publish sent again with it within 300 s is made once,
        whether the failed call was made or not (the retry fires with
        ``"duplicate": True`` when it was)."""
        if publish_id is None:
            publish_id = uuid.uuid4().hex
        body = {"channels": [channels] if isinstance(channels, str) else list(channels),
                "data": data, "id": publish_id}
        if exclude:
            body["except"] = list(exclude)

        def failed(failure):
            failure.trap(PresenceError)
            failure.value.publish_id = publish_id
            return failure
        return self._request("POST", "/publish", body).addErrback(failed)

    def presence(self):
        """The online accounts, cluster-wide: fires with a list."""
        return self._request("GET", "/presence").addCallback(lambda body: body["accounts"])

    def nodes(self):
        """The live nodes of the cluster: fires with a list of ``{"node",
        "pid", "sessions", "started_at", "heartbeat_at"}``."""
        return self._request("GET", "/nodes").addCallback(lambda body: body["nodes"])

    def account_presence(self, account):
        """``{"account", "online", "sessions": [...]}`` for one account."""
        return self._request("GET", "/presence/" + quote(account, safe=""))

    def disconnect(self, session=None, account=None, code=1000, reason=""):
        """Close a session, or all of an account's, on every node (one of
        ``session`` and ``account``). ``code``: 1000, 1001, 1008, 1011 or
        4000-4999; the browser client does not reconnect after 1000, 1008
        and 4000-4099 (docs/clients.md). Fires with ``{"requested": True}``."""
        body = {"code": code, "reason": reason}
        if session is not None:
            body["session"] = session
        if account is not None:
            body["account"] = account
        return self._request("POST", "/disconnect", body)


def _seconds(values):
    try:
        return float(values[0])
    except (TypeError, ValueError, IndexError):
        return None
