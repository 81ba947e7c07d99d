"""The dashboard's defences, in this process, on a real port, over a real
Redis, asked with raw HTTP/1.0 requests (so that each test says exactly
which Host, Origin and cookie are sent) and, where a browser's behaviour is
the point, in Chromium: the Host and Origin checks (DNS rebinding, forged
forms).

Time (logins, the lockout) is a Clock the test advances."""

import asyncio
import collections
import re
import urllib.parse

from playwright.async_api import async_playwright
from twisted.internet import defer, endpoints, reactor
from twisted.internet.task import Clock
from twisted.web.server import Site

from presence.web.admin import COOKIE, AdminApp

from .helpers.browser import CHROMIUM, CHROMIUM_ARGS
from .helpers.hubs import HubTestCase
from .helpers.waiting import run, until, wait

PASSWORD = "correct horse battery staple"

#: An answer: its status, its headers (lower-case name -> values, in order)
#: and its body.
Response = collections.namedtuple("Response", "status headers body")


async def http(port, method, path, headers=(), form=None, before=b""):
    """One HTTP/1.0 request on its own connection to loopback ``port``:
    ``headers`` exactly as given (``(name, value)`` pairs: no Host unless one
    is given), ``form`` sent urlencoded; ``before``: bytes sent ahead of the
    request (a PROXY protocol header)."""
    body = urllib.parse.urlencode(form or {}).encode("ascii")
    head = ["%s %s HTTP/1.0" % (method, path)] + ["%s: %s" % header for header in headers]
    if form is not None:
        head += ["Content-Type: application/x-www-form-urlencoded",
                 "Content-Length: %d" % len(body)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(before + ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    received = collections.defaultdict(list)
    for line in lines:
        name, _, value = line.partition(":")
        received[name.strip().lower()].append(value.strip())
    return Response(int(status_line.split()[1]), dict(received), body)


def csrf_of(page):
    """The CSRF token of a page's forms."""
    return re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode("ascii")


class _Site(Site):
    """A Site that knows its open connections, so that a test ends with none
    (a browser keeps its own open until it is closed)."""

    def __init__(self, resource):
        super().__init__(resource)
        self.open = set()

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        self.open.add(protocol)
        lost = protocol.connectionLost

        def connectionLost(reason):
            self.open.discard(protocol)
            return lost(reason)

        protocol.connectionLost = connectionLost
        return protocol


class DashboardTestCase(HubTestCase):
    """A node (``self.node``) and its dashboard (``self.dashboard``) on
    loopback ``self.port``, with ``password`` (None: it asks none), its time
    ``self.clock``."""

    password = PASSWORD
    endpoint = "tcp:0:interface=127.0.0.1"

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.node = self.start_node()
        self.clock = Clock()
        self.dashboard = AdminApp(self.node.hub, self.node.server, self.password,
                                  clock=self.clock)
        self.site = _Site(self.dashboard.resource())
        port = yield endpoints.serverFromString(reactor, self.endpoint).listen(self.site)
        self.addCleanup(lambda: run(self._stop_serving(port)))
        self.port = port.getHost().port
        self.host = "127.0.0.1:%d" % self.port
        self.origin = "http://" + self.host

    async def _stop_serving(self, port):
        await wait(defer.maybeDeferred(port.stopListening))
        await until(lambda: not self.site.open, 10, "the dashboard's connections closed")

    def request(self, method, path, headers=None, **options):
        """``http()`` to the dashboard, with a loopback Host unless ``headers``
        are given."""
        if headers is None:
            headers = [("Host", self.host)]
        return http(self.port, method, path, headers, **options)

    async def log_in(self, **options):
        """A login's cookie (``name=value``)."""
        answer = await self.request("POST", "/login", form={"password": PASSWORD}, **options)
        self.assertEqual(answer.status, 303, answer.body)
        return answer.headers["set-cookie"][0].split(";")[0]

    async def metrics(self):
        return (await self.request("GET", "/metrics")).body.decode("utf-8")


class WithoutAPasswordOnlyLoopbackNamesAreAnsweredTests(DashboardTestCase):
    """No password: only safe from this machine, and a page elsewhere whose
    name is rebound to 127.0.0.1 is same-origin with the dashboard. Its
    requests still carry its own name as their Host."""

    password = None

    def test_a_host_that_is_not_a_loopback_name_is_refused_with_why(self):
        async def scenario():
            for path in ("/", "/connections", "/metrics", "/live", "/static/admin.js"):
                answer = await self.request(
                    "GET", path, [("Host", "attacker.example:%d" % self.port)])
                self.assertEqual(answer.status, 421, path)
                self.assertIn(b"answers only to a loopback name", answer.body)
                self.assertIn(b"'attacker.example:%d'" % self.port, answer.body)
                self.assertNotIn(b"csrf", answer.body)
            self.assertEqual(self.dashboard.refused["host"], 5)
            self.assertIn('presence_dashboard_refused_total{reason="host"} 5',
                          await self.metrics())
        return run(scenario())

    def test_no_host_or_two_are_refused(self):
        async def scenario():
            self.assertEqual((await self.request("GET", "/", [])).status, 421)
            twice = [("Host", self.host), ("Host", "attacker.example")]
            self.assertEqual((await self.request("GET", "/", twice)).status, 421)
        return run(scenario())

    def test_every_loopback_name_is_answered(self):
        async def scenario():
            for host in (self.host, "localhost:%d" % self.port, "localhost", "LocalHost",
                         "127.0.0.1", "127.1.2.3:%d" % self.port, "[::1]:%d" % self.port,
                         "[::1]"):
                answer = await self.request("GET", "/", [("Host", host)])
                self.assertEqual(answer.status, 200, host)
            for host in ("127.0.0.1.attacker.example", "localhost.attacker.example",
                         "[::1].attacker.example", "127.0.0.1:80x", "10.0.0.1", "[::2]",
                         "localhost:%d@attacker.example" % self.port):
                answer = await self.request("GET", "/", [("Host", host)])
                self.assertEqual(answer.status, 421, host)
        return run(scenario())

    def test_a_rebound_page_in_chromium_reads_nothing(self):
        """Chromium resolving attacker.example to 127.0.0.1, as a rebound
        name would: the dashboard under that name is refused, under its own
        it is served."""
        async def scenario():
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM,
                    args=CHROMIUM_ARGS + ["--host-resolver-rules=MAP attacker.example 127.0.0.1"])
                try:
                    page = await browser.new_page()
                    rebound = await page.goto("http://attacker.example:%d/connections" % self.port)
                    self.assertEqual(rebound.status, 421)
                    self.assertIn("answers only to a loopback name", await page.inner_text("body"))
                    own = await page.goto(self.origin + "/connections")
                    self.assertEqual(own.status, 200)
                    await page.wait_for_selector("#live")
                finally:
                    await browser.close()
        return run(scenario())


class AFormFromAnotherSiteIsRefusedTests(DashboardTestCase):
    """Every POST: an Origin that is present and not the dashboard's own is
    refused, with a password or without."""

    def test_a_login_from_another_origin_is_refused(self):
        async def scenario():
            answer = await self.request(
                "POST", "/login", [("Host", self.host), ("Origin", "http://attacker.example")],
                form={"password": PASSWORD})
            self.assertEqual(answer.status, 403)
            self.assertIn(b"sent from Origin 'http://attacker.example'", answer.body)
            self.assertNotIn("set-cookie", answer.headers)
            self.assertEqual(self.dashboard.logins, {})
            self.assertIn('presence_dashboard_refused_total{reason="origin"} 1',
                          await self.metrics())
        return run(scenario())

    def test_the_dashboards_own_origin_and_none_are_accepted(self):
        async def scenario():
            await self.log_in(headers=[("Host", self.host), ("Origin", self.origin)])
            await self.log_in(headers=[("Host", self.host), ("Origin", "https://" + self.host)])
            await self.log_in()  # not a browser: no Origin
            self.assertEqual(self.dashboard.refused["origin"], 0)
        return run(scenario())

    def test_an_opaque_origin_or_two_are_refused(self):
        async def scenario():
            for origins in (["null"], [self.origin, "http://attacker.example"]):
                answer = await self.request(
                    "POST", "/login",
                    [("Host", self.host)] + [("Origin", origin) for origin in origins],
                    form={"password": PASSWORD})
                self.assertEqual(answer.status, 403, origins)
        return run(scenario())


class WithoutAPasswordAFormFromAnotherSiteIsRefusedTests(DashboardTestCase):
    password = None

    def test_closing_a_session_from_another_origin_is_refused(self):
        """The forged close is refused; the operator's, sent after it, is the
        one the client hears."""
        session, transport = self.open_session(self.node, account="alice")
        path = "/connections/%s" % session.id

        async def scenario():
            csrf = csrf_of((await self.request("GET", path)).body)
            forged = await self.request(
                "POST", path + "/close", [("Host", self.host), ("Origin", "http://attacker.example")],
                form={"csrf": csrf, "code": "4000", "reason": "forged"})
            self.assertEqual(forged.status, 403)
            self.assertEqual(self.dashboard.refused["origin"], 1)
            own = await self.request(
                "POST", path + "/close", [("Host", self.host), ("Origin", self.origin)],
                form={"csrf": csrf, "code": "4000", "reason": "by the operator"})
            self.assertEqual(own.status, 303)
            await until(lambda: b"by the operator" in transport.value(), 10, "the close")
            self.assertNotIn(b"forged", transport.value())
        return run(scenario())
