"""The dashboard's defences, in this process, on a real port, over a real
Redis, asked with raw HTTP/1.0 requests (so that each test says exactly
which Host, Origin and cookie are sent) and, where a browser's behaviour is
the point, in Chromium: the Host and Origin checks (DNS rebinding, forged
forms), logging out, the lockout after wrong passwords.

Logins and wrong passwords are kept in Redis, as a dashboard on a hub
keeps them, so that every node and worker serves the same ones; their
expiry is Redis's (a key's TTL, which the tests read and shorten). The
lockout in a process's memory (LoginsInMemory) is tested too, its time a
Clock the test advances."""

import asyncio
import collections
import re
import urllib.parse

from playwright.async_api import async_playwright
from twisted.internet import defer, endpoints, reactor
from twisted.internet.task import Clock
from twisted.web.server import Site

from presence.web import admission
from presence.web.admin import COOKIE, AdminApp
from presence.web.admission import LOCKOUT, LOGIN_IDLE, LoginsInMemory

from .helpers.api import tracked
from .helpers.browser import CHROMIUM, CHROMIUM_ARGS
from .helpers.hubs import HubTestCase
from .helpers.logs import LoggedLines
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


class DashboardTestCase(HubTestCase):
    """A node (``self.node``) and its dashboard (``self.dashboard``) on
    loopback ``self.port``, with ``password`` (None: it asks none), its time
    ``self.clock``."""

    password = PASSWORD
    endpoint = "tcp:0:interface=127.0.0.1"
    #: Whether logins are kept in this process's memory, not in Redis.
    in_memory = False

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.node = self.start_node()
        self.clock = Clock()
        self.dashboard, self.port = yield run(self.serve(self.node))
        self.host = "127.0.0.1:%d" % self.port
        self.origin = "http://" + self.host

    async def serve(self, node):
        """A dashboard of ``node`` on a port of its own: ``(AdminApp, port)``."""
        dashboard = AdminApp(node.hub, node.server, self.password, clock=self.clock,
                             logins=LoginsInMemory(self.clock) if self.in_memory else None)
        site = tracked(Site(dashboard.resource()))
        port = await wait(endpoints.serverFromString(reactor, self.endpoint).listen(site))
        self.addCleanup(lambda: run(self._stop_serving(port, site)))
        return dashboard, port.getHost().port

    async def _stop_serving(self, port, site):
        await wait(defer.maybeDeferred(port.stopListening))
        await until(lambda: not site.connections, 10, "the dashboard's connections closed")

    async def stored_logins(self):
        """The keys of the logins in Redis."""
        return await wait(self.engine.execute("KEYS", self.keys.prefix + "dashboard:login:*"))

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
            self.assertEqual(await self.stored_logins(), [])
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
                "POST", path + "/close",
                [("Host", self.host), ("Origin", "http://attacker.example")],
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


class LoggingOutTests(DashboardTestCase):
    """Logging out ends the login on the server, not only in the browser,
    and only with the login's CSRF token."""

    async def logged_in_page(self, cookie):
        return await self.request("GET", "/", [("Host", self.host), ("Cookie", cookie)])

    def test_logging_out_forgets_the_login_so_its_cookie_no_longer_logs_in(self):
        async def scenario():
            cookie = await self.log_in()
            page = await self.logged_in_page(cookie)
            self.assertEqual(page.status, 200)
            answer = await self.request(
                "POST", "/logout", [("Host", self.host), ("Origin", self.origin),
                                    ("Cookie", cookie)], form={"csrf": csrf_of(page.body)})
            self.assertEqual(answer.status, 303, answer.body)
            self.assertEqual(answer.headers["location"], ["/login"])
            cleared, = answer.headers["set-cookie"]
            self.assertTrue(cleared.startswith(COOKIE.decode() + "=;"), cleared)
            self.assertIn("Max-Age=0", cleared)
            self.assertEqual(await self.stored_logins(), [])
            # A copy of the old cookie (another tab, a stolen one) is no login.
            again = await self.logged_in_page(cookie)
            self.assertEqual((again.status, again.headers["location"]), (303, ["/login"]))
        return run(scenario())

    def test_a_logout_without_its_csrf_token_is_refused_and_the_login_kept(self):
        async def scenario():
            cookie = await self.log_in()
            for form in ({}, {"csrf": "forged"}):
                answer = await self.request(
                    "POST", "/logout", [("Host", self.host), ("Cookie", cookie)], form=form)
                self.assertEqual(answer.status, 403, form)
                self.assertIn(b"missing or wrong CSRF token", answer.body)
                self.assertNotIn("set-cookie", answer.headers)
            self.assertEqual((await self.logged_in_page(cookie)).status, 200)
            self.assertEqual(self.dashboard.refused["csrf"], 2)
        return run(scenario())

    def test_a_logout_without_a_login_leads_to_the_login_page(self):
        async def scenario():
            for headers in ([("Host", self.host)],
                            [("Host", self.host), ("Cookie", "presence_admin=stale")]):
                answer = await self.request("POST", "/logout", headers, form={})
                self.assertEqual((answer.status, answer.headers["location"]),
                                 (303, ["/login"]))
        return run(scenario())

    def test_logging_out_in_chromium(self):
        """The Log out button: the browser is back at the login page, its
        cookie gone, and the cookie it had, put back, logs nobody in."""
        async def scenario():
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM,
                                                           args=CHROMIUM_ARGS)
                try:
                    context = await browser.new_context()
                    page = await context.new_page()
                    await page.goto(self.origin + "/login")
                    await page.fill("input[name=password]", PASSWORD)
                    await page.click("form.login button[type=submit]")
                    await page.wait_for_url(self.origin + "/")
                    cookies = await context.cookies()
                    self.assertEqual([c["name"] for c in cookies], [COOKIE.decode()])
                    async with page.expect_response(self.origin + "/logout") as logout:
                        await page.click("form.logout button[type=submit]")
                    self.assertEqual((await logout.value).status, 303)
                    await page.wait_for_url(self.origin + "/login")
                    self.assertEqual(await context.cookies(), [])
                    await context.add_cookies(cookies)
                    await page.goto(self.origin + "/connections")
                    self.assertEqual(page.url, self.origin + "/login")
                finally:
                    await browser.close()
        return run(scenario())


class TheLoginPageIsAlwaysWholeTests(DashboardTestCase):
    """``?partial=1`` asks a live page for its changing part; the login page
    has none, and is answered whole."""

    def test_the_login_page_asked_for_its_part_is_the_login_page(self):
        async def scenario():
            answer = await self.request("GET", "/login?partial=1")
            self.assertEqual(answer.status, 200, answer.body)
            self.assertIn(b'<form method="post" action="/login" class="login">', answer.body)
            wrong = await self.request("POST", "/login?partial=1", form={"password": "wrong"})
            self.assertEqual(wrong.status, 401, wrong.body)
            self.assertIn(b"Wrong password.", wrong.body)
        return run(scenario())

    def test_a_live_page_asked_for_its_part_without_a_login_leads_to_the_login_page(self):
        async def scenario():
            answer = await self.request("GET", "/connections?partial=1")
            self.assertEqual((answer.status, answer.headers["location"]), (303, ["/login"]))
            cookie = await self.log_in()
            part = await self.request("GET", "/connections?partial=1",
                                      [("Host", self.host), ("Cookie", cookie)])
            self.assertEqual(part.status, 200)
            self.assertNotIn(b"<html", part.body)
        return run(scenario())


def proxied(source):
    """A PROXY protocol (v1) header naming ``source`` as the client."""
    if ":" in source:
        return b"PROXY TCP6 %s ::1 40000 8082\r\n" % source.encode("ascii")
    return b"PROXY TCP4 %s 127.0.0.1 40000 8082\r\n" % source.encode("ascii")


class TheLockoutTests(DashboardTestCase):
    """Five wrong passwords lock a client out for a minute. Behind the PROXY
    protocol (as behind a balancer), so that each request can come from the
    address the test names."""

    endpoint = "haproxy:tcp:0:interface=127.0.0.1"

    async def attempt(self, source, password="wrong"):
        answer = await self.request("POST", "/login", form={"password": password},
                                    before=proxied(source))
        return answer.status

    def test_an_ipv6_client_is_locked_out_by_its_64_whichever_address_it_uses(self):
        async def scenario():
            for host in range(1, 6):
                self.assertEqual(await self.attempt("2001:db8:1:2::%x" % host), 401)
            self.assertEqual(await self.attempt("2001:db8:1:2:ffff:ffff:ffff:fffe"), 429)
            self.assertEqual(await self.attempt("2001:db8:1:2::9", PASSWORD), 429)
            self.assertEqual(await self.attempt("2001:db8:1:3::1"), 401)  # another /64
            self.assertEqual(self.dashboard.refused["locked_out"], 2)
        return run(scenario())

    def test_an_ipv4_client_is_locked_out_by_its_address(self):
        async def scenario():
            for _ in range(5):
                self.assertEqual(await self.attempt("192.0.2.1"), 401)
            self.assertEqual(await self.attempt("192.0.2.1", PASSWORD), 429)
            self.assertEqual(await self.attempt("192.0.2.2", PASSWORD), 303)
        return run(scenario())

    async def failures_key(self, network):
        """The wrong passwords of ``network`` in Redis: (count, TTL in s)."""
        key = self.keys.dashboard_failures(network)
        count = await wait(self.engine.execute("GET", key))
        return (int(count) if count is not None else None,
                int(await wait(self.engine.execute("TTL", key))))

    def test_the_lockout_is_a_key_that_expires_a_minute_after_the_last_wrong_password(self):
        """Redis forgets the count (INCR, EXPIRE 60 at each wrong password;
        a refused attempt does not prolong it): once the key is gone, the
        right password logs in."""
        async def scenario():
            for _ in range(5):
                self.assertEqual(await self.attempt("192.0.2.1"), 401)
            count, ttl = await self.failures_key("192.0.2.1")
            self.assertEqual(count, 5)
            self.assertTrue(LOCKOUT - 5 <= ttl <= LOCKOUT, ttl)
            await wait(self.engine.execute("EXPIRE", self.keys.dashboard_failures("192.0.2.1"),
                                           1000))
            self.assertEqual(await self.attempt("192.0.2.1", PASSWORD), 429)
            self.assertEqual(await self.failures_key("192.0.2.1"), (5, 1000))
            await wait(self.engine.execute("PEXPIRE", self.keys.dashboard_failures("192.0.2.1"),
                                           1))
            await until(lambda: self.engine.execute(
                "EXISTS", self.keys.dashboard_failures("192.0.2.1")).addCallback(
                lambda n: int(n) == 0), 5, "the count expired")
            self.assertEqual(await self.attempt("192.0.2.1", PASSWORD), 303)
            self.assertEqual(await self.failures_key("192.0.2.1"), (None, -2))  # forgotten
        return run(scenario())

    def test_every_address_counted_expires_on_its_own(self):
        async def scenario():
            for network in range(1, 4):
                self.assertEqual(await self.attempt("2001:db8:%x::1" % network), 401)
            for network in range(1, 4):
                count, ttl = await self.failures_key("2001:db8:%x::/64" % network)
                self.assertEqual(count, 1)
                self.assertTrue(0 < ttl <= LOCKOUT, ttl)
        return run(scenario())

    def test_a_burst_of_wrong_passwords_at_once_checks_five_at_most(self):
        """Each attempt is counted before its password is checked, in one
        step (presence/redis/dashboard.py ATTEMPT): twenty sent together
        are not all checked against a count none of them has raised yet."""
        async def scenario():
            statuses = await asyncio.gather(*[self.attempt("192.0.2.9") for _ in range(20)])
            self.assertEqual(collections.Counter(statuses), {401: 5, 429: 15})
        return run(scenario())


class TheLockoutInMemoryTests(TheLockoutTests):
    """The same lockout with no Redis (LoginsInMemory), its time the
    test's Clock."""

    in_memory = True

    def test_the_lockout_ends_a_minute_after_the_last_wrong_password(self):
        async def scenario():
            for _ in range(5):
                self.assertEqual(await self.attempt("192.0.2.1"), 401)
            self.clock.advance(59)
            self.assertEqual(await self.attempt("192.0.2.1", PASSWORD), 429)
            self.clock.advance(1)
            self.assertEqual(await self.attempt("192.0.2.1", PASSWORD), 303)
        return run(scenario())

    def test_the_wrong_passwords_of_an_address_are_forgotten_after_a_minute(self):
        async def scenario():
            for network in range(3):
                self.assertEqual(await self.attempt("2001:db8:%x::1" % network), 401)
            self.assertEqual(len(self.dashboard.logins.failures), 3)
            self.clock.advance(60)
            self.assertEqual(await self.attempt("192.0.2.1"), 401)
            self.assertEqual(list(self.dashboard.logins.failures), ["192.0.2.1"])
        return run(scenario())

    def test_the_table_of_wrong_passwords_is_bounded(self):
        """Past MAX_REMEMBERED_FAILURES addresses within a minute, the
        oldest are forgotten: the table cannot grow with a flood."""
        self.patch(admission, "MAX_REMEMBERED_FAILURES", 3)

        async def scenario():
            for network in range(6):
                self.assertEqual(await self.attempt("2001:db8:%x::1" % network), 401)
                self.clock.advance(1)
            self.assertEqual(list(self.dashboard.logins.failures),
                             ["2001:db8:3::/64", "2001:db8:4::/64", "2001:db8:5::/64"])
        return run(scenario())

    # Redis's keys, and its one-step count, are not this table's.
    test_the_lockout_is_a_key_that_expires_a_minute_after_the_last_wrong_password = None
    test_every_address_counted_expires_on_its_own = None
    test_a_burst_of_wrong_passwords_at_once_checks_five_at_most = None


class LoginsAreTheClustersTests(DashboardTestCase):
    """Two nodes' dashboards on one Redis (as two workers, or two nodes
    behind a balancer): a login, its CSRF token, its end and the lockout
    are the same on both. The login is stored as a hash of its cookie and
    lasts LOGIN_IDLE from its last use."""

    endpoint = "haproxy:tcp:0:interface=127.0.0.1"

    async def other(self):
        """A second node's dashboard: its port."""
        _, port = await self.serve(self.start_node())
        return port

    def page(self, port, path, cookie, source="192.0.2.1"):
        return http(port, "GET", path, [("Host", "127.0.0.1:%d" % port), ("Cookie", cookie)],
                    before=proxied(source))

    def test_a_login_made_on_one_node_holds_on_another_with_its_csrf_token(self):
        async def scenario():
            other = await self.other()
            cookie = await self.log_in(before=proxied("192.0.2.1"))
            first = await self.page(self.port, "/", cookie)
            second = await self.page(other, "/", cookie)
            self.assertEqual((first.status, second.status), (200, 200), second.body)
            self.assertEqual(csrf_of(first.body), csrf_of(second.body))
            self.assertNotEqual(re.findall(rb'class="served-by"[^>]*>([^<]+)<', first.body),
                                re.findall(rb'class="served-by"[^>]*>([^<]+)<', second.body))
            answer = await http(other, "POST", "/logout",
                                [("Host", "127.0.0.1:%d" % other), ("Cookie", cookie)],
                                form={"csrf": csrf_of(second.body)}, before=proxied("192.0.2.1"))
            self.assertEqual(answer.status, 303, answer.body)
            again = await self.page(self.port, "/", cookie)
            self.assertEqual((again.status, again.headers["location"]), (303, ["/login"]))
        return run(scenario())

    def test_wrong_passwords_are_counted_across_nodes(self):
        async def scenario():
            other = await self.other()
            for port in (self.port, other, self.port, other, self.port):
                answer = await http(port, "POST", "/login", [("Host", "127.0.0.1:%d" % port)],
                                    form={"password": "wrong"}, before=proxied("192.0.2.3"))
                self.assertEqual(answer.status, 401)
            answer = await http(other, "POST", "/login", [("Host", "127.0.0.1:%d" % other)],
                                form={"password": PASSWORD}, before=proxied("192.0.2.3"))
            self.assertEqual(answer.status, 429)
        return run(scenario())

    def test_the_cookie_is_not_in_redis_only_its_hash_and_idle_logins_expire(self):
        async def scenario():
            cookie = await self.log_in(before=proxied("192.0.2.1"))
            value = cookie.partition("=")[2]
            key, = await self.stored_logins()
            self.assertEqual(key, self.keys.dashboard_login(value))
            self.assertNotIn(value, key)
            page = await self.page(self.port, "/", cookie)
            self.assertEqual(await wait(self.engine.execute("GET", key)), csrf_of(page.body))
            self.assertTrue(LOGIN_IDLE - 5 <= int(await wait(self.engine.execute("TTL", key))))
            # Used, a login lasts LOGIN_IDLE again.
            await wait(self.engine.execute("EXPIRE", key, 100))
            self.assertEqual((await self.page(self.port, "/closes", cookie)).status, 200)
            self.assertTrue(LOGIN_IDLE - 5 <= int(await wait(self.engine.execute("TTL", key))))
            # Idle past it, it is gone: the cookie logs nobody in.
            await wait(self.engine.execute("PEXPIRE", key, 1))
            await until(lambda: self.engine.execute("EXISTS", key).addCallback(
                lambda n: int(n) == 0), 5, "the login expired")
            late = await self.page(self.port, "/", cookie)
            self.assertEqual((late.status, late.headers["location"]), (303, ["/login"]))
        return run(scenario())


class WhenRedisDoesNotAnswerNobodyIsLetInTests(DashboardTestCase):
    """The logins are in Redis: while it does not answer, a page that needs
    a login, and a login, are answered 503 with why, not the page."""

    def test_pages_and_logins_are_503_with_a_body_while_redis_is_down(self):
        logged = LoggedLines().attach(self)

        async def scenario():
            cookie = await self.log_in()
            await wait(self.stop_redis())
            for method, path, form in (("GET", "/", None), ("GET", "/connections", None),
                                       ("GET", "/live", None),
                                       ("POST", "/login", {"password": PASSWORD}),
                                       ("POST", "/login", {"password": "wrong"})):
                answer = await self.request(method, path, [("Host", self.host),
                                                           ("Cookie", cookie)], form=form)
                self.assertEqual(answer.status, 503, (path, answer.body))
                self.assertIn(b"Redis did not answer", answer.body)
                self.assertNotIn("set-cookie", answer.headers)
            # Logged once a minute at most (the Clock has not moved).
            self.assertEqual(len(logged.containing("presence admin: Redis did not answer")), 1)
        return run(scenario())


class HostileInfoIsRenderedEscapedTests(DashboardTestCase):
    """A ticket's info (issue 16) is the backend's, but may carry what a user
    typed as a name: the connection page shows it as text."""

    password = None

    def test_an_html_payload_in_info_is_shown_as_text(self):
        session, _ = self.open_session(self.node, account="mallory")
        session.info = {"name": "<script>alert(1)</script><img src=x onerror=alert(2)>"}

        async def scenario():
            page = (await self.request("GET", "/connections/%s" % session.id)).body
            self.assertIn(b"&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x "
                          b"onerror=alert(2)&gt;", page)
            self.assertNotIn(b"<script>alert(1)", page)
            self.assertNotIn(b"<img src=x", page)
        return run(scenario())
