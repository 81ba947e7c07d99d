"""The browser client's and the demo's routes on the HTTP API: ``GET
/presence.js`` for anyone, ``GET /demo`` and ``/demo/config`` only with
--demo, and what the demo-only key may do (tickets for demo accounts on
demo channels; nothing else). The pages themselves run in Chromium in
tests/test_browser_client.py."""

import os

import treq
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from presence.demo import DEMO_CHANNELS, Demo
from presence.options import Options
from web.api import STATIC

from .test_api import API_KEY, APITestCase


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
