"""Who may use the admin dashboard (presence/web/admin.py), decided before
its pages: the login (a password, a session cookie, a CSRF token per login),
the lockout after wrong passwords, and the checks every request passes
before any route (a loopback Host without a password: DNS rebinding; a
POST's Origin). Every refusal is counted (``refused``,
``presence_dashboard_refused_total``) and logged at most once a minute.

The logins and the wrong passwords are kept where every node of the
cluster finds them, in Redis (presence/redis/dashboard.py), so any node, and
any worker of ``--workers`` sharing the dashboard's port, answers a
browser's next request as the last one did.
"""

import collections
import hmac
import ipaddress
import secrets

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource

from ..wire.clientip import counted_network
from ..wire.throttle import LogThrottle

__all__ = ["Admission", "CheckedFirst", "COOKIE", "host_is_loopback", "LoginsInMemory",
           "REFUSAL_REASONS"]

log = Logger()

COOKIE = b"presence_admin"
#: Seconds a login lasts without being used.
LOGIN_IDLE = 8 * 3600
#: Wrong passwords from one address (an IPv6 client's /64) before it must
#: wait until LOCKOUT seconds after the last of them; then they are forgotten.
MAX_FAILURES = 5
LOCKOUT = 60
#: Addresses whose wrong passwords are remembered at once in a process's
#: memory (LoginsInMemory; in Redis each address's count expires on its
#: own). Past it the oldest are forgotten first: a flood from many addresses
#: costs a bounded table (about 200 bytes an address), at worst freeing a
#: locked-out address early.
MAX_REMEMBERED_FAILURES = 10000
#: Why the dashboard refuses a request, as AdminApp.refused and /metrics
#: count it: ``host`` (no password, and not a loopback Host), ``origin`` (a
#: POST from another site), ``csrf`` (a form without its token, or not logged
#: in), ``wrong_password``, ``locked_out`` (too many wrong passwords).
REFUSAL_REASONS = ("host", "origin", "csrf", "wrong_password", "locked_out")

def host_is_loopback(host):
    """Whether a Host header (bytes) names this machine's loopback:
    ``localhost``, an address of 127.0.0.0/8 or ``[::1]``, with or without a
    port. A page of another site can rebind its own name to 127.0.0.1, but
    its requests still carry that name as their Host."""
    try:
        host = host.decode("ascii").lower()
    except UnicodeDecodeError:
        return False
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket:
            return False
    else:
        name, colon, port = host.partition(":")
        port = colon + port
    if port and not (port.startswith(":") and port[1:].isdigit()):
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _shown(value, limit=100):
    """A header a client sent, quoted and cut short, for a refusal's text."""
    return repr(value[:limit].decode("latin-1")) + ("..." if len(value) > limit else "")


class CheckedFirst(Resource):
    """The dashboard's routes behind the checks every request passes before
    any route runs (AdminApp.refusal): one place, so that no route, today's
    or a later one, can forget them."""

    isLeaf = True

    def __init__(self, dashboard, routes):
        super().__init__()
        self.dashboard = dashboard
        self.routes = routes

    def render(self, request):
        refusal = self.dashboard.refusal(request)
        if refusal is not None:
            return refusal
        return self.routes.render(request)


class LoginsInMemory:
    """The logins and wrong passwords of a dashboard with no Redis, in this
    process's memory, as presence/redis/dashboard.py's DashboardStore keeps
    them in Redis (the same calls, firing at once): only one process can
    serve such a dashboard. ``clock``: what time it is."""

    def __init__(self, clock):
        self.clock = clock
        #: Cookie -> {"csrf", "seen"}.
        self.logins = {}
        #: Address -> (wrong passwords, when the last was made), oldest first.
        self.failures = {}

    def login(self, cookie, idle):
        login = self.logins.get(cookie)
        now = self.clock.seconds()
        if login is None or now - login["seen"] > idle:
            self.logins.pop(cookie, None)
            return defer.succeed(None)
        login["seen"] = now
        return defer.succeed(login["csrf"])

    def add_login(self, cookie, csrf, idle):
        self.logins[cookie] = {"csrf": csrf, "seen": self.clock.seconds()}
        return defer.succeed(True)

    def end_login(self, cookie):
        self.logins.pop(cookie, None)
        return defer.succeed(None)

    def attempt(self, network, max_failures, lockout):
        now = self.clock.seconds()
        self._forget_failures(now, lockout)
        failures = self.failures.get(network)
        if failures and failures[0] >= max_failures:
            return defer.succeed(False)
        self.failures.pop(network, None)  # to the end: see _forget_failures
        self.failures[network] = (failures[0] + 1 if failures else 1, now)
        self._forget_failures(now, lockout)
        return defer.succeed(True)

    def forget_failures(self, network):
        self.failures.pop(network, None)
        return defer.succeed(None)

    def _forget_failures(self, now, lockout):
        """Forgets the wrong passwords of addresses that made none for
        ``lockout`` seconds, and the oldest past MAX_REMEMBERED_FAILURES
        addresses. ``self.failures`` is in the order of each address's last
        wrong password (an entry moves to the end with each), so both are at
        its front: a call costs what it forgets."""
        failures = self.failures
        while failures:
            peer, (_, last) = next(iter(failures.items()))
            if now - last < lockout and len(failures) <= MAX_REMEMBERED_FAILURES:
                return
            del failures[peer]


class Admission:
    """The dashboard's admission (AdminApp is one): ``password`` (None: no
    login is asked, only allowed on a loopback interface, which the options
    check), ``secure_cookies``, ``clock``, what time it is, and ``logins``,
    where the logins and wrong passwords are kept: the cluster's Redis
    (presence/redis/dashboard.py's DashboardStore), so that any node or
    worker serves the dashboard, or None, this process's memory
    (LoginsInMemory). When Redis does not answer, a request that needs a
    login is answered 503 (``unavailable``): nobody is let in unchecked."""

    def __init__(self, password, secure_cookies, clock, logins=None):
        self.password = password.encode("utf-8") if password else None
        self.secure_cookies = secure_cookies
        self.clock = clock
        self.logins = logins if logins is not None else LoginsInMemory(clock)
        #: Requests refused, by reason (REFUSAL_REASONS).
        self.refused = collections.Counter()
        self._refusals_log = LogThrottle()
        self._unavailable_log = LogThrottle()

    async def _login(self, request):
        """The login of this request (a dict with its CSRF token), or None;
        RedisUnavailable when the logins cannot be read."""
        if self.password is None:
            return {"csrf": self._local_csrf(), "local": True}
        cookie = request.getCookie(COOKIE)
        if not cookie:
            return None
        csrf = await self.logins.login(cookie.decode("ascii", "replace"), LOGIN_IDLE)
        return None if csrf is None else {"csrf": csrf}

    def unavailable(self, request):
        """The answer to a request whose login could not be checked (Redis
        did not answer): a 503 saying so, never the page; logged at most
        once a minute, with how many more there were."""
        if self._unavailable_log.due(self.clock.seconds()):
            log.warn("presence admin: Redis did not answer: {method} {path} answered 503, "
                     "logins cannot be checked ({more} more since the last report)",
                     method=request.method.decode("latin-1"),
                     path=request.path.decode("latin-1"), more=self._unavailable_log.suppressed)
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"retry-after", b"5")
        return (b"Redis did not answer: the dashboard's logins cannot be checked, so "
                b"nobody is let in. Try again in a few seconds.\n")

    def refusal(self, request):
        """The answer to a request refused before any route, or None.

        Without a password the dashboard is safe only from this machine, and
        a browser's same-origin rule does not protect it: a page on
        attacker.example whose name is rebound to 127.0.0.1 is same-origin
        with it. Its requests still name attacker.example as their Host, so
        only loopback names are answered (421: not the server for that
        name). A POST's Origin (sent by browsers with every POST) must be
        the dashboard's own: its Host, over http or https (a proxy ending
        TLS in front keeps the Host and changes the scheme)."""
        hosts = request.requestHeaders.getRawHeaders(b"host") or []
        host = hosts[0] if len(hosts) == 1 else None
        if self.password is None and (host is None or not host_is_loopback(host)):
            return self._refuse(
                request, 421, "host",
                "This dashboard asks no password, so it answers only to a loopback "
                "name (localhost, 127.0.0.1, [::1]), not to Host %s: a page of another "
                "site rebinding its name to this machine must not read it. Open it as "
                "http://127.0.0.1:PORT/, or give it --admin-password."
                % (_shown(host) if host is not None else "(%d given)" % len(hosts)))
        if request.method == b"POST":
            origins = request.requestHeaders.getRawHeaders(b"origin")
            if origins is not None and not (
                    host is not None and len(origins) == 1
                    and origins[0].lower() in (b"http://" + host.lower(),
                                               b"https://" + host.lower())):
                return self._refuse(
                    request, 403, "origin",
                    "Refused: this form was sent from Origin %s, not from this dashboard "
                    "(Host %s). A proxy in front of the dashboard must pass the Host "
                    "header through." % (", ".join(_shown(origin) for origin in origins),
                                         _shown(host) if host is not None else "(none)"))
        return None

    def _refuse(self, request, status, reason, text):
        """Answer ``status`` with ``text``, count it under ``reason`` and log
        it (at most once a minute: refusals are what an attacker controls)."""
        self.refused[reason] += 1
        if self._refusals_log.due(self.clock.seconds()):
            log.warn("presence admin: refused ({reason}, {status}): {text} ({more} more "
                     "refusals since the last report)", reason=reason, status=status,
                     text=text, more=self._refusals_log.suppressed)
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-store")
        return (text + "\n").encode("utf-8")

    def _local_csrf(self):
        if not hasattr(self, "_csrf"):
            self._csrf = secrets.token_urlsafe(24)
        return self._csrf

    def _redirect(self, request, location):
        request.setResponseCode(303)
        request.setHeader(b"location", location.encode("utf-8"))
        return b""

    async def _password_login(self, request):
        """POST /login: the password checked, the lockout kept."""
        # Counted where the client cannot simply pick another address: an
        # IPv6 client has its whole /64 (the rule --max-connections-per-ip
        # follows).
        peer = counted_network(getattr(request.getClientAddress(), "host", "?"))
        if not await self.logins.attempt(peer, MAX_FAILURES, LOCKOUT):
            self.refused["locked_out"] += 1
            return self._render(request, "login", status=429, login=None,
                                error="Too many wrong passwords: wait a minute.")
        given = (request.args.get(b"password") or [b""])[0]
        if self.password is None or not hmac.compare_digest(given, self.password):
            self.refused["wrong_password"] += 1
            return self._render(request, "login", status=401, login=None,
                                error="Wrong password.")
        await self.logins.forget_failures(peer)
        cookie = secrets.token_urlsafe(32)
        await self.logins.add_login(cookie, secrets.token_urlsafe(24), LOGIN_IDLE)
        request.addCookie(COOKIE, cookie.encode("ascii"), path=b"/", httpOnly=True,
                          sameSite="strict", secure=self.secure_cookies)
        return self._redirect(request, "/")

    def _csrf_ok(self, request, login):
        given = (request.args.get(b"csrf") or [b""])[0].decode("latin-1")
        return hmac.compare_digest(given.encode(), login["csrf"].encode())

    async def _guard(self, request):
        login = await self._login(request)
        if login is None:
            self._redirect(request, "/login")
        return login
