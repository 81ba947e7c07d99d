"""The browser client (web/static/presence.js) in headless Chromium, through
the demo page (``twistd presence --demo``, ``GET /demo`` on the API port),
against real twistd processes sharing one real Redis.

Each page is its own demo "backend": it gets its tickets from ``POST
/tickets`` with the demo key, and exposes its state as ``window.demo``
(the Presence object, the tickets it asked for, its states, messages and
who is online). Waits are bounded polls (``page.wait_for_function``)."""

import json
import signal

from playwright.async_api import TimeoutError as PlaywrightTimeout
from playwright.async_api import async_playwright
from twisted.internet import defer

from presence.client import PresenceClient

from .helpers.browser import CHROMIUM, CHROMIUM_ARGS
from .helpers.processes import NodeProcessesTestCase, free_port, start_node_process
from .helpers.waiting import run, until, wait

KEY = "browser-test-key"
#: Reconnect quickly in these tests (the defaults are 1 s, doubling to 30 s).
FAST = ("Object.assign(window.demo.presence.options, "
        "{minDelay: 100, maxDelay: 500, pingTimeout: 1000, connectTimeout: 3000})")


def js(value):
    return json.dumps(value)


class BrowserClientTestCase(NodeProcessesTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        # Fixed ports: a restarted node comes back where the pages expect it.
        self.client_port, self.api_port = free_port(), free_port()
        self.api_url = "http://127.0.0.1:%d" % self.api_port
        self.api = PresenceClient(self.api_url, KEY, timeout=5.0, pool=self.pool)
        self.process = yield run(self.start_node())

    def start_node(self):
        return start_node_process(self, self.redis_url, self.client_port, self.api_port,
                                  ["--demo", "--close-timeout", "2"], {"PRESENCE_API_KEY": KEY})

    async def exited(self, process, timeout=30):
        await until(lambda: process.poll() is not None, timeout, "twistd stopped")
        process.communicate()

    async def browse(self, scenario):
        """Run ``scenario(browser)`` with a fresh headless Chromium."""
        async with async_playwright() as playwright:
            # launch() gives the browser a fresh temporary profile.
            browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS)
            try:
                await scenario(await browser.new_context())
            finally:
                await browser.close()

    async def open_demo(self, context, account):
        page = await context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        self.addCleanup(lambda: self.assertEqual(errors, []))
        await page.goto("%s/demo?account=%s" % (self.api_url, account))
        await self.until(page, "window.demo && window.demo.presence.state.state === 'open'")
        await page.evaluate(FAST)
        return page

    async def until(self, page, expression, timeout=15000):
        try:
            await page.wait_for_function(expression, timeout=timeout)
        except PlaywrightTimeout:
            states = await page.evaluate("JSON.stringify(window.demo && window.demo.states)")
            raise AssertionError("not within %d ms: %s\nstates: %s"
                                 % (timeout, expression, states)) from None

    async def sees_online(self, page, account):
        await self.until(page, "[...window.demo.online.values()].includes(%s)" % js(account))

    async def sees_offline(self, page, account):
        await self.until(page, "![...window.demo.online.values()].includes(%s)" % js(account))

    async def received(self, page, text):
        await self.until(page, "window.demo.messages.some(m => m.text === %s)" % js(text))

    async def say(self, page, text):
        await page.fill("#text", text)
        await page.press("#text", "Enter")


class DemoTests(BrowserClientTestCase):
    def test_two_pages_see_each_other_chat_reconnect_after_a_restart_and_see_a_tab_close(self):
        async def scenario(context):
            ann = await self.open_demo(context, "demo-ann")
            bob = await self.open_demo(context, "demo-bob")
            # Presence: Ann saw Bob join; Bob found Ann among the members.
            await self.sees_online(ann, "demo-bob")
            await self.sees_online(bob, "demo-ann")
            # A chat message: Bob's publish goes to the stream, the demo
            # backend relays it to the channel, both pages get it.
            await self.say(bob, "hello ann")
            for page in (ann, bob):
                await self.received(page, "hello ann")
            message = await ann.evaluate("window.demo.messages[0]")
            self.assertEqual((message["from"], message["text"]), ("demo-bob", "hello ann"))
            sessions = [await page.evaluate("window.demo.presence.session") for page in (ann, bob)]

            # The server restarts on the same ports, with the same Redis.
            self.process.terminate()
            await self.exited(self.process)
            for page in (ann, bob):
                await self.until(page, "window.demo.states.some(s => s.state === 'closed' "
                                       "&& s.code === 1001 && s.willRetry)")
            self.process = await self.start_node()
            for page, old in zip((ann, bob), sessions):
                await self.until(page, "window.demo.presence.state.state === 'open' && "
                                       "window.demo.presence.session !== %s" % js(old))
                # A fresh ticket for every attempt: one at first, then more.
                self.assertGreaterEqual(await page.evaluate("window.demo.tickets"), 2)
            # Subscriptions were restored: presence and messages flow again.
            await self.sees_online(ann, "demo-bob")
            await self.sees_online(bob, "demo-ann")
            await self.say(ann, "still here?")
            await self.received(bob, "still here?")
            await wait(self.api.publish("demo:lobby", {"from": "backend", "text": "from the API"}))
            for page in (ann, bob):
                await self.received(page, "from the API")

            # Bob's tab closes: Ann sees him go offline.
            await bob.close()
            await self.sees_offline(ann, "demo-bob")
            await self.until(ann, "document.getElementById('log').textContent"
                                  ".includes('demo-bob went offline')")

        return run(self.browse(scenario))


class ReconnectTests(BrowserClientTestCase):
    def test_a_close_code_that_means_retry_reconnects_and_one_that_means_stop_does_not(self):
        async def scenario(context):
            page = await self.open_demo(context, "demo-cid")
            first = await page.evaluate("window.demo.presence.session")
            # 1011: the server had a problem; the client comes back by itself.
            await wait(self.api.disconnect(session=first, code=1011, reason="try again"))
            await self.until(page, "window.demo.presence.state.state === 'open' && "
                                   "window.demo.presence.session !== %s" % js(first))
            self.assertEqual(await page.evaluate("window.demo.tickets"), 2)
            closed = await page.evaluate("window.demo.states.find(s => s.code === 1011)")
            self.assertEqual((closed["state"], closed["reason"], closed["willRetry"]),
                             ("closed", "try again", True))

            # 4000: kicked by the application; no reconnect.
            await wait(self.api.disconnect(account="demo-cid", code=4000, reason="kicked"))
            await self.until(page, "window.demo.presence.state.state === 'closed'")
            state = await page.evaluate("window.demo.presence.state")
            self.assertEqual((state["code"], state["reason"], state["willRetry"]),
                             (4000, "kicked", False))
            # A retry would have come within maxDelay (0.5 s): wait four times
            # that, and a wake-up event must not bring it back either.
            await page.evaluate("window.dispatchEvent(new Event('online'))")
            await page.wait_for_timeout(2000)
            self.assertEqual(await page.evaluate("window.demo.tickets"), 2)
            self.assertEqual(await page.evaluate("window.demo.presence.state.state"), "closed")
            self.assertEqual(await wait(self.api.presence()), [])
            # The application may connect again on purpose.
            await page.evaluate("window.demo.presence.connect()")
            await self.until(page, "window.demo.presence.state.state === 'open'")

        return run(self.browse(scenario))

    def test_a_wake_up_ping_notices_a_dead_connection_and_reconnects(self):
        async def scenario(context):
            page = await self.open_demo(context, "demo-dee")
            first = await page.evaluate("window.demo.presence.session")
            rtt = await page.evaluate("window.demo.presence.ping()")
            self.assertLess(rtt, 1000)
            # The node freezes: its sockets stay open but nothing answers.
            self.process.send_signal(signal.SIGSTOP)
            try:
                await page.evaluate("window.dispatchEvent(new Event('online'))")
                await self.until(page, "window.demo.states.some(s => s.state === 'closed' && "
                                       "s.reason === 'ping timeout' && s.willRetry)")
            finally:
                self.process.send_signal(signal.SIGCONT)
            await self.until(page, "window.demo.presence.state.state === 'open' && "
                                   "window.demo.presence.session !== %s" % js(first))

        return run(self.browse(scenario))


class ClientAPITests(BrowserClientTestCase):
    def test_members_publish_unsubscribe_and_a_refused_subscription(self):
        async def scenario(context):
            page = await self.open_demo(context, "demo-eve")
            result = await page.evaluate("""async () => {
                const presence = window.demo.presence;
                const out = {};
                out.members = await presence.members("demo:lobby");
                out.id = await presence.publish("demo:lobby", {note: "not chat"});
                // Demo tickets allow demo:* only.
                out.refused = await presence.subscribe("room:secret", () => {})
                    .then(() => "subscribed", (error) => error.message);
                out.kept = [...presence._channels.keys()];
                const got = [];
                await presence.subscribe("demo:other", (data) => got.push(data));
                out.unsubscribed = await presence.unsubscribe("demo:other");
                const idle = new presence.constructor({url: "ws://127.0.0.1:1/",
                                                       getTicket: async () => "x"});
                out.notConnected = await idle.publish("demo:lobby", 1)
                    .then(() => "sent", (error) => error.message);
                return out;
            }""")
            self.assertEqual(result["members"], [
                {"session": await page.evaluate("window.demo.presence.session"),
                 "account": "demo-eve"}])
            self.assertRegex(result["id"], r"^\d+-\d+$")
            self.assertEqual(result["refused"], "channel not allowed by the ticket")
            self.assertEqual(result["kept"], ["demo:lobby"])
            self.assertEqual(result["unsubscribed"], {"type": "unsubscribed",
                                                      "channel": "demo:other"})
            self.assertEqual(result["notConnected"], "not connected")
            # The publish that was not chat went to the stream, and the demo
            # backend left it there: the chat message after it is the first.
            await self.say(page, "chat")
            await self.received(page, "chat")
            self.assertEqual([m["text"] for m in await page.evaluate("window.demo.messages")],
                             ["chat"])

        return run(self.browse(scenario))
