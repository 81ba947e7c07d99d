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

from ..net.dispatch import PROTOCOLS
from ..redis.dashboard import DashboardStore
from ..redis.engine import RedisUnavailable
from ..wire.auththrottle import PORTS as AUTH_PORTS
from ..wire.close import MAX_REASON_BYTES, OPERATOR_CLOSE_CODES, is_operator_close_code, meaning
from .admission import COOKIE, REFUSAL_REASONS, Admission, CheckedFirst, host_is_loopback
from .bounded import BoundedSite

__all__ = ["AdminApp", "COOKIE", "host_is_loopback"]

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

#: Every protocol's name, as sessions and metrics say it.
PROTOCOL_NAMES = tuple(entry.session.protocol_name for entry in PROTOCOLS)

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
    def metrics(self, request):
        """This node, in the Prometheus text format (scrape every node)."""
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return prometheus(self.server, self.hub, self).encode("utf-8")

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


def _labels(**labels):
    return "{%s}" % ",".join('%s="%s"' % (name, str(value).replace("\\", "\\\\")
                                          .replace('"', '\\"').replace("\n", "\\n"))
                             for name, value in labels.items())


def prometheus(server, hub=None, dashboard=None):
    """The node's metrics in the Prometheus text exposition format; names
    follow the dashboard's words (sessions, messages, handshakes refused,
    closes, heartbeat round trip, tickets); ``dashboard``: the AdminApp
    serving them, whose refusals are counted too."""
    stats = server.stats
    lines = []

    def metric(name, kind, help_text, samples):
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s %s" % (name, kind))
        for labels, value in samples:
            lines.append("%s%s %s" % (name, _labels(**labels) if labels else "", value))

    _session_metrics(metric, server)
    _rtt_histogram(lines, stats)
    _auth_metrics(metric, server)
    if hub is not None:
        _hub_metrics(metric, hub)
    webhooks = getattr(dashboard, "webhooks", None)
    if webhooks is not None:
        _webhook_metrics(metric, webhooks.reports())
    if dashboard is not None:
        metric("presence_dashboard_refused_total", "counter",
               "Dashboard requests refused, by reason (host, origin, csrf, wrong_password, "
               "locked_out).", [({"reason": reason}, dashboard.refused[reason])
                                for reason in REFUSAL_REASONS])
    return "\n".join(lines) + "\n"


def _session_metrics(metric, server):
    """Sessions, messages, bytes, handshakes, closes and the limits hit."""
    stats = server.stats
    by_protocol = collections.Counter(s.protocol_name for s in server.sessions.values())
    totals = collections.Counter(messages_in=stats.messages_in, messages_out=stats.messages_out,
                                 bytes_in=stats.bytes_in, bytes_out=stats.bytes_out)
    for session in server.sessions.values():
        totals["messages_in"] += session.messages_in
        totals["messages_out"] += session.messages_out
        totals["bytes_in"] += session.bytes_in
        totals["bytes_out"] += session.bytes_out
    metric("presence_sessions", "gauge", "Open sessions, by protocol.",
           [({"protocol": p}, by_protocol.get(p, 0)) for p in PROTOCOL_NAMES])
    metric("presence_messages_total", "counter", "Messages, by direction.",
           [({"direction": "in"}, totals["messages_in"]),
            ({"direction": "out"}, totals["messages_out"])])
    metric("presence_bytes_total", "counter", "Bytes of the session streams, by direction.",
           [({"direction": "in"}, totals["bytes_in"]),
            ({"direction": "out"}, totals["bytes_out"])])
    metric("presence_handshakes_accepted_total", "counter", "Opening handshakes accepted.",
           [({}, stats.handshakes_accepted)])
    metric("presence_handshakes_refused_total", "counter",
           "Opening handshakes refused, by reason.",
           [({"reason": k}, v) for k, v in sorted(stats.handshakes_refused.items())])
    metric("presence_closes_total", "counter", "Sessions ended, by close code.",
           [({"code": k}, v) for k, v in sorted(stats.closes.items())])
    metric("presence_protocol_errors_total", "counter",
           "Sessions failed for breaking the protocol.",
           [({}, sum(stats.protocol_errors.values()))])
    metric("presence_heartbeat_timeouts_total", "counter",
           "Sessions closed because a heartbeat went unanswered.", [({}, stats.heartbeat_timeouts)])
    metric("presence_slow_consumers_total", "counter",
           "Sessions dropped for not reading what was sent to them.",
           [({}, stats.slow_consumers)])
    metric("presence_limits_hit_total", "counter",
           "Operator limits hit, by option (docs/operations.md).",
           [({"limit": k}, v) for k, v in sorted(stats.limits_hit.items())])
    metric("presence_connections", "gauge",
           "Client connections open, handshakes in progress included.",
           [({}, server.connections)])


def _rtt_histogram(lines, stats):
    """The heartbeat round trips, as a Prometheus histogram."""
    lines.append("# HELP presence_heartbeat_rtt_seconds Heartbeat round-trip time.")
    lines.append("# TYPE presence_heartbeat_rtt_seconds histogram")
    for bound, count in zip(stats.RTT_BUCKETS, stats.rtt_buckets):
        lines.append('presence_heartbeat_rtt_seconds_bucket{le="%s"} %d' % (bound, count))
    lines.append('presence_heartbeat_rtt_seconds_bucket{le="+Inf"} %d' % stats.rtt_count)
    lines.append("presence_heartbeat_rtt_seconds_sum %s" % repr(stats.rtt_sum))
    lines.append("presence_heartbeat_rtt_seconds_count %d" % stats.rtt_count)


def _auth_metrics(metric, server):
    """Tickets, resume tokens, failed authentications and the throttle."""
    stats = server.stats
    tickets = server.tickets
    metric("presence_tickets_total", "counter", "Tickets issued, redeemed and refused.",
           [({"outcome": outcome}, getattr(tickets, outcome) if tickets is not None else 0)
            for outcome in ("issued", "redeemed", "refused")])
    metric("presence_resume_tokens_total", "counter",
           "Resume tokens given in welcomes (issued), redeemed and refused (unknown, used, "
           "expired, past their maximum age).",
           [({"outcome": outcome},
             getattr(tickets, "resume_" + outcome) if tickets is not None else 0)
            for outcome in ("issued", "redeemed", "refused")])
    metric("presence_auth_failures_total", "counter", "Tickets not accepted, by reason.",
           [({"reason": k}, v) for k, v in sorted(stats.auth_failures.items())])
    throttle = server.auth_throttle
    metric("presence_auth_throttled_total", "counter",
           "Authentication attempts refused unchecked (429) because their address failed "
           "too often lately, by port (client, api).",
           [({"port": port}, throttle.refused[port]) for port in AUTH_PORTS])
    metric("presence_auth_throttled_addresses", "gauge",
           "Addresses whose authentication attempts are refused now.",
           [({}, throttle.throttled_now(server.clock.seconds()))])


def _hub_metrics(metric, hub):
    """The node's cluster side: Redis, reaping, delivery, history."""
    metric("presence_redis_reconnects_total", "counter",
           "Reconnections to Redis after an outage.", [({}, hub.stats.redis_reconnects)])
    metric("presence_redis_errors_total", "counter", "Redis commands that failed.",
           [({}, hub.stats.redis_errors)])
    if getattr(hub, "shard_errors", None) is not None:
        metric("presence_redis_shard_errors_total", "counter",
               "Redis commands that failed on each shard (several --redis): a shard "
               "that does not answer stops only its channels and accounts.",
               [({"shard": str(i)}, count) for i, count in enumerate(hub.shard_errors)])
    metric("presence_nodes_reaped_total", "counter",
           "Dead nodes whose sessions this node took out of presence.",
           [({}, hub.stats.reaped_nodes)])
    metric("presence_reasserted_total", "counter",
           "Times this node found it had been reaped while alive, and re-asserted "
           "its sessions.", [({}, hub.stats.reasserted)])
    metric("presence_bad_redis_messages_total", "counter",
           "Pub/sub messages that could not be delivered, by reason (not JSON, nested "
           "too deep, a bad except list, ...).",
           [({"reason": k}, v) for k, v in sorted(hub.stats.bad_redis_messages.items())])
    metric("presence_delivered_total", "counter",
           "Channel messages written to local sessions.", [({}, hub.stats.delivered)])
    metric("presence_recoveries_total", "counter",
           "Subscribes that asked to recover a channel's history, by outcome "
           "(attempted; succeeded: every publication after the client's offset sent; "
           "failed: another epoch, trimmed past it, or no history).",
           [({"outcome": k}, v) for k, v in sorted(hub.stats.recoveries.items())])
    metric("presence_history_memory_bytes", "gauge",
           "Redis memory of the history of the channels this node's sessions listen "
           "to (MEMORY USAGE, sampled every 30 s).",
           [({}, hub.history.memory["bytes"])])
    metric("presence_history_channels", "gauge",
           "History channels this node's sessions listen to (in the memory sample).",
           [({}, hub.history.memory["channels"])])


def _webhook_metrics(metric, reports):
    """Each webhook's counts (this node's deliveries; the cluster's pending
    events and oldest undelivered age, from Redis), labelled by its URL."""
    def each(field):
        return [({"webhook": r["url"]}, r[field]) for r in reports]
    metric("presence_webhook_events_total", "counter",
           "Events this node handed to a webhook, by outcome (delivered: a 2xx; dead: given "
           "up past --webhook-max-age; skipped: filtered out by --webhook-events).",
           [({"webhook": r["url"], "outcome": outcome}, r[outcome]) for r in reports
            for outcome in ("delivered", "dead", "skipped")])
    metric("presence_webhook_requests_total", "counter",
           "Requests this node sent to a webhook, and those that failed (non-2xx, timeout, "
           "no connection).",
           [({"webhook": r["url"], "result": result}, r[field]) for r in reports
            for result, field in (("sent", "requests"), ("failed", "failures"))])
    metric("presence_webhook_retrying", "gauge",
           "Events of the batch this node is retrying (0: none).", each("retrying"))
    metric("presence_webhook_pending", "gauge",
           "Events read from the log and not acknowledged yet, cluster-wide.", each("pending"))
    metric("presence_webhook_oldest_undelivered_seconds", "gauge",
           "Age of the oldest event not delivered yet, cluster-wide (0: none).",
           each("oldest_undelivered_s"))
    metric("presence_webhook_dead_letters", "gauge",
           "Events kept in the webhook's dead-letter stream, cluster-wide.",
           each("dead_letters"))
    metric("presence_webhook_latency_seconds", "gauge",
           "From an event to its acknowledged delivery, this node's last 1,000: p50 and p99.",
           [({"webhook": r["url"], "quantile": q}, r[field] / 1000.0
             if r[field] is not None else "NaN")
            for r in reports for q, field in (("0.5", "latency_p50_ms"),
                                              ("0.99", "latency_p99_ms"))])
    metric("presence_webhook_leading", "gauge",
           "1 while this node holds the webhook's lease (delivers it).",
           [({"webhook": r["url"]}, int(r["leading"])) for r in reports])
