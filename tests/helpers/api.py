"""The HTTP API (presence.web.api's PresenceAPI) on a real loopback port, over
a real Redis, with OAuth tokens checked by a small RFC 7662 introspection
server on another port; asked with treq and with presence.client."""

import json

import treq
from klein import Klein
from twisted.internet import defer, reactor
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from presence.app.oauth import Introspector
from presence.client import PresenceClient
from presence.net.stats import ServerStats
from presence.web.api import PresenceAPI
from presence.wire.clientip import TrustedProxies

from .redis import RedisTestCase
from .waiting import run, until, wait

__all__ = ["API_KEY", "CLIENT_ID", "CLIENT_SECRET", "TOKENS", "IntrospectionServer",
           "APITestCase", "json_headers"]


API_KEY = "backend-key"
CLIENT_ID = "presence"
CLIENT_SECRET = "introspection-secret"

#: What the introspection server knows: token -> RFC 7662 answer.
TOKENS = {
    "good": {"active": True, "sub": "user-7", "client_id": "web-app",
             "scope": "presence", "token_type": "Bearer"},
    "no-subject": {"active": True, "client_id": "web-app"},
}


class IntrospectionServer:
    """An RFC 7662 endpoint: POST /introspect with the client's credentials
    in HTTP Basic and the token in the form field ``token``."""

    app = Klein()

    def __init__(self, client_id, client_secret, tokens):
        self.client_id = client_id.encode("utf-8")
        self.client_secret = client_secret.encode("utf-8")
        self.tokens = tokens
        #: The tokens asked about, in order.
        self.asked = []

    @app.route("/introspect", methods=["POST"])
    def introspect(self, request):
        request.setHeader(b"content-type", b"application/json")
        if (request.getUser(), request.getPassword()) != (self.client_id, self.client_secret):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="introspection"')
            return json.dumps({"error": "invalid_client"}).encode("utf-8")
        token = request.args.get(b"token", [b""])[0].decode("utf-8")
        self.asked.append(token)
        return json.dumps(self.tokens.get(token, {"active": False})).encode("utf-8")


def tracked(site):
    """``site``, knowing its open connections (``site.connections``), so
    that a test can end with none left (trial reports a dirty reactor
    otherwise)."""
    site.connections = set()
    build = site.buildProtocol

    def buildProtocol(addr):
        protocol = build(addr)
        site.connections.add(protocol)
        lost = protocol.connectionLost

        def connectionLost(reason):
            site.connections.discard(protocol)
            return lost(reason)

        protocol.connectionLost = connectionLost
        return protocol

    site.buildProtocol = buildProtocol
    return site


def json_headers(response):
    return {name: response.headers.getRawHeaders(name) for name in
            (b"content-type", b"cache-control", b"www-authenticate", b"retry-after", b"allow")}


class APITestCase(RedisTestCase):
    """The API of these tests: the backends' key ``backend-key``, OAuth
    tokens introspected at a local server, 127.0.0.1 a trusted proxy."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        #: The node's counters the API's Site counts its refusals in.
        self.stats = ServerStats()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.introspection = IntrospectionServer(CLIENT_ID, CLIENT_SECRET, TOKENS)
        self.introspection_port, introspection_url = self.serve(
            self.introspection.app.resource())
        self.introspector = Introspector(introspection_url + "/introspect", CLIENT_ID,
                                         CLIENT_SECRET, timeout=2.0, pool=self.pool)
        self.url = self.serve_api(trusted_proxies=TrustedProxies(["127.0.0.1/32"]))
        self.client = PresenceClient(self.url, API_KEY, timeout=5.0, pool=self.pool)

    def serve(self, resource):
        """Listen on a loopback port: ``(port, base URL)``; ``resource``: a
        resource, or a Site."""
        site = tracked(resource if isinstance(resource, Site) else Site(resource))
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self._close, port, site)
        return port, "http://127.0.0.1:%d" % port.getHost().port

    def serve_api(self, **options):
        """Another PresenceAPI on this test's ticket store: its base URL."""
        options.setdefault("api_key", API_KEY)
        options.setdefault("introspector", self.introspector)
        api = PresenceAPI(self.tickets, **options)
        return self.serve(api.site(self.stats))[1]

    async def _closed(self, port, site):
        await wait(defer.maybeDeferred(port.stopListening))
        try:
            # Let the connections finish what they were doing...
            await until(lambda: not site.connections, 2, "the API's connections finished")
        except AssertionError:
            # ...or cut them, and see them go.
            for protocol in list(site.connections):
                protocol.transport.abortConnection()
            await until(lambda: not site.connections, 5, "the API's connections closed")

    def _close(self, port, site):
        return run(self._closed(port, site))

    @defer.inlineCallbacks
    def request(self, method, path, body=b"", token=API_KEY, headers=None, url=None):
        """``(status, headers, decoded JSON body)``; ``body``: bytes as sent,
        or anything else sent as JSON; ``token``: the Bearer token, or None."""
        sent = {b"content-type": [b"application/json"]}
        if token is not None:
            sent[b"authorization"] = [b"Bearer " + token.encode("utf-8")]
        sent.update(headers or {})
        if not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
        response = yield treq.request(method, (url or self.url) + path, data=body or None,
                                      headers=sent, pool=self.pool, timeout=10)
        content = yield treq.content(response)
        try:
            decoded = json.loads(content)
        except ValueError:
            decoded = content
        return response.code, json_headers(response), decoded

    def post_ticket(self, body, **options):
        return self.request("POST", "/tickets", body, **options)

    @defer.inlineCallbacks
    def assertStatus(self, expected_status, expected_kind, deferred):
        status, headers, body = yield deferred
        self.assertEqual((status, body.get("error") if isinstance(body, dict) else body),
                         (expected_status, expected_kind))
        self.assertIsInstance(body.get("message"), str)
        self.assertEqual(headers[b"content-type"], [b"application/json"])
        return status, headers, body
