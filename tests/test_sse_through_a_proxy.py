"""Through a real proxy that breaks WebSocket: Debian's nginx as a stock
reverse proxy (``proxy_pass`` only: no ``Upgrade`` forwarded, buffering on,
HTTP/1.0 to the upstream; tests/helpers/nginx.py) in front of a twistd node
with one real Redis. WebSocket cannot get through it; SSE can, with its
POSTs: a raw client, and the browser client (presence.js) in Chromium,
which falls back to SSE by itself. Without the proxy the same page stays on
WebSocket."""

import json
import time

import websockets
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout
from twisted.internet import defer

from presence.client import PresenceClient

from .helpers.browser import browse
from .helpers.nginx import start_nginx
from .helpers.processes import NodeProcessesTestCase, free_port, start_node_process
from .helpers.sse import SSEStream, post
from .helpers.waiting import run, until, wait

KEY = "proxy-test-key"


class ThroughAProxyTestCase(NodeProcessesTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.client_port, self.api_port = free_port(), free_port()
        self.api_url = "http://127.0.0.1:%d" % self.api_port
        self.api = PresenceClient(self.api_url, KEY, timeout=5.0, pool=self.pool)
        self.process = yield run(start_node_process(
            self, self.redis_url, self.client_port, self.api_port, ["--demo"],
            {"PRESENCE_API_KEY": KEY}))
        self.proxy_port = yield run(start_nginx(self, self.client_port))

    async def ticket(self, account, channels=("room:*",)):
        return (await wait(self.api.issue_ticket(account, channels=list(channels))))["ticket"]


class RawClientTests(ThroughAProxyTestCase):
    def test_websocket_does_not_get_through_the_proxy(self):
        async def scenario():
            ticket = await self.ticket("ann")
            with self.assertRaises(websockets.InvalidStatus) as refused:
                await websockets.connect("ws://127.0.0.1:%d/?ticket=%s" % (self.proxy_port,
                                                                          ticket))
            # nginx dropped the Upgrade: the node saw a plain GET and said why.
            self.assertEqual(refused.exception.response.status_code, 426)
        return run(scenario())

    def test_an_sse_client_gets_its_welcome_subscribes_by_post_and_receives_a_publish(self):
        async def scenario():
            ticket = await self.ticket("ann")
            stream = await SSEStream.open(self.proxy_port, "/sse?ticket=" + ticket)
            self.addCleanup(stream.close)
            self.assertTrue(stream.status.startswith(b"HTTP/1.1 200"), stream.status)
            self.assertEqual(stream.fields["content-type"], "text/event-stream")
            welcome = await stream.next_of("welcome")
            self.assertEqual(welcome["account"], "ann")
            status, _ = await post(self.proxy_port, welcome["send"],
                                   {"type": "subscribe", "channel": "room:1"})
            self.assertTrue(status.startswith(b"HTTP/1.1 202"), status)
            await stream.next_of("subscribed")
            # The node shows it as an SSE session.
            sessions = (await wait(self.api.account_presence("ann")))["sessions"]
            self.assertEqual([s.get("protocol") for s in sessions], ["sse"])
            started = time.monotonic()
            await wait(self.api.publish("room:1", {"text": "through nginx"}))
            message = await stream.next_of("message", timeout=1.0)
            self.assertLess(time.monotonic() - started, 1.0)
            self.assertEqual(message["data"], {"text": "through nginx"})
            # A publish by POST reaches the backends' stream, answered on the stream.
            await post(self.proxy_port, welcome["send"],
                       {"type": "publish", "channel": "room:1", "data": {"n": 1}})
            self.assertEqual((await stream.next_of("published"))["channel"], "room:1")
            # A heartbeat-independent round trip: a ping POSTed, its pong on the stream.
            await post(self.proxy_port, welcome["send"], {"type": "ping", "id": "x"})
            self.assertEqual((await stream.next_of("pong"))["id"], "x")
            # A wrong secret through the proxy: 404, nothing delivered.
            status, body = await post(self.proxy_port, welcome["send"][:-3] + "abc",
                                      {"type": "subscribe", "channel": "room:2"})
            self.assertTrue(status.startswith(b"HTTP/1.1 404"), status)
            # Closed by the server: an event: close, then the response ends.
            await wait(self.api.disconnect(account="ann", code=4000, reason="bye"))
            close = await stream.next_of("close")
            self.assertEqual((close["code"], close["reason"]), (4000, "bye"))
            self.assertEqual(stream.events[-1][0], "close")
            with self.assertRaises(EOFError):
                await stream.next_event()
        return run(scenario())


def js(value):
    return json.dumps(value)


class BrowserTests(ThroughAProxyTestCase):
    def browse(self, scenario):
        return browse(scenario)

    async def open_demo(self, context, account, ws=None):
        page = await context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        self.addCleanup(lambda: self.assertEqual(errors, []))
        query = "account=%s" % account + ("&ws=%s" % ws if ws else "")
        await page.goto("%s/demo?%s" % (self.api_url, query))
        await self.until(page, "window.demo && window.demo.presence")
        return page

    async def member(self, page, account):
        """Once ``account`` is a member of the demo channel, as the page's
        client asks (members, polled: the demo's own list of who is online
        misses itself when its members answer came before its own record
        was written)."""
        await until(lambda: page.evaluate(
            "async (account) => (await window.demo.presence.members('demo:lobby'))"
            ".some((m) => m.account === account)", account), 15, account + " a member",
            0.1, (PlaywrightError,))

    async def until(self, page, expression, timeout=15000):
        try:
            await page.wait_for_function(expression, timeout=timeout)
        except PlaywrightTimeout:
            states = await page.evaluate("JSON.stringify(window.demo && window.demo.states)")
            raise AssertionError("not within %d ms: %s\nstates: %s"
                                 % (timeout, expression, states)) from None

    def test_through_the_proxy_the_browser_client_falls_back_to_sse_by_itself(self):
        async def scenario(context):
            proxied = "ws://127.0.0.1:%d/" % self.proxy_port
            page = await self.open_demo(context, "demo-ann", ws=proxied)
            await self.until(page, "window.demo.presence.state.state === 'open' && "
                                   "window.demo.presence.transport === 'sse'")
            # Subscribed (with presence) over SSE: a member of the channel.
            await self.member(page, "demo-ann")
            sessions = (await wait(self.api.account_presence("demo-ann")))["sessions"]
            self.assertEqual([s.get("protocol") for s in sessions], ["sse"])
            # A backend's publish reaches it.
            await wait(self.api.publish("demo:lobby", {"from": "backend", "text": "hi ann"}))
            await self.until(page, "window.demo.messages.some(m => m.text === 'hi ann')")
            # Its own publish goes to the backends (the demo backend relays
            # it to the channel, so it comes back).
            await page.fill("#text", "hello from sse")
            await page.press("#text", "Enter")
            await self.until(page, "window.demo.messages.some(m => m.text === 'hello from sse' "
                                   "&& m.from === 'demo-ann')")
            # An application-level ping: its pong comes back on the stream.
            rtt = await page.evaluate("window.demo.presence.ping()")
            self.assertLess(rtt, 1000)
            # It stays on SSE for the page's life; past wsRetryAfter, the next
            # reconnect tries WebSocket first again (which fails here again).
            await page.evaluate("""() => {
                const presence = window.demo.presence;
                window.transports = [];
                presence.on("transport", (t) => window.transports.push(t));
                Object.assign(presence.options, {minDelay: 100, maxDelay: 200, wsRetryAfter: 0});
            }""")
            first = await page.evaluate("window.demo.presence.session")
            tickets = await page.evaluate("window.demo.tickets")
            await wait(self.api.disconnect(session=first, code=1011, reason="again"))
            await self.until(page, "window.demo.presence.state.state === 'open' && "
                                   "window.demo.presence.session !== %s" % js(first))
            self.assertEqual(await page.evaluate("window.transports"), ["websocket", "sse"])
            self.assertEqual(await page.evaluate("window.demo.presence.transport"), "sse")
            # Back over SSE with the last welcome's resume token: no ticket asked for.
            self.assertEqual(await page.evaluate("window.demo.tickets"), tickets)
            # The server closes it (4000: the client does not reconnect).
            await wait(self.api.disconnect(account="demo-ann", code=4000, reason="bye"))
            await self.until(page, "window.demo.presence.state.state === 'closed' && "
                                   "window.demo.presence.state.code === 4000")
            self.assertEqual(await page.evaluate("window.demo.presence.state.reason"), "bye")
        return run(self.browse(scenario))

    def test_without_the_proxy_the_same_page_stays_on_websocket(self):
        async def scenario(context):
            direct = "ws://127.0.0.1:%d/" % self.client_port
            page = await self.open_demo(context, "demo-bob", ws=direct)
            await self.until(page, "window.demo.presence.state.state === 'open'")
            await self.member(page, "demo-bob")
            self.assertEqual(await page.evaluate("window.demo.presence.transport"), "websocket")
            sessions = (await wait(self.api.account_presence("demo-bob")))["sessions"]
            self.assertEqual([s.get("protocol") for s in sessions], ["websocket"])
            await wait(self.api.publish("demo:lobby", {"from": "backend", "text": "hi bob"}))
            await self.until(page, "window.demo.messages.some(m => m.text === 'hi bob')")
            self.assertEqual(await page.evaluate("window.demo.presence.transport"), "websocket")
            # transports sets the order: SSE first, where both would work.
            transport = await page.evaluate("""async (url) => {
                const { Presence } = await import("/presence.js");
                const config = await (await fetch("/demo/config")).json();
                const getTicket = async () => (await (await fetch("/tickets", {
                    method: "POST", body: JSON.stringify({ account: "demo-cid" }),
                    headers: { Authorization: "Bearer " + config.key,
                               "Content-Type": "application/json" },
                })).json()).ticket;
                const other = new Presence({ url, getTicket, transports: ["sse", "websocket"] });
                await new Promise((resolve) => { other.on("welcome", resolve); other.connect(); });
                const transport = other.transport;
                other.close();
                return transport;
            }""", direct)
            self.assertEqual(transport, "sse")
        return run(self.browse(scenario))

    def test_a_websocket_that_opens_but_brings_no_welcome_falls_back_after_connect_timeout(self):
        async def scenario(context):
            page = await self.open_demo(context, "demo-dan",
                                        ws="ws://127.0.0.1:%d/" % self.client_port)
            await self.until(page, "window.demo.presence.state.state === 'open'")
            # A WebSocket that opens and then says nothing (a proxy holding
            # everything back): after connectTimeout, SSE.
            transport = await page.evaluate("""async (url) => {
                const { Presence } = await import("/presence.js");
                class Silent {
                    constructor() { setTimeout(() => this.onopen && this.onopen(), 10); }
                    send() {}
                    close() {}
                }
                const config = await (await fetch("/demo/config")).json();
                const getTicket = async () => (await (await fetch("/tickets", {
                    method: "POST", body: JSON.stringify({ account: "demo-eve" }),
                    headers: { Authorization: "Bearer " + config.key,
                               "Content-Type": "application/json" },
                })).json()).ticket;
                const other = new Presence({ url, getTicket, WebSocket: Silent,
                                             connectTimeout: 1000 });
                const seen = [];
                other.on("transport", (t) => seen.push(t));
                await new Promise((resolve) => { other.on("welcome", resolve); other.connect(); });
                const state = [seen, other.transport, other.state.state];
                other.close();
                return state;
            }""", "ws://127.0.0.1:%d/" % self.client_port)
            self.assertEqual(transport, [["websocket", "sse"], "sse", "open"])
        return run(self.browse(scenario))

    def test_closing_over_sse_is_a_clean_close_the_channel_hears_of(self):
        async def scenario(context):
            observer = await self.open_demo(context, "demo-obs",
                                            ws="ws://127.0.0.1:%d/" % self.client_port)
            await self.member(observer, "demo-obs")
            await observer.evaluate("""() => {
                window.leaves = [];
                window.demo.presence.on("leave", (event) => window.leaves.push(event));
            }""")
            page = await self.open_demo(context, "demo-sse",
                                        ws="ws://127.0.0.1:%d/" % self.proxy_port)
            await self.until(page, "window.demo.presence.transport === 'sse'")
            await self.member(page, "demo-sse")
            await page.evaluate("window.demo.presence.close()")
            await self.until(observer, "window.leaves.some(e => e.account === 'demo-sse')")
            leave = await observer.evaluate(
                "window.leaves.find(e => e.account === 'demo-sse')")
            self.assertEqual(leave["ended"], {"code": 1000, "reason": "closed by the client",
                                              "initiator": "client", "clean": True})
            # A tab closed over SSE says goodbye by beacon: 1001, as a
            # browser closes a WebSocket, not a client that vanished.
            tab = await self.open_demo(context, "demo-tab",
                                       ws="ws://127.0.0.1:%d/" % self.proxy_port)
            await self.until(tab, "window.demo.presence.transport === 'sse'")
            await self.member(tab, "demo-tab")
            await tab.close()
            await self.until(observer, "window.leaves.some(e => e.account === 'demo-tab')")
            leave = await observer.evaluate(
                "window.leaves.find(e => e.account === 'demo-tab')")
            self.assertEqual(leave["ended"], {"code": 1001, "reason": "page closed",
                                              "initiator": "client", "clean": True})
        return run(self.browse(scenario))
