"""The admin dashboard (Klein + Jinja2): who is connected, cluster-wide,
whether their heartbeats come back and how fast, and why sessions ended.

Pages are rendered on the server; a page stays live through server-sent
events (``GET /live``): each tick makes the page fetch its own content
again (``?partial=1``) and swap it in. When the event stream is down the
page falls back to reloading itself every 10 seconds (and, without
JavaScript, to a meta refresh). docs/dashboard.md describes each page.

Security: a password (``--admin-password``) and a session cookie
(``HttpOnly``, ``SameSite=Strict``), a CSRF token in every form that
changes something, Jinja2 autoescaping everywhere (an account name, user
agent or close reason containing HTML shows as text), and a short lockout
after repeated wrong passwords. Before any route: without a password, only
a loopback Host is answered (a page elsewhere whose name is rebound to
127.0.0.1 must not read or act: DNS rebinding); with or without one, a POST
whose Origin is another site's is refused. Every refusal is counted
(``AdminApp.refused``, ``presence_dashboard_refused_total``). Who may use
it is presence/web/admission.py's.
"""

import collections
import json
import os
import time

from jinja2 import Environment, FileSystemLoader, select_autoescape
from klein import Klein
from twisted.internet import defer, task
from twisted.logger import Logger

from ..redis.dashboard import DashboardStore
from ..hub.queries import METRICS_TIMEOUT
from ..redis.engine import RedisUnavailable
from ..wire.close import MAX_REASON_BYTES, OPERATOR_CLOSE_CODES, is_operator_close_code, meaning
from .admission import COOKIE, Admission, CheckedFirst, host_is_loopback
from .bounded import BoundedSite
from .metrics import exposition, families, prometheus, summed

__all__ = ["AdminApp", "COOKIE", "host_is_loopback", "prometheus"]

log = Logger()

HERE = os.path.dirname(os.path.abspath(__file__))
#: Seconds between live ticks, and between samples of the connections chart.
TICK = 2.0
SAMPLE_EVERY = 5.0
PAGE_SIZE = 50
#: The pages that stay live: admin.js fetches them again with ``?partial=1``
#: and swaps in NAME_content.html, their part that changes. Any other page
#: (the login page) is always rendered whole.
LIVE_PAGES = frozenset({"overview", "connections", "connection", "closes"})
#: Largest request body read, in bytes: a longer one is answered 413 before
#: it is read (presence/web/bounded.py). The dashboard's forms (a password,
#: a close code and its 123-byte reason, a CSRF token) fit many times over.
MAX_BODY = 16 * 1024
#: The close codes the dashboard offers when closing a session: the ones an
#: operator may use, and a few application codes (any of 4000-4999 is
#: accepted: presence/wire/close.py ``is_operator_close_code``).
CLOSE_CODE_CHOICES = OPERATOR_CLOSE_CODES + (4000, 4001, 4003)


_STATIC_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
                 ".png": b"image/png", ".svg": b"image/svg+xml"}


def _age(now, then):
    if then is None:
        return "-"
    seconds = max(0, int(now - then))
    if seconds < 60:
        return "%d s" % seconds
    if seconds < 3600:
        return "%d min %d s" % divmod(seconds, 60)
    hours, rest = divmod(seconds, 3600)
    return "%d h %d min" % (hours, rest // 60)


def _ms(seconds):
    return "-" if seconds is None else "%.1f ms" % (seconds * 1000)


def _size(count):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (count, unit)
        count /= 1024.0


def _clock_time(stamp):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp)) if stamp else "-"


def sparkline(values, width=300, height=60):
    """The points of an SVG polyline drawing ``values`` (oldest first)."""
    values = [v for v in values if v is not None]
    if not values:
        return ""
    top = max(values) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join("%.1f,%.1f" % (i * step, height - 2 - (v / top) * (height - 4))
                    for i, v in enumerate(values))


class AdminApp(Admission):
    """``hub``: this node's Hub (its queries to the cluster, its counters);
    ``server``: this node's client side; ``password``: the admin password,
    or None (then no login is asked: only allowed on a loopback interface,
    which the options check)."""

    app = Klein()

    def __init__(self, hub, server, password=None, secure_cookies=False, clock=None,
                 webhooks=None, logins=None):
        if clock is None:
            from twisted.internet import reactor as clock
        if logins is None:
            # In the cluster's Redis (its shard 0), so that every node and
            # worker serves the same logins (presence/web/admission.py).
            logins = DashboardStore(hub.engine, hub.keys)
        self.hub = hub
        #: The node's webhooks (presence/webhooks/delivery.py), or None.
        self.webhooks = webhooks
        self.cluster = hub.queries
        self.server = server
        super().__init__(password, secure_cookies, clock, logins)
        self.history = collections.deque(maxlen=int(30 * 60 / SAMPLE_EVERY))
        self._sampler = None
        self.env = Environment(loader=FileSystemLoader(os.path.join(HERE, "templates")),
                               autoescape=select_autoescape(["html"], default=True))
        self.env.filters.update(age=lambda then: _age(self.clock.seconds(), then), ms=_ms,
                                size=_size, clocktime=_clock_time, meaning=meaning)
        self.env.globals.update(sparkline=sparkline, close_codes=CLOSE_CODE_CHOICES,
                                served_by=hub.node_id)
        if hub.settings.workers_of:
            # The other workers' scrapes ask this one for its metrics.
            hub.answers.metrics = lambda: families(self.server, self.hub, self)

    def resource(self):
        return CheckedFirst(self, self.app.resource())

    def site(self, stats=None):
        """The dashboard's twisted.web Site: bodies over MAX_BODY are answered
        413 before they are read, counted in ``stats`` (the node's
        ServerStats) as ``limits_hit["dashboard-body-size"]``."""
        return BoundedSite(self.resource(), MAX_BODY, "dashboard-body-size", stats)

    # --------------------------------------------------------------- samples

    def start(self):
        self._sampler = task.LoopingCall(self._sample)
        self._sampler.clock = self.clock
        self._sampler.start(SAMPLE_EVERY, now=True)

    def stop(self):
        if self._sampler is not None and self._sampler.running:
            self._sampler.stop()

    @defer.inlineCallbacks
    def _sample(self):
        try:
            nodes = yield defer.ensureDeferred(self.cluster.nodes())
        except RedisUnavailable:
            return
        except Exception:
            log.failure("presence admin: sampling")
            return
        self.history.append((self.clock.seconds(), sum(n.get("sessions", 0) for n in nodes)))

    # ----------------------------------------------------------------- login

    def _render(self, request, template, status=200, **context):
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"content-security-policy",
                          b"default-src 'self'; style-src 'self'; script-src 'self'")
        partial = template in LIVE_PAGES and request.args.get(b"partial") == [b"1"]
        name = template + ("_content.html" if partial else ".html")
        return self.env.get_template(name).render(**context).encode("utf-8")

    @app.route("/login", methods=["GET"])
    async def login_page(self, request):
        if await self._login(request) is not None:
            return self._redirect(request, "/")
        return self._render(request, "login", login=None, error=None)

    @app.route("/login", methods=["POST"])
    async def login(self, request):
        return await self._password_login(request)

    @app.route("/logout", methods=["POST"])
    async def logout(self, request):
        """Ends this login on the server (its token is forgotten, so a copy
        of the cookie no longer logs in) and has the browser drop the cookie;
        only with the login's CSRF token, so that a page elsewhere cannot log
        the operator out. Without a login there is nothing to end: to the
        login page."""
        login = await self._login(request)
        if login is not None and not self._csrf_ok(request, login):
            return self._refuse(request, 403, "csrf",
                                "missing or wrong CSRF token: still logged in")
        if login is not None and login.get("local"):
            return self._redirect(request, "/")  # no password: no login to end
        if login is not None:
            await self.logins.end_login(request.getCookie(COOKIE).decode("ascii", "replace"))
        # Twisted (26.10) takes max_age and expires as str or bytes only;
        # an int failed every logout with a 500.
        request.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite="strict",
                          secure=self.secure_cookies, max_age=b"0",
                          expires=b"Thu, 01 Jan 1970 00:00:00 GMT")
        return self._redirect(request, "/login")

    # ----------------------------------------------------------------- pages

    @app.route("/", methods=["GET"])
    async def overview(self, request):
        login = await self._guard(request)
        if login is None:
            return b""
        try:
            overview = await self.cluster.overview()
            counts = await self.cluster.close_counts()
        except RedisUnavailable:
            overview, counts = None, {}
        return self._render(request, "overview", login=login, page="overview",
                            overview=overview, close_counts=counts,
                            webhooks=self.webhooks.reports() if self.webhooks else [],
                            chart=[count for _, count in self.history],
                            chart_span=_age(self.clock.seconds(), self.history[0][0])
                            if self.history else "-")

    @app.route("/connections", methods=["GET"])
    async def connections(self, request):
        login = await self._guard(request)
        if login is None:
            return b""
        filters = {name: (request.args.get(name.encode()) or [b""])[0].decode("utf-8",
                                                                                "replace")
                   for name in ("account", "ip", "channel")}
        try:
            page = max(1, int((request.args.get(b"page") or [b"1"])[0]))
        except ValueError:
            page = 1
        try:
            rows, total = await self.cluster.sessions(filters, (page - 1) * PAGE_SIZE,
                                                      PAGE_SIZE)
            error = None
        except RedisUnavailable:
            rows, total, error = [], 0, "Redis did not answer: the cluster cannot be asked."
        pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
        return self._render(request, "connections", login=login, page="connections",
                            rows=rows, total=total, filters=filters, page_number=page,
                            pages=pages, error=error)

    @app.route("/connections/<session_id>", methods=["GET"])
    async def connection(self, request, session_id):
        login = await self._guard(request)
        if login is None:
            return b""
        try:
            details = await self.cluster.session(session_id)
        except RedisUnavailable:
            details = None
        notice = (request.args.get(b"notice") or [b""])[0].decode("utf-8", "replace")
        return self._render(request, "connection", login=login, page="connections",
                            session_id=session_id, details=details, notice=notice,
                            status=200 if details else 404)

    @app.route("/connections/<session_id>/close", methods=["POST"])
    async def close_connection(self, request, session_id):
        login = await self._login(request)
        if login is None:
            return self._refuse(request, 403, "csrf", "not logged in")
        if not self._csrf_ok(request, login):
            return self._refuse(request, 403, "csrf", "missing or wrong CSRF token")
        try:
            code = int((request.args.get(b"code") or [b"1000"])[0])
        except ValueError:
            code = 0
        reason = (request.args.get(b"reason") or [b""])[0].decode("utf-8", "replace")
        if not is_operator_close_code(code) or len(reason.encode("utf-8")) > MAX_REASON_BYTES:
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return (b"choose one of the codes offered, and a reason of at most %d bytes\n"
                    % MAX_REASON_BYTES)
        try:
            await self.cluster.disconnect(session_id, code, reason)
        except RedisUnavailable:
            request.setResponseCode(503)
            return b"Redis did not answer\n"
        log.info("presence admin: closing {session} with {code} {reason!r}",
                 session=session_id, code=code, reason=reason)
        return self._redirect(request, "/connections/%s?notice=close+requested" % session_id)

    @app.route("/closes", methods=["GET"])
    async def closes(self, request):
        login = await self._guard(request)
        if login is None:
            return b""
        try:
            entries = await self.cluster.closes(100)
            counts = await self.cluster.close_counts()
            error = None
        except RedisUnavailable:
            entries, counts, error = [], {}, "Redis did not answer."
        return self._render(request, "closes", login=login, page="closes", entries=entries,
                            counts=counts, error=error)

    # ----------------------------------------------------------------- live

    @app.route("/live", methods=["GET"])
    async def live(self, request):
        """Server-sent events: a ``tick`` every TICK seconds while open."""
        if await self._login(request) is None:
            request.setResponseCode(403)
            return b""
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-store")
        request.write(b"retry: 3000\n\n")
        finished = request.notifyFinish()

        def tick():
            request.write(b"event: tick\ndata: " + json.dumps(
                {"at": self.clock.seconds(), "sessions": len(self.server.sessions)}).encode()
                + b"\n\n")

        ticker = task.LoopingCall(tick)
        ticker.clock = self.clock
        ticker.start(TICK, now=False)

        def done(_):
            if ticker.running:
                ticker.stop()
        finished.addBoth(done)
        return await finished.addErrback(lambda failure: None)

    @app.handle_errors(RedisUnavailable)
    def redis_unavailable(self, request, failure):
        """A login that could not be checked (the cluster's queries answer
        their own RedisUnavailable with the page and its error)."""
        return self.unavailable(request)

    # -------------------------------------------------------------- metrics

    @app.route("/metrics", methods=["GET"])
    async def metrics(self, request):
        """This node, in the Prometheus text format (scrape every node).
        With --workers, a scrape of the shared port lands on any worker:
        each answers the sum of every worker of its parent (the others
        asked through the control channel, presence/hub/queries.py
        ``worker_metrics``), so that every scrape answers the same series."""
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        own = families(self.server, self.hub, self)
        group = self.hub.settings.workers_of
        if not group:
            return exposition(own).encode("utf-8")
        try:
            others, missing = await self.cluster.worker_metrics(group, self.hub.node_id)
            comments = ["presence: the sum of %d worker%s of %s (this one: %s)"
                        % (1 + len(others), "s" if others else "", group, self.hub.node_id)]
            comments += ["presence: worker %s did not answer within %g s: its counters are "
                         "left out" % (node, METRICS_TIMEOUT) for node in missing]
            left_out = len(missing)
        except RedisUnavailable:
            others, left_out = [], "NaN"
            comments = ["presence: Redis did not answer, so the other workers of %s could not "
                        "be asked: this worker's (%s) counters alone" % (group, self.hub.node_id)]
        found = summed([own] + others)
        found.append(["presence_metrics_workers", "gauge",
                      "With --workers: the workers whose metrics this answer adds up "
                      "(summed, this one included), and those listed live that did not "
                      "answer within %g s (missing, left out)." % METRICS_TIMEOUT,
                      [["presence_metrics_workers", {"state": "summed"}, 1 + len(others)],
                       ["presence_metrics_workers", {"state": "missing"}, left_out]], "sum"])
        return exposition(found, comments).encode("utf-8")

    # --------------------------------------------------------------- static

    @app.route("/static/<name>", methods=["GET"])
    def static(self, request, name):
        path = os.path.join(HERE, "static", name)
        extension = os.path.splitext(name)[1]
        if "/" in name or name.startswith(".") or extension not in _STATIC_TYPES \
                or not os.path.isfile(path):
            request.setResponseCode(404)
            return b"not found\n"
        request.setHeader(b"content-type", _STATIC_TYPES[extension])
        request.setHeader(b"cache-control", b"max-age=300")
        with open(path, "rb") as f:
            return f.read()
