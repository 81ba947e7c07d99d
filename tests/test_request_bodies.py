"""Request bodies on the HTTP sites (presence/web/bounded.py): a body over a
site's maximum is answered 413 before it is read (announced by its
Content-Length) or as soon as it passes the maximum (chunked), and nothing
of it is kept: real sockets, the API's and the dashboard's real Sites."""

import asyncio
import io
import json

from twisted.internet import defer, reactor

from presence.web.admin import MAX_BODY as DASHBOARD_MAX_BODY
from presence.web.admin import AdminApp
from presence.web.api import MAX_BODY, PresenceAPI

from .helpers.api import APITestCase, tracked
from .helpers.hubs import HubTestCase
from .helpers.waiting import run, until, wait

GIB = 1 << 30


def recording(site):
    """Record every request ``site`` makes (``site.made``), whatever its
    request class is, with the body bytes handed to it (``handed``) and the
    most it kept at once (``kept``)."""
    made = site.made = []

    class Recording(site.requestFactory):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.handed = self.kept = 0
            made.append(self)

        def handleContentChunk(self, data):
            self.handed += len(data)
            super().handleContentChunk(data)
            self.kept = max(self.kept, self.content.tell())

    site.requestFactory = Recording
    return site


async def exchange(port, data, timeout=5.0):
    """Send ``data`` on a new connection to ``port`` and read the answer until
    the server closes (a reset after the answer counts as the close): what
    was read. Fails when the server has not closed within ``timeout``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = b""
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError("no answer and no close within %s s; read %r"
                             % (timeout, received[:200])) from None
    finally:
        writer.transport.abort()
    return received


def answer(received):
    """``(status, headers, body)`` of one HTTP answer."""
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def head(method, path, *fields):
    return (b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
            + b"".join(field + b"\r\n" for field in fields) + b"\r\n")


def chunked(total, piece=16 * 1024):
    """``total`` bytes of body in chunks of ``piece``, without the last
    (empty) chunk: a body still coming."""
    out = []
    while total > 0:
        size = min(piece, total)
        out.append(b"%x\r\n%s\r\n" % (size, b"x" * size))
        total -= size
    return b"".join(out)


class APIBodyTests(APITestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        api = PresenceAPI(self.tickets, api_key="backend-key")
        self.site = recording(tracked(api.site(self.stats)))
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self._close, self.port, self.site)

    def send(self, data):
        return run(exchange(self.port.getHost().port, data))

    def assertNothingKept(self, request, handed=0):
        # In memory, never more than the maximum, and not kept: not a
        # temporary file, not the part of the body that did arrive.
        self.assertIsInstance(request.content, io.BytesIO)
        self.assertLessEqual(request.kept, MAX_BODY)
        self.assertLessEqual(request.handed, handed)

    def assertTooLarge(self, received, handed=0):
        status, headers, body = answer(received)
        self.assertEqual(status, 413, received[:200])
        self.assertEqual(headers[b"content-type"], b"application/json")
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(json.loads(body), {
            "error": "too_large", "message": "request body larger than %d bytes" % MAX_BODY})
        self.assertEqual(self.stats.limits_hit["api-body-size"], 1)
        self.assertEqual(len(self.site.made), 1)
        self.assertNothingKept(self.site.made[0], handed)

    @defer.inlineCallbacks
    def test_a_gibibyte_content_length_is_answered_413_before_the_body_is_read(self):
        # An unauthenticated POST announcing 1 GiB, and sending its first
        # MiB: the answer comes without the rest, and none of it is kept.
        received = yield self.send(
            head(b"POST", b"/tickets", b"Content-Type: application/json",
                 b"Content-Length: %d" % GIB) + b"x" * (1 << 20))
        self.assertTooLarge(received)

    @defer.inlineCallbacks
    def test_expect_100_continue_with_a_length_over_the_maximum_gets_413_not_100(self):
        received = yield self.send(
            head(b"POST", b"/tickets", b"Content-Length: %d" % GIB, b"Expect: 100-continue"))
        self.assertFalse(received.startswith(b"HTTP/1.1 100"), received[:200])
        self.assertTooLarge(received)

    @defer.inlineCallbacks
    def test_a_chunked_body_is_cut_off_with_413_once_past_the_maximum(self):
        # Chunked: no length to refuse; 80 KiB sent and more to come.
        received = yield self.send(
            head(b"POST", b"/tickets", b"Transfer-Encoding: chunked")
            + chunked(MAX_BODY + 64 * 1024))
        # Read as it came, up to the chunk that passed the maximum (and what
        # else that read held), and no further.
        self.assertTooLarge(received, handed=MAX_BODY + 64 * 1024)
        self.assertLess(self.site.made[0].handed, MAX_BODY + 64 * 1024)

    @defer.inlineCallbacks
    def test_a_content_length_of_the_maximum_plus_one_is_refused_at_once(self):
        received = yield self.send(
            head(b"POST", b"/tickets", b"Content-Length: %d" % (MAX_BODY + 1)))
        self.assertTooLarge(received)

    @defer.inlineCallbacks
    def test_a_chunked_body_within_the_maximum_is_read(self):
        body = json.dumps({"account": "user-42"}).encode()
        received = yield self.send(
            head(b"POST", b"/tickets", b"Authorization: Bearer backend-key",
                 b"Transfer-Encoding: chunked", b"Connection: close")
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        status, _, content = answer(received)
        self.assertEqual(status, 201, received[:300])
        self.assertEqual(self.stats.limits_hit["api-body-size"], 0)
        self.assertEqual(self.site.made[0].kept, len(body))

    @defer.inlineCallbacks
    def test_a_chunked_body_of_exactly_the_maximum_is_read(self):
        pad = b'{"account": "user-42", "attributes": {"pad": "'
        body = pad + b"x" * (MAX_BODY - len(pad) - 3) + b'"}}'
        self.assertEqual(len(body), MAX_BODY)
        received = yield self.send(
            head(b"POST", b"/tickets", b"Authorization: Bearer backend-key",
                 b"Transfer-Encoding: chunked", b"Connection: close")
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        self.assertEqual(answer(received)[0], 201, received[:300])
        self.assertEqual(self.site.made[0].kept, MAX_BODY)


class DashboardBodyTests(HubTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.node = self.start_node()
        admin = AdminApp(self.node.hub, self.node.server, "a password")
        self.site = recording(tracked(admin.site(self.node.server.stats)))
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self._stop)

    async def _closed(self):
        await wait(defer.maybeDeferred(self.port.stopListening))
        for protocol in list(self.site.connections):
            protocol.transport.abortConnection()
        await until(lambda: not self.site.connections, 5, "the dashboard's connections closed")

    def _stop(self):
        return run(self._closed())

    def send(self, data):
        return run(exchange(self.port.getHost().port, data))

    @defer.inlineCallbacks
    def test_a_login_announcing_a_gibibyte_is_answered_413_before_it_is_read(self):
        received = yield self.send(
            head(b"POST", b"/login", b"Content-Type: application/x-www-form-urlencoded",
                 b"Content-Length: %d" % GIB) + b"password=" + b"x" * (1 << 20))
        status, headers, body = answer(received)
        self.assertEqual(status, 413, received[:200])
        self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(body, b"request body larger than %d bytes\n" % DASHBOARD_MAX_BODY)
        self.assertEqual(self.node.server.stats.limits_hit["dashboard-body-size"], 1)
        self.assertIsInstance(self.site.made[0].content, io.BytesIO)
        self.assertEqual(self.site.made[0].handed, 0)

    @defer.inlineCallbacks
    def test_a_chunked_login_is_cut_off_with_413_once_past_the_maximum(self):
        received = yield self.send(
            head(b"POST", b"/login", b"Content-Type: application/x-www-form-urlencoded",
                 b"Transfer-Encoding: chunked") + chunked(DASHBOARD_MAX_BODY + 1024))
        self.assertEqual(answer(received)[0], 413, received[:200])
        self.assertEqual(self.node.server.stats.limits_hit["dashboard-body-size"], 1)
        self.assertIsInstance(self.site.made[0].content, io.BytesIO)
        self.assertLessEqual(self.site.made[0].kept, DASHBOARD_MAX_BODY)

    @defer.inlineCallbacks
    def test_a_login_form_within_the_maximum_is_still_read(self):
        form = b"password=wrong"
        received = yield self.send(
            head(b"POST", b"/login", b"Content-Type: application/x-www-form-urlencoded",
                 b"Content-Length: %d" % len(form), b"Connection: close") + form)
        self.assertEqual(answer(received)[0], 401, received[:200])
