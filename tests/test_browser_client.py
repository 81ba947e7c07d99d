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
from twisted.internet import defer, reactor

from presence.client import PresenceClient
from presence.redis.engine import RedisEngine

from .helpers.browser import browse
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

    #: More options for the node.
    node_arguments = ()

    def start_node(self):
        return start_node_process(self, self.redis_url, self.client_port, self.api_port,
                                  ["--demo", "--close-timeout", "2", *self.node_arguments],
                                  {"PRESENCE_API_KEY": KEY})

    async def exited(self, process, timeout=30):
        await until(lambda: process.poll() is not None, timeout, "twistd stopped")
        process.communicate()

    def browse(self, scenario):
        return browse(scenario)

    async def open_demo(self, context, account, name=None):
        page = await context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        self.addCleanup(lambda: self.assertEqual(errors, []))
        await page.goto("%s/demo?account=%s%s" % (self.api_url, account,
                                                  "&name=" + name if name else ""))
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
        await self.until(page, "window.demo.online.has(%s)" % js(account))

    async def sees_offline(self, page, account):
        await self.until(page, "!window.demo.online.has(%s)" % js(account))

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
                # Back with the last welcome's resume token: no ticket asked for.
                self.assertEqual(await page.evaluate("window.demo.tickets"), 1)
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


class PresenceAnApplicationCanShowTests(BrowserClientTestCase):
    """Issue 16 in the demo: names from the tickets' info, a typing
    indicator over whispers, and a reload that is no leave."""

    def name_shown(self, page, account, name):
        return self.until(page, "(document.querySelector('#online li[data-account=%s]') || {})"
                                ".textContent === %s" % (js(account), js(name)))

    def test_names_typing_and_a_reload_that_is_no_leave(self):
        async def scenario(context):
            ann = await self.open_demo(context, "demo-ann", "Ann")
            bob = await self.open_demo(context, "demo-bob", "Bob")
            # Each shows the other's name, from the other's ticket's info.
            await self.name_shown(ann, "demo-bob", "Bob")
            await self.name_shown(bob, "demo-ann", "Ann")
            await self.name_shown(ann, "demo-ann", "Ann (you)")
            # Bob types: Ann sees it, through a whisper (no backend, not stored).
            await bob.type("#text", "hel")
            await self.until(ann, "document.getElementById('typing').textContent"
                                  " === 'Bob is typing\u2026'")
            self.assertEqual(await bob.evaluate("document.getElementById('typing').textContent"),
                             "", "the sender does not hear its own whisper")
            # Bob reloads his page: Ann sees neither a leave nor a join.
            await ann.evaluate("() => { window.seen = []; ['join', 'leave'].forEach((kind) => "
                               "window.demo.presence.on(kind, (m) => window.seen.push(m))); }")
            old = await bob.evaluate("window.demo.presence.session")
            await bob.reload()
            await self.until(bob, "window.demo && window.demo.presence.state.state === 'open' "
                                  "&& window.demo.presence.session !== %s" % js(old))
            await self.name_shown(bob, "demo-ann", "Ann")
            await ann.wait_for_timeout(5000)  # past the 3 s leave delay
            self.assertEqual(await ann.evaluate("window.seen"), [])
            await self.name_shown(ann, "demo-bob", "Bob")
            log = await ann.evaluate("document.getElementById('log').textContent")
            self.assertNotIn("demo-bob went offline", log)
            # Closing the tab is a leave, once the delay has passed.
            await bob.close()
            await self.sees_offline(ann, "demo-bob")
            seen = await ann.evaluate("window.seen")
            self.assertEqual([(m["type"], m["account"]) for m in seen], [("leave", "demo-bob")])
            self.assertEqual(seen[0]["ended"]["code"], 1001)

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
            # Back with its resume token: no ticket asked for.
            self.assertEqual(await page.evaluate("window.demo.tickets"), 1)
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
            self.assertEqual(await page.evaluate("window.demo.tickets"), 1)
            self.assertEqual(await page.evaluate("window.demo.presence.state.state"), "closed")
            # Offline once the leave delay (3 s) has passed.
            await until(lambda: self.api.presence().addCallback(lambda online: online == []),
                        10, "demo-cid offline")
            # The application may connect again on purpose: the kick took the
            # session's resume token away (4401), so with a ticket.
            await page.evaluate("window.demo.presence.connect()")
            await self.until(page, "window.demo.presence.state.state === 'open'")
            self.assertEqual(await page.evaluate("window.demo.tickets"), 2)

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
            # Its own membership is written through the node's ordered
            # presence writes, which a loaded machine can leave behind the
            # page's first question: asked until it is there.
            await until(lambda: page.evaluate(
                "async () => (await window.demo.presence.members('demo:lobby'))"
                ".some((m) => m.account === 'demo-eve')"), 15, "demo-eve a member")
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
            # One entry per account, with its info and its sessions.
            self.assertEqual([(m["account"], [s["session"] for s in m["sessions"]])
                              for m in result["members"]],
                             [("demo-eve", [await page.evaluate("window.demo.presence.session")])])
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


class ResumeTests(BrowserClientTestCase):
    node_arguments = ("--history", "demo:*=100,300")

    def test_after_a_restart_the_page_comes_back_without_a_ticket_and_shows_what_it_missed(self):
        async def scenario(context):
            # Another node on the same Redis, for the backend to publish
            # through while the page's node is down.
            other_api = free_port()
            await start_node_process(self, self.redis_url, free_port(), other_api,
                                     ["--history", "demo:*=100,300"], {"PRESENCE_API_KEY": KEY})
            backend = PresenceClient("http://127.0.0.1:%d" % other_api, KEY, timeout=5.0,
                                     pool=self.pool)
            page = await self.open_demo(context, "demo-fay")
            first = await page.evaluate("window.demo.presence.session")
            await wait(self.api.publish("demo:lobby", {"from": "backend", "text": "before"}))
            await self.received(page, "before")

            self.process.terminate()
            await self.exited(self.process)
            await self.until(page, "window.demo.states.some(s => s.state === 'closed' "
                                   "&& s.code === 1001 && s.willRetry)")
            missed = ["meanwhile %d" % n for n in range(1, 4)]
            for text in missed:
                await wait(backend.publish("demo:lobby", {"from": "backend", "text": text}))
            self.process = await self.start_node()

            await self.until(page, "window.demo.presence.state.state === 'open' && "
                                   "window.demo.presence.session !== %s" % js(first))
            for text in missed:
                await self.received(page, text)
            self.assertEqual(await page.evaluate("window.demo.tickets"), 1)  # getTicket once
            self.assertEqual([m["text"] for m in await page.evaluate("window.demo.messages")],
                             ["before", *missed])
            subscription = await page.evaluate(
                "window.demo.presence.subscription('demo:lobby')")
            self.assertEqual((subscription["recovered"], subscription["offset"]), (True, 4))
            for text in missed:
                await self.until(page, "document.getElementById('log').textContent"
                                       ".includes(%s)" % js("backend: " + text))

        return run(self.browse(scenario))

    def test_a_refused_token_falls_back_to_get_ticket_and_a_lost_history_is_told(self):
        async def scenario(context):
            page = await self.open_demo(context, "demo-gus")
            await wait(self.api.publish("demo:lobby", {"from": "backend", "text": "one"}))
            await self.received(page, "one")
            await page.evaluate("""() => {
                window.failed = [];
                window.demo.presence.on("recovery-failed", (e) => window.failed.push(e));
            }""")
            first = await page.evaluate("window.demo.presence.session")
            # Redis forgets everything (tokens, history) and the node restarts.
            self.process.terminate()
            await self.exited(self.process)
            await wait(self.engine_flushall())
            self.process = await self.start_node()
            await self.until(page, "window.demo.presence.state.state === 'open' && "
                                   "window.demo.presence.session !== %s" % js(first))
            # The token was refused (4401): the page asked for a ticket.
            self.assertEqual(await page.evaluate("window.demo.tickets"), 2)
            refused = await page.evaluate("window.demo.states.find(s => s.code === 4401)")
            self.assertEqual((refused["reason"], refused["willRetry"], refused["retryIn"]),
                             ("invalid, expired or already used resume token", True, 0))
            await self.until(page, "window.failed.length === 1")
            failed = await page.evaluate("window.failed[0]")
            self.assertEqual((failed["channel"], failed["previous"]["offset"]), ("demo:lobby", 1))
            self.assertNotEqual(failed["epoch"], failed["previous"]["epoch"])
            subscription = await page.evaluate(
                "window.demo.presence.subscription('demo:lobby')")
            self.assertFalse(subscription["recovered"])

        return run(self.browse(scenario))

    def engine_flushall(self):
        engine = RedisEngine(self.redis_url, reactor, timeout=2)
        self.addCleanup(engine.disconnect)
        return engine.execute("FLUSHALL")
