"""presence.client.PresenceClient, the backends' client, against a running
server (a twistd process with a real Redis) for publish, presence,
account_presence and disconnect, and their errors: refusals carry the
server's status and body, 503 is PresenceUnavailable with Retry-After, and
calls are bounded by the client's timeout whatever the server does.

issue_ticket and its refusals are tested in tests/test_http_api.py."""

import os

import websockets
from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from presence.client import (
    PresenceAPIError,
    PresenceClient,
    PresenceConnectionError,
    PresenceError,
    PresenceTimeout,
    PresenceUnavailable,
)

from .helpers.cluster import KEY, Client, ClusterTestCase
from .helpers.processes import free_port
from .helpers.waiting import run, until, wait


class RunningServerTests(ClusterTestCase):
    nodes_count = 1

    def setUp(self):
        d = super().setUp()

        def ready(_):
            self.api = self.nodes[0]["api"]
        return d.addCallback(ready)

    def test_publish_to_a_channel_and_to_channels_except_a_session(self):
        node, = self.nodes

        async def scenario():
            ann = await self.connect(node, "ann")
            bob = await self.connect(node, "bob")
            for client in (ann, bob):
                await self.subscribe(client, "room:1")
            self.assertEqual(await wait(self.api.publish("room:1", {"n": 1})),
                             {"channels": 1, "nodes": 1, "duplicate": False})
            for client in (ann, bob):
                self.assertEqual((await client.next_of("message"))["data"], {"n": 1})
            answer = await wait(self.api.publish(["room:1", "room:2"], "two",
                                                 exclude=[ann.welcome["session"]]))
            self.assertEqual(answer, {"channels": 2, "nodes": 1, "duplicate": False})
            self.assertEqual((await bob.next_of("message", 2))["data"], "two")
            # A marker after it: Ann, excluded, never got "two".
            await wait(self.api.publish("room:1", "marker"))
            self.assertEqual((await ann.next_of("message", 2))["data"], "marker")
            await self.close_clients()

        return run(scenario())

    def test_presence_and_account_presence(self):
        node, = self.nodes

        async def scenario():
            self.assertEqual(await wait(self.api.presence()), [])
            ann = await self.connect(node, "ann")
            odd = await self.connect(node, "a/b c?d")
            self.assertEqual(await wait(self.api.presence()), ["a/b c?d", "ann"])
            answer = await wait(self.api.account_presence("ann"))
            self.assertEqual((answer["account"], answer["online"]), ("ann", True))
            session, = answer["sessions"]
            self.assertEqual((session["session"], session["node"], session["protocol"]),
                             (ann.welcome["session"], node_id(answer), "websocket"))
            # The account is quoted into the path.
            answer = await wait(self.api.account_presence("a/b c?d"))
            self.assertEqual((answer["account"], answer["online"]), ("a/b c?d", True))
            self.assertEqual(await wait(self.api.account_presence("nobody")),
                             {"account": "nobody", "online": False, "info": None,
                              "sessions": []})
            await odd.close()
            await ann.close()

        return run(scenario())

    def test_disconnect_a_session_or_an_account_with_a_code_and_reason(self):
        node, = self.nodes

        async def scenario():
            first = await self.connect(node, "ann")
            second = await self.connect(node, "ann")
            other = await self.connect(node, "bob")
            self.assertEqual(await wait(self.api.disconnect(session=first.welcome["session"],
                                                            code=4001, reason="one")),
                             {"requested": True})
            await until(lambda: first.reader.done(), message="first closed")
            self.assertEqual((first.ws.close_code, first.ws.close_reason), (4001, "one"))
            self.assertFalse(second.reader.done())
            await wait(self.api.disconnect(account="ann"))
            await until(lambda: second.reader.done(), message="second closed")
            self.assertEqual(second.ws.close_code, 1000)
            self.assertFalse(other.reader.done())
            await other.close()

        return run(scenario())

    @defer.inlineCallbacks
    def assertRefused(self, status, kind, deferred):
        with self.assertRaises(PresenceAPIError) as raised:
            yield deferred
        error = raised.exception
        self.assertEqual((error.status, error.kind), (status, kind))
        self.assertEqual(error.body["error"], kind)
        self.assertIsInstance(error.body["message"], str)
        self.assertIn(error.body["message"], str(error))
        return error

    @defer.inlineCallbacks
    def test_refusals_raise_presence_api_error_with_the_servers_body(self):
        yield self.assertRefused(400, "bad_request", self.api.publish("x" * 257, 1))
        yield self.assertRefused(400, "bad_request", self.api.publish([], 1))
        yield self.assertRefused(400, "bad_request", self.api.publish("a room", 1))
        yield self.assertRefused(400, "bad_request", self.api.publish(["ok", "tab\there"], 1))
        yield self.assertRefused(400, "bad_request", self.api.publish("room", "\ud800"))
        yield self.assertRefused(400, "bad_request", self.api.disconnect())
        yield self.assertRefused(400, "bad_request",
                                 self.api.disconnect(session="s", account="a"))
        yield self.assertRefused(400, "bad_request", self.api.disconnect(account="a", code=1005))
        yield self.assertRefused(400, "bad_request",
                                 self.api.disconnect(account="a", reason="x" * 124))
        wrong = PresenceClient(self.api.url, "not-" + KEY, timeout=5.0, pool=self.pool)
        for call in (wrong.publish("room:1", 1), wrong.presence(),
                     wrong.account_presence("ann"), wrong.disconnect(account="ann")):
            error = yield self.assertRefused(401, "unauthorized", call)
            self.assertNotIsInstance(error, PresenceUnavailable)

    @defer.inlineCallbacks
    def test_with_redis_stopped_every_call_is_presence_unavailable_with_retry_after(self):
        yield self.redis.stop_process()
        for call in (self.api.publish("room:1", 1), self.api.presence(),
                     self.api.account_presence("ann"), self.api.disconnect(account="ann")):
            error = yield self.assertRefused(503, "unavailable", call)
            self.assertIsInstance(error, PresenceUnavailable)
            self.assertEqual(error.retry_after, 1.0)


def node_id(answer):
    return answer["sessions"][0]["node"]


class Silent(protocol.Protocol):
    """Accepts, and answers nothing (or only a head: ``head`` bytes)."""

    head = b""

    def connectionMade(self):
        self.factory.connections.append(self)
        self.closed = defer.Deferred()
        if self.head:
            self.transport.write(self.head)

    def connectionLost(self, reason):
        self.closed.callback(None)


class UnreachableTests(TestCase):
    timeout = 30  # a regression here hangs rather than fails
    def setUp(self):
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def serve(self, head=b"", with_connections=False):
        factory = protocol.Factory.forProtocol(type("Server", (Silent,), {"head": head}))
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")

        @defer.inlineCallbacks
        def close():
            yield port.stopListening()
            for server in factory.connections:
                server.transport.abortConnection()
        self.addCleanup(close)
        url = "http://127.0.0.1:%d" % port.getHost().port
        return (url, factory.connections) if with_connections else url

    def client(self, url, timeout=0.5):
        return PresenceClient(url, KEY, timeout=timeout, pool=self.pool)

    @defer.inlineCallbacks
    def assertTimesOut(self, client):
        started = reactor.seconds()
        with self.assertRaises(PresenceTimeout):
            yield client.presence()
        self.assertLess(reactor.seconds() - started, client.timeout + 1.0)

    def test_a_server_that_never_answers_is_presence_timeout(self):
        return self.assertTimesOut(self.client(self.serve()))

    @defer.inlineCallbacks
    def test_a_server_that_stalls_in_the_body_is_presence_timeout_too(self):
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{\"accounts\": [")
        url, connections = self.serve(head, with_connections=True)
        yield self.assertTimesOut(self.client(url))
        # The timed-out call closed its connection: the stalled server sees
        # it go (cleanup would abort it otherwise, and this would hang).
        yield connections[0].closed

    @defer.inlineCallbacks
    def test_nothing_listening_is_presence_connection_error(self):
        with self.assertRaises(PresenceConnectionError) as raised:
            yield self.client("http://127.0.0.1:%d" % free_port(), timeout=5.0).presence()
        self.assertIsInstance(raised.exception, PresenceError)


def sync_example(api_url, api_key):
    """The standard-library client of docs/clients.md, as a namespace."""
    path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "clients.md")
    with open(path, encoding="utf-8") as doc:
        text = doc.read()
    block = text.split("<!-- sync-example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(block, "docs/clients.md", "exec"), namespace)
    namespace.update(PRESENCE_API=api_url, API_KEY=api_key)
    return namespace


class SyncExampleTests(ClusterTestCase):
    """The documented plain-HTTP example works as written (its blocking
    calls are fine here: the server is another process)."""

    nodes_count = 1

    def test_the_standard_library_example_in_the_docs_works(self):
        node, = self.nodes
        api = sync_example(node["api"].url, KEY)

        async def scenario():
            ticket = api["issue_ticket"]("ann", channels=["room:*"])["ticket"]
            ws = await websockets.connect("ws://127.0.0.1:%d/?ticket=%s" % (node["client"], ticket))
            client = Client(ws)
            await client.next_of("welcome")
            await self.subscribe(client, "room:1")
            self.assertEqual(api["publish"]("room:1", "plain", publish_id="plain-1"),
                             {"channels": 1, "nodes": 1, "duplicate": False})
            self.assertEqual((await client.next_of("message"))["data"], "plain")
            # Retried with its id: not published again.
            self.assertEqual(api["publish"]("room:1", "plain", publish_id="plain-1"),
                             {"channels": 1, "nodes": 1, "duplicate": True})
            self.assertEqual(api["publish"]("room:1", "marker")["duplicate"], False)
            self.assertEqual((await client.next_of("message", 2))["data"], "marker")
            self.assertEqual(api["online_accounts"](), ["ann"])
            self.assertTrue(api["account_presence"]("ann")["online"])
            with self.assertRaises(api["PresenceError"]) as raised:
                api["publish"]("", 1)
            self.assertEqual((raised.exception.status, raised.exception.body["error"]),
                             (400, "bad_request"))
            self.assertEqual(api["disconnect"]("ann", reason="bye"), {"requested": True})
            await until(lambda: client.reader.done(), message="closed")
            self.assertEqual((ws.close_code, ws.close_reason), (4000, "bye"))
            api["API_KEY"] = "wrong"
            with self.assertRaises(api["PresenceError"]) as raised:
                api["online_accounts"]()
            self.assertEqual(raised.exception.status, 401)

        return run(scenario())
