"""The browser client's and the demo's routes on the HTTP API: ``GET
/presence.js`` for anyone, ``GET /demo`` and ``/demo/config`` only with
--demo, and what the demo-only key may do (tickets for demo accounts on
demo channels; nothing else). The pages themselves run in Chromium in
tests/test_browser_client.py."""

import json
import os
from unittest.mock import patch

import treq
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from presence.app.demo import DEMO_CHANNELS, Demo, DemoBackend
from presence.app.options import Options
from presence.web.api import STATIC

from .helpers.api import API_KEY, APITestCase
from .helpers.redis import RedisTestCase
from .helpers.waiting import run, until


class FakePort:
    def __init__(self, number):
        self.number = number

    def getHost(self):
        return type("Address", (), {"port": self.number})()


class BrowserClientRouteTests(APITestCase):
    @defer.inlineCallbacks
    def test_presence_js_is_served_to_anyone_as_a_module_any_origin_may_import(self):
        response = yield treq.get(self.url + "/presence.js", pool=self.pool, timeout=10)
        body = yield treq.content(response)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/javascript; charset=utf-8"])
        self.assertEqual(response.headers.getRawHeaders(b"access-control-allow-origin"), [b"*"])
        with open(os.path.join(STATIC, "presence.js"), "rb") as source:
            self.assertEqual(body, source.read())
        self.assertIn(b"export class Presence", body)

    def test_without_demo_the_demo_routes_are_404(self):
        return defer.gatherResults([
            self.assertStatus(404, "not_found", self.request("GET", "/demo", token=None)),
            self.assertStatus(404, "not_found", self.request("GET", "/demo/config", token=None)),
        ])


class DemoKeyTests(APITestCase):
    def setUp(self):
        d = super().setUp()

        def serve(_):
            self.demo = Demo()
            self.demo.set_client_ports([("haproxy:tcp:9000", FakePort(9000)),
                                        ("ssl:8443:privateKey=k.pem", FakePort(8443))])
            self.demo_url = self.serve_api(demo=self.demo)
        return d.addCallback(serve)

    def test_the_key_is_marked_and_new_for_every_demo(self):
        self.assertTrue(self.demo.key.startswith("DEMO-ONLY-"))
        self.assertNotEqual(self.demo.key, Demo().key)

    @defer.inlineCallbacks
    def test_the_page_and_its_config_are_served_without_a_key(self):
        response = yield treq.get(self.demo_url + "/demo", pool=self.pool, timeout=10)
        page = yield treq.content(response)
        self.assertEqual(response.code, 200)
        self.assertIn(b'from "/presence.js"', page)
        status, headers, config = yield self.request("GET", "/demo/config", token=None,
                                                     url=self.demo_url)
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"cache-control"], [b"no-store"])
        # The first port a browser reaches directly: not the PROXY-protocol one.
        self.assertEqual(config, {"key": self.demo.key, "scheme": "wss", "port": 8443,
                                  "channel": "demo:lobby"})

    @defer.inlineCallbacks
    def test_the_demo_key_gets_tickets_for_demo_accounts_on_demo_channels(self):
        status, _, body = yield self.post_ticket(
            {"account": "demo-ann", "attributes": {"name": "Ann"}}, token=self.demo.key,
            url=self.demo_url)
        self.assertEqual(status, 201, body)
        ticket = yield self.tickets.redeem(body["ticket"])
        self.assertEqual((ticket.account, ticket.attributes, list(ticket.channels), ticket.ip),
                         ("demo-ann", {"name": "Ann"}, DEMO_CHANNELS, "127.0.0.1"))

    @defer.inlineCallbacks
    def test_the_demo_key_may_not_choose_another_account_channels_or_ip(self):
        for body in ({"account": "user-42"}, {"account": "demo-ann", "channels": ["*"]},
                     {"account": "demo-ann", "ip": "192.0.2.1"}):
            yield self.assertStatus(403, "forbidden", self.post_ticket(
                body, token=self.demo.key, url=self.demo_url))

    @defer.inlineCallbacks
    def test_the_demo_key_may_not_publish_read_presence_or_disconnect(self):
        for method, path, body in (("POST", "/publish", {"channel": "demo:lobby", "data": 1}),
                                   ("GET", "/presence", b""),
                                   ("GET", "/presence/demo-ann", b""),
                                   ("POST", "/disconnect", {"account": "demo-ann"})):
            yield self.assertStatus(403, "forbidden", self.request(
                method, path, body, token=self.demo.key, url=self.demo_url))

    @defer.inlineCallbacks
    def test_the_demo_key_is_worth_nothing_on_an_api_without_the_demo(self):
        yield self.assertStatus(401, "unauthorized", self.post_ticket(
            {"account": "demo-ann"}, token=self.demo.key))
        # The backends' key still works beside the demo key.
        status, _, _ = yield self.post_ticket({"account": "user-42"}, token=API_KEY,
                                              url=self.demo_url)
        self.assertEqual(status, 201)


class DemoOptionTests(TestCase):
    def test_demo_is_off_unless_asked_for(self):
        options = Options()
        options.parseOptions([])
        self.assertFalse(options["demo"])
        options = Options()
        options.parseOptions(["--demo"])
        self.assertTrue(options["demo"])


class FakeHub:
    """What the demo backend uses of a Hub: the stream's key, the node's id
    and publish (recorded)."""

    node_id = "node-alive"

    def __init__(self):
        self.keys = type("Keys", (), {"stream": "presence-test:stream"})()
        self.published = []

    def publish(self, channels, data, exclude=()):
        self.published.append((channels, data))
        return defer.succeed(1)


class DemoBackendTests(RedisTestCase):

    def add(self, text, channel="demo:lobby"):
        return self.engine.execute("XADD", "presence-test:stream", "*", "channel", channel,
                                   "account", "demo-ada", "session", "s1",
                                   "data", json.dumps({"text": text}))

    @defer.inlineCallbacks
    def test_messages_a_dead_node_read_and_never_acknowledged_are_claimed(self):
        yield self.engine.execute("XGROUP", "CREATE", "presence-test:stream", DemoBackend.group,
                                  "$", "MKSTREAM")
        yield self.add("read by a node that then died")
        yield self.add("too old to relay")
        # The dead node's read: both entries are now pending for it.
        yield self.engine.execute("XREADGROUP", "GROUP", DemoBackend.group, "node-dead",
                                  "STREAMS", "presence-test:stream", ">")
        hub = FakeHub()
        backend = DemoBackend(self.redis_url, hub, reactor, block=0.1, claim_idle=0.2)
        with patch("presence.app.demo.MAX_RELAY_AGE", 3600.0):
            backend.start()
            yield run(until(lambda: backend.reclaimed == 2))
        yield self.add("read normally")
        yield run(until(lambda: len(hub.published) == 3))
        yield backend.stop()
        texts = [data["text"] for _, data in hub.published]
        self.assertEqual(texts[2], "read normally")
        self.assertEqual(sorted(texts[:2]),
                         ["read by a node that then died", "too old to relay"])
        pending = yield self.engine.execute("XPENDING", "presence-test:stream",
                                            DemoBackend.group)
        self.assertEqual(pending[0], 0)

    @defer.inlineCallbacks
    def test_claimed_messages_too_old_for_chat_are_acknowledged_not_relayed(self):
        yield self.engine.execute("XGROUP", "CREATE", "presence-test:stream", DemoBackend.group,
                                  "$", "MKSTREAM")
        yield self.add("stale")
        yield self.engine.execute("XREADGROUP", "GROUP", DemoBackend.group, "node-dead",
                                  "STREAMS", "presence-test:stream", ">")
        hub = FakeHub()
        backend = DemoBackend(self.redis_url, hub, reactor, block=0.1, claim_idle=0.2)
        with patch("presence.app.demo.MAX_RELAY_AGE", -1.0):
            backend.start()

            @defer.inlineCallbacks
            def nothing_pending():
                pending = yield self.engine.execute("XPENDING", "presence-test:stream",
                                                    DemoBackend.group)
                return pending[0] == 0
            yield run(until(nothing_pending))
        yield backend.stop()
        self.assertEqual(hub.published, [])
        self.assertEqual(backend.reclaimed, 0)

