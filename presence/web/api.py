"""The HTTP API for backends (Klein): tickets, publishing, presence and
disconnects. docs/api.md documents every endpoint, status and body.

Every answer is JSON, errors included (``{"error": KIND, "message": TEXT}``);
nothing a caller sends can make it answer with a traceback.
"""

import ipaddress
import json
import os

from klein import Klein
from twisted.logger import Logger
from werkzeug.exceptions import HTTPException

from ..app.demo import DEMO_CHANNELS
from ..hub.channels import MAX_CHANNEL, MAX_PUBLISH_ID, valid_channel
from ..hub.history import DEFAULT_PAGE, MAX_PAGE
from ..hub.tickets import MAX_INFO, fingerprint
from ..redis.engine import RedisUnavailable
from ..wire.auththrottle import AuthThrottle
from ..wire.close import MAX_REASON_BYTES, OPERATOR_CLOSE_CODES, is_operator_close_code
from ..wire.jsontext import JSONError, decode_json, encode_json, escapes_lone_surrogate
from .bounded import BoundedSite
from .callers import APIError, Callers

__all__ = ["PresenceAPI", "MAX_BODY"]

log = Logger()

#: Largest request body read, in bytes: a longer one is answered 413 before
#: it is read (presence/web/bounded.py). A ticket's attributes, or a
#: publish's data, of a few KiB fit many times over.
MAX_BODY = 64 * 1024
#: The browser client (presence.js) and the demo page.
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_MAX_NAME = 256


def _json_body(request):
    body = request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:  # on a Site that is not the API's own (site())
        raise APIError(413, "too_large", "request body larger than %d bytes" % MAX_BODY)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError(400, "bad_request", "request body is not JSON (in UTF-8)") from None
    try:
        data = decode_json(text, unique_keys=True)
    except JSONError as error:
        raise APIError(400, "bad_request", "request body is not JSON (in UTF-8)"
                       if error.reason == "not JSON"
                       else "request body is not JSON Presence takes: %s" % error.reason) from None
    if not isinstance(data, dict):
        raise APIError(400, "bad_request", "request body must be a JSON object")
    if escapes_lone_surrogate(text, data):
        raise APIError(400, "bad_request",
                       "request body is not Unicode text: it escapes a lone surrogate")
    return data


def _too_large(max_body):
    """The 413 of presence/web/bounded.py, as every API error: JSON."""
    return b"application/json", json.dumps(
        {"error": "too_large", "message": "request body larger than %d bytes" % max_body}
    ).encode("utf-8")


def _ticket_info(data):
    """A ticket's ``info``: a JSON object of at most MAX_INFO bytes as
    JSON, or None."""
    info = data.get("info")
    if info is None:
        return None
    if not isinstance(info, dict):
        raise APIError(400, "bad_request", "info must be a JSON object")
    size = len(encode_json(info).encode("utf-8"))
    if size > MAX_INFO:
        raise APIError(400, "bad_request", "info must be at most %d bytes as JSON (it is %d)"
                       % (MAX_INFO, size))
    return info


def _whole_number(request, name, default):
    """A query argument that must be a whole number >= 0, or ``default``."""
    values = request.args.get(name)
    if not values:
        return default
    text = values[0].decode("latin-1")
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise APIError(400, "bad_request", "%s must be a whole number"
                       % name.decode("ascii"))
    return int(text)


def _name(value, what):
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise APIError(400, "bad_request", "%s must be a non-empty string of at most %d "
                       "characters" % (what, _MAX_NAME))
    return value


def _answer(request, status, body, headers=()):
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    for name, value in headers:
        request.setHeader(name, value)
    return json.dumps(body).encode("utf-8")


def _page(request):
    """A listing's ``cursor`` (0: the first page) and ``limit`` (1 to
    MAX_PAGE, DEFAULT_PAGE by default)."""
    cursor = _whole_number(request, b"cursor", 0)
    limit = min(_whole_number(request, b"limit", DEFAULT_PAGE), MAX_PAGE)
    if limit < 1:
        raise APIError(400, "bad_request", "limit must be at least 1")
    return cursor, limit


def _static(request, name, content_type, cache_control):
    """A file of presence/web/static/, as UTF-8 text of ``content_type``."""
    with open(os.path.join(STATIC, name), "rb") as source:
        body = source.read()
    request.setHeader(b"content-type", content_type + b"; charset=utf-8")
    request.setHeader(b"cache-control", cache_control)
    return body


def _ticket_request(caller, answer, data, demo, client_ip):
    """What a ticket asked for in ``data`` is for: ``(account, attributes,
    channels, ip, info, whisper)``, as ``caller`` may ask (a backend
    anything; the demo page's key demo accounts on the demo's channels; a
    user token its own account, and nothing else); ``client_ip()``: the
    caller's address."""
    if caller == "backend":
        account = _name(data.get("account"), "account")
        ip = data.get("ip")
        if ip is not None:
            try:
                if not isinstance(ip, str):
                    raise ValueError(ip)  # ip_address() would take an integer
                ip = str(ipaddress.ip_address(ip))
            except ValueError:
                raise APIError(400, "bad_request", "ip must be an IP address") from None
        attributes = data.get("attributes", {})
        channels = data.get("channels", [])
        whisper = data.get("whisper", [])
    elif caller == "demo":
        # The demo page's key: demo accounts on demo channels only.
        account = _name(data.get("account"), "account")
        if not demo.allows(account):
            raise APIError(403, "forbidden", "the demo key gets tickets for demo-* "
                           "accounts only")
        if "channels" in data or "ip" in data:
            raise APIError(403, "forbidden", "the demo key may not set channels or ip")
        attributes = data.get("attributes", {})
        channels = list(DEMO_CHANNELS)
        whisper = list(DEMO_CHANNELS)
        ip = client_ip()
    else:
        account = answer["sub"]
        if data.get("account", account) != account:
            raise APIError(403, "forbidden", "a user token gets tickets for its own "
                           "account only")
        for field in ("attributes", "channels", "ip", "info", "whisper"):
            if field in data:
                raise APIError(403, "forbidden", "only a backend may set %s" % field)
        ip = client_ip()
        attributes = {}
        channels = []
        whisper = []
    if not isinstance(attributes, dict):
        raise APIError(400, "bad_request", "attributes must be a JSON object")
    if not isinstance(channels, list):
        raise APIError(400, "bad_request", "channels must be a list of strings")
    channels = [_name(channel, "each channel") for channel in channels]
    info = _ticket_info(data)
    if not isinstance(whisper, list):
        raise APIError(400, "bad_request", "whisper must be a list of channel patterns")
    whisper = [_name(pattern, "each whisper pattern") for pattern in whisper]
    return account, attributes, channels, ip, info, whisper


class PresenceAPI:
    """``tickets``: a TicketStore. ``api_key``: the backends' key (or None).
    ``introspector``: an OAuth Introspector (or None). ``trusted_proxies``:
    whose X-Forwarded-For names the caller's IP. ``hub``: the node's Hub, for
    publishing, presence and disconnecting. ``demo``: with ``--demo``, a
    presence.demo.Demo (the /demo page and its demo-only ticket key).
    ``throttle``: the node's AuthThrottle (its Server's: one table of failed
    authentications for the client port and the API), or a new one;
    ``clock``: what time it is for it."""

    app = Klein()

    def __init__(self, tickets, api_key=None, introspector=None, trusted_proxies=None,
                 hub=None, demo=None, throttle=None, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.tickets = tickets
        self.hub = hub
        self.demo = demo
        self.callers = Callers(api_key, demo, introspector, trusted_proxies,
                               throttle if throttle is not None else AuthThrottle(), clock,
                               _MAX_NAME)

    def resource(self):
        return self.app.resource()

    def site(self, stats=None):
        """The API's twisted.web Site: bodies over MAX_BODY are answered 413
        before they are read, counted in ``stats`` (the node's ServerStats)
        as ``limits_hit["api-body-size"]``."""
        return BoundedSite(self.resource(), MAX_BODY, "api-body-size", stats,
                           too_large=_too_large)

    # ------------------------------------------------------------- routes

    @app.route("/tickets", methods=["POST"])
    async def issue_ticket(self, request):
        """``{"account", "attributes", "channels", "ip", "info", "whisper"}`` -> 201
        ``{"ticket", "expires_in"}``."""
        try:
            caller, answer = await self.callers.identify(request)
            data = _json_body(request)
            account, attributes, channels, ip, info, whisper = _ticket_request(
                caller, answer, data, self.demo, lambda: self.callers.client_ip(request))
            try:
                ticket, ttl = await self.tickets.issue(account, attributes, channels, ip, info,
                                                       whisper)
            except RedisUnavailable:
                raise APIError(503, "unavailable", "the ticket store did not answer in time",
                               [(b"retry-after", b"1")]) from None
        except APIError as error:
            return _answer(request, error.status, {"error": error.kind,
                                                         "message": error.message},
                                error.headers)
        log.debug("presence api: ticket {ticket} for {account}", ticket=fingerprint(ticket),
                  account=account)
        return _answer(request, 201, {"ticket": ticket, "expires_in": ttl})

    async def _hub_call(self, request, work):
        """Run ``work()`` for a backend; errors become JSON answers."""
        try:
            await self.callers.require_backend(request)
            if self.hub is None:
                raise APIError(503, "unavailable", "this node has no hub")
            try:
                status, body = await work()
            except RedisUnavailable:
                raise APIError(503, "unavailable", "Redis did not answer in time",
                               [(b"retry-after", b"1")]) from None
        except APIError as error:
            return _answer(request, error.status, {"error": error.kind,
                                                         "message": error.message},
                                error.headers)
        return _answer(request, status, body)

    @app.route("/publish", methods=["POST"])
    async def publish(self, request):
        """``{"channel" | "channels", "data", "except", "id"}`` -> 200
        ``{"channels": N, "nodes": M}`` (and, with an id, ``"duplicate"``:
        whether a publish with that id was made already, and this one was
        not published; for channels that keep a history, ``"offsets"``:
        ``{channel: {"epoch", "offset"}}``)."""
        async def work():
            data = _json_body(request)
            if "channels" in data:
                channels = data["channels"]
                if not isinstance(channels, list) or not channels:
                    raise APIError(400, "bad_request", "channels must be a non-empty list")
            elif "channel" in data:
                channels = [data["channel"]]
            else:
                raise APIError(400, "bad_request", "give channel or channels")
            for channel in channels:
                if not valid_channel(channel):
                    raise APIError(400, "bad_request", "each channel must be 1-%d printable "
                                   "characters without spaces" % MAX_CHANNEL)
            if "data" not in data:
                raise APIError(400, "bad_request", "data is required")
            exclude = data.get("except", [])
            if isinstance(exclude, str):
                exclude = [exclude]
            if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
                raise APIError(400, "bad_request", "except must be a session id or a list of them")
            publish_id = data.get("id")
            if publish_id is not None and not (isinstance(publish_id, str)
                                               and 0 < len(publish_id) <= MAX_PUBLISH_ID):
                raise APIError(400, "bad_request", "id must be a string of 1-%d characters"
                               % MAX_PUBLISH_ID)
            nodes, duplicate, offsets = await self.hub.publish_recorded(
                publish_id, channels, data["data"], exclude)
            answer = {"channels": len(channels), "nodes": nodes}
            if publish_id is not None:
                answer["duplicate"] = duplicate
            if offsets:
                # The channels that keep a history: each one's epoch and the
                # offset this publication got there.
                answer["offsets"] = offsets
            return 200, answer
        return await self._hub_call(request, work)

    @app.route("/history/<path:channel>", methods=["GET"])
    async def history(self, request, channel):
        """``?since=N&limit=M`` -> 200 ``{"channel", "epoch", "offset",
        "messages": [{"offset", "data"}]}``: the publications after offset
        N (default 0: from the oldest kept), at most M (default
        DEFAULT_PAGE, at most MAX_PAGE); 404 for a channel without history."""
        async def work():
            since = _whole_number(request, b"since", 0)
            limit = min(_whole_number(request, b"limit", DEFAULT_PAGE), MAX_PAGE)
            if limit < 1:
                raise APIError(400, "bad_request", "limit must be at least 1")
            if not valid_channel(channel):
                raise APIError(400, "bad_request", "channel must be 1-%d printable "
                               "characters without spaces" % MAX_CHANNEL)
            answer = await self.hub.read_history(channel, since, limit)
            if answer is None:
                raise APIError(404, "not_found", "channel %s keeps no history (--history)"
                               % channel)
            return 200, answer
        return await self._hub_call(request, work)

    @app.route("/presence", methods=["GET"])
    async def presence(self, request):
        """200 ``{"accounts": [...]}``: every online account, cluster-wide."""
        async def work():
            return 200, {"accounts": await self.hub.online_accounts()}
        return await self._hub_call(request, work)

    @app.route("/nodes", methods=["GET"])
    async def nodes(self, request):
        """200 ``{"nodes": [{"node", "pid", "sessions", "started_at",
        "heartbeat_at"}]}``: the live nodes of the cluster (those whose
        announcement has not expired), ordered by id; with ``--workers``,
        one per worker. Times are Unix seconds."""
        async def work():
            reports = await self.hub.queries.nodes()
            return 200, {"nodes": [
                {"node": report.get("id"), "pid": report.get("pid"),
                 "sessions": report.get("sessions", 0), "started_at": report.get("started_at"),
                 "heartbeat_at": report.get("heartbeat_at")} for report in reports]}
        return await self._hub_call(request, work)

    @app.route("/presence/<path:account>", methods=["GET"])
    async def account_presence(self, request, account):
        """200 ``{"account", "online", "info", "sessions": [...]}``."""
        async def work():
            sessions = await self.hub.account_sessions(account)
            info = next((s["info"] for s in reversed(sessions) if s.get("info") is not None),
                        None)
            return 200, {"account": account, "online": bool(sessions), "info": info,
                         "sessions": sessions}
        return await self._hub_call(request, work)

    @app.route("/channels", methods=["GET"])
    async def channels(self, request):
        """``?cursor=C&limit=N`` -> 200 ``{"channels": [{"channel", "sessions",
        "accounts"}], "cursor"}``: a page of the channels with members,
        cluster-wide; ``cursor`` null after the last page."""
        async def work():
            cursor, limit = _page(request)
            page, cursor = await self.hub.members.channels(cursor, limit)
            return 200, {"channels": page, "cursor": cursor}
        return await self._hub_call(request, work)

    @app.route("/channels/<path:channel>", methods=["GET"])
    async def channel(self, request, channel):
        """200 ``{"channel", "sessions", "accounts"}`` (counts, in constant
        time); ``/channels/CHANNEL/members?cursor=C&limit=N``: 200
        ``{"channel", "members": [{"account", "info", "sessions"}],
        "cursor"}``, a page of its accounts."""
        async def work():
            name, listing = channel, False
            if channel.endswith("/members"):
                name, listing = channel[:-len("/members")], True
            if not valid_channel(name):
                raise APIError(400, "bad_request", "channel must be 1-%d printable "
                               "characters without spaces" % MAX_CHANNEL)
            if not listing:
                return 200, await self.hub.members.counts(name)
            cursor, limit = _page(request)
            members, cursor = await self.hub.members.page_of_channel(name, cursor, limit)
            return 200, {"channel": name, "members": members, "cursor": cursor}
        return await self._hub_call(request, work)

    @app.route("/subscribe", methods=["POST"])
    async def server_subscribe(self, request):
        """``{"account" | "session", "channel"}`` -> 200 ``{"sessions": N}``:
        every matching session, on every node, is subscribed (no ticket
        right needed: the backend decides) and told so."""
        return await self._server_subscription(request, "subscribe")

    @app.route("/unsubscribe", methods=["POST"])
    async def server_unsubscribe(self, request):
        """As POST /subscribe, the other way."""
        return await self._server_subscription(request, "unsubscribe")

    async def _server_subscription(self, request, action):
        async def work():
            data = _json_body(request)
            session, account = data.get("session"), data.get("account")
            if (session is None) == (account is None):
                raise APIError(400, "bad_request", "give session or account (one of them)")
            channel = data.get("channel")
            if not valid_channel(channel):
                raise APIError(400, "bad_request", "channel must be 1-%d printable "
                               "characters without spaces" % MAX_CHANNEL)
            if session is not None:
                count = await self.hub.server_subscription(
                    action, channel, session=_name(session, "session"))
            else:
                count = await self.hub.server_subscription(
                    action, channel, account=_name(account, "account"))
            return 200, {"sessions": count}
        return await self._hub_call(request, work)

    @app.route("/disconnect", methods=["POST"])
    async def disconnect(self, request):
        """``{"session" | "account", "code", "reason"}`` -> 202: every node
        closes the matching sessions."""
        async def work():
            data = _json_body(request)
            session = data.get("session")
            account = data.get("account")
            if (session is None) == (account is None):
                raise APIError(400, "bad_request", "give session or account (one of them)")
            target = _name(session if session is not None else account,
                           "session" if session is not None else "account")
            code = data.get("code", 1000)
            if not is_operator_close_code(code):
                raise APIError(400, "bad_request", "code must be %s or 4000-4999"
                               % ", ".join(map(str, OPERATOR_CLOSE_CODES)))
            reason = data.get("reason", "")
            if not isinstance(reason, str) or len(reason.encode("utf-8")) > MAX_REASON_BYTES:
                raise APIError(400, "bad_request", "reason must be text of at most %d bytes"
                               % MAX_REASON_BYTES)
            if session is not None:
                await self.hub.disconnect(session=target, code=code, reason=reason)
            else:
                await self.hub.disconnect(account=target, code=code, reason=reason)
            return 202, {"requested": True}
        return await self._hub_call(request, work)

    @app.route("/presence.js", methods=["GET"])
    def browser_client(self, request):
        """The browser client, an ES module; no key needed. Any origin may
        import it (module scripts are fetched with CORS)."""
        request.setHeader(b"access-control-allow-origin", b"*")
        return _static(request, "presence.js", b"text/javascript", b"no-cache")

    @app.route("/demo", methods=["GET"])
    def demo_page(self, request):
        """With --demo: the demo page (presence/web/static/demo.html)."""
        if self.demo is None:
            return self._demo_off(request)
        return _static(request, "demo.html", b"text/html", b"no-store")

    @app.route("/demo/config", methods=["GET"])
    def demo_config(self, request):
        """With --demo: what the page needs, its demo-only key included (the
        page is the demo's "backend"). Asked again when the key stops
        working: a restarted node has a new one."""
        if self.demo is None:
            return self._demo_off(request)
        scheme, port = self.demo.client or ("ws", None)
        return _answer(request, 200, {"key": self.demo.key, "scheme": scheme,
                                           "port": port, "channel": self.demo.channel})

    def _demo_off(self, request):
        return _answer(request, 404, {"error": "not_found",
                                           "message": "the demo is off: start with --demo"})

    @app.route("/health", methods=["GET"])
    async def health(self, request):
        """200 when the ticket store answers, 503 otherwise."""
        try:
            await self.tickets.store.ping()
        except RedisUnavailable:
            return _answer(request, 503, {"status": "unavailable", "redis": False})
        return _answer(request, 200, {"status": "ok", "redis": True})

    @app.handle_errors(HTTPException)
    def http_error(self, request, failure):
        error = failure.value
        # werkzeug's headers include Allow on a 405 (RFC 9110 15.5.6).
        headers = [(name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in error.get_headers() if name.lower() == "allow"]
        return _answer(request, error.code, {
            "error": error.name.lower().replace(" ", "_"), "message": error.description},
            headers)

    @app.handle_errors(Exception)
    def internal_error(self, request, failure):
        log.failure("presence api: {method} {path}", failure, method=request.method,
                    path=request.path)
        return _answer(request, 500, {"error": "internal", "message": "internal error"})
