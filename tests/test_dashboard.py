"""The admin dashboard in headless Chromium, against two real nodes sharing
one Redis: log in, watch a client appear live with its round-trip time,
kick it, see why it ended; escaping, the password and CSRF.

The test takes screenshots at two widths on every run; with
PRESENCE_UPDATE_SCREENSHOTS=1 they replace those of docs/screenshots/
(otherwise they go to a temporary directory, so a test run leaves the
checkout clean)."""

import asyncio
import json
import os
import tempfile

import websockets
from playwright.async_api import async_playwright
from twisted.internet import defer

from presence.client import PresenceClient

from .helpers.browser import CHROMIUM, CHROMIUM_ARGS
from .helpers.processes import NodeProcessesTestCase, free_port, start_node_process
from .helpers.waiting import run, wait

KEY = "dashboard-test-key"
PASSWORD = "correct horse battery staple"
if os.environ.get("PRESENCE_UPDATE_SCREENSHOTS"):
    SCREENSHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "docs", "screenshots")
else:
    SCREENSHOTS = tempfile.mkdtemp(prefix="presence-screenshots-")
#: An account name that is markup. Shown escaped, it is text; rendered or
#: swapped in as HTML (the live pages swap their content with innerHTML), it
#: would make an element carrying ``data-injected``. (No script could run
#: anyway: the dashboard's CSP forbids inline scripts and handlers, which
#: is why the test looks for the element, not for a script's effect.)
XSS = '<img data-injected src="x"><script>alert(1)</script>'
INJECTED = "document.querySelectorAll('[data-injected]').length"


class DashboardTests(NodeProcessesTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.admin_port = free_port()
        self.nodes = [(yield run(self.start_node(admin=True))), (yield run(self.start_node()))]

    async def start_node(self, admin=False):
        client_port, api_port = free_port(), free_port()
        process = await start_node_process(
            self, self.redis_url, client_port, api_port,
            ["--heartbeat", "1", "--heartbeat-timeout", "1", "--node-heartbeat", "1"],
            {"PRESENCE_API_KEY": KEY, "PRESENCE_ADMIN_PASSWORD": PASSWORD},
            admin_port=self.admin_port if admin else None)
        return {"client": client_port, "process": process,
                "api": PresenceClient("http://127.0.0.1:%d" % api_port, KEY, pool=self.pool)}

    async def client(self, node, account):
        issued = await wait(node["api"].issue_ticket(account, channels=["room:*"]))
        ws = await websockets.connect("ws://127.0.0.1:%d/?ticket=%s" % (node["client"],
                                                                       issued["ticket"]))
        welcome = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "subscribe", "channel": "room:lobby"}))
        await ws.recv()
        return ws, welcome["session"]

    def test_the_dashboard_end_to_end(self):
        admin = "http://127.0.0.1:%d" % self.admin_port
        a, b = self.nodes

        async def scenario():
            os.makedirs(SCREENSHOTS, exist_ok=True)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                           args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page(viewport={"width": 1280, "height": 900})

                    async def shoot(name):
                        await page.screenshot(path=os.path.join(SCREENSHOTS, name + "-1280.png"),
                                              full_page=True)
                        await page.set_viewport_size({"width": 400, "height": 900})
                        await page.screenshot(path=os.path.join(SCREENSHOTS, name + "-400.png"),
                                              full_page=True)
                        await page.set_viewport_size({"width": 1280, "height": 900})

                    # A wrong password is refused.
                    response = await page.goto(admin + "/")
                    self.assertTrue(page.url.endswith("/login"))
                    await shoot("login")
                    await page.fill("input[name=password]", "wrong")
                    async with page.expect_response(admin + "/login") as refused:
                        await page.click("button[type=submit]")
                    self.assertEqual((await refused.value).status, 401)
                    self.assertIn("Wrong password.", await page.inner_text("form.login"))
                    # The right one logs in.
                    await page.fill("input[name=password]", PASSWORD)
                    await page.click("button[type=submit]")
                    await page.wait_for_url(admin + "/")

                    # A client connects while the page is open: its row
                    # appears without a reload.
                    await page.goto(admin + "/connections")
                    ws, session = await self.client(a, XSS)
                    row = 'tr[data-session="%s"]' % session
                    await page.wait_for_selector(row, timeout=15000)
                    account = await page.inner_text(row + " td.account")
                    self.assertEqual(account.strip(), XSS)  # shown as text
                    self.assertEqual(await page.evaluate(INJECTED), 0)
                    self.assertIn("127.0.0.1", await page.inner_text(row + " td.ip"))
                    # A round-trip time once a heartbeat came back.
                    await page.wait_for_function(
                        "(selector) => { const cell = document.querySelector(selector);"
                        " return cell && cell.textContent.trim().endsWith('ms'); }",
                        arg=row + " td.rtt", timeout=15000)
                    # A session on the second node appears too.
                    other, other_session = await self.client(b, "bob")
                    await page.wait_for_selector('tr[data-session="%s"]' % other_session,
                                                 timeout=15000)
                    await shoot("connections")  # after live swaps of the content
                    self.assertEqual(await page.evaluate(INJECTED), 0)
                    await page.goto(admin + "/")
                    await page.wait_for_function(
                        "() => document.getElementById('total-sessions')"
                        " && document.getElementById('total-sessions').textContent.trim() === '2'",
                        timeout=15000)
                    await shoot("overview")

                    # An action without the CSRF token is refused, and did
                    # nothing: a message published after it reaches the
                    # session, which a disconnect published before it (on
                    # the same subscription, so delivered first) would have
                    # closed.
                    forged = await page.request.post(
                        admin + "/connections/%s/close" % session,
                        form={"code": "4000", "reason": "forged"})
                    self.assertEqual(forged.status, 403)
                    await wait(a["api"].publish("room:lobby", "after the forgery"))
                    delivered = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    self.assertEqual(delivered["data"], "after the forgery")

                    # Kicking it from the page closes the client with the code.
                    await page.goto(admin + "/connections/" + session)
                    await page.wait_for_selector("svg.chart polyline")
                    self.assertEqual(await page.evaluate(INJECTED), 0)
                    await shoot("connection")
                    await page.select_option("select[name=code]", "4001")
                    await page.fill("input[name=reason]", "kicked by the test")
                    await page.click("button.danger")
                    await page.wait_for_selector("p.notice")
                    with self.assertRaises(websockets.ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 10)
                    self.assertEqual((ws.close_code, ws.close_reason),
                                     (4001, "kicked by the test"))

                    # And the close appears under Closes with its reason.
                    await page.goto(admin + "/closes")
                    closed = 'tr[data-session="%s"]' % session
                    await page.wait_for_selector(closed, timeout=15000)
                    self.assertEqual((await page.inner_text(closed + " td.reason")).strip(),
                                     "kicked by the test")
                    self.assertEqual((await page.inner_text(closed + " td.account")).strip(),
                                     XSS)
                    self.assertEqual(await page.evaluate(INJECTED), 0)
                    await shoot("closes")
                    await other.close()
                finally:
                    await browser.close()
            return response

        return run(scenario())

    def test_metrics_are_prometheus_text(self):
        async def scenario():
            reader, writer = await asyncio.open_connection("127.0.0.1", self.admin_port)
            writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            answer = (await asyncio.wait_for(reader.read(), 10)).decode()
            writer.close()
            head, _, body = answer.partition("\r\n\r\n")
            self.assertIn("text/plain; version=0.0.4", head)
            for name in ("presence_sessions", "presence_messages_total",
                         "presence_handshakes_refused_total", "presence_closes_total",
                         "presence_heartbeat_rtt_seconds_bucket", "presence_tickets_total",
                         "presence_redis_reconnects_total", "presence_nodes_reaped_total",
                         "presence_reasserted_total"):
                self.assertIn("# TYPE %s" % name.replace("_bucket", ""), body)
        return run(scenario())
