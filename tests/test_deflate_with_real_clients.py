"""permessage-deflate with real clients on real sockets: the ``websockets``
library, and headless Chromium's own WebSocket from a page served by the
test (browsers offer permessage-deflate on every connection)."""

import asyncio
import json
import os

import websockets
from playwright.async_api import async_playwright
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from presence.net.dispatch import ListenerFactory
from presence.net.server import Server
from presence.net.settings import ServerSettings
from presence.websocket.deflate import PerMessageDeflate
from presence.websocket.handshake import HandshakeConfig
from presence.wire.prepared import PreparedMessage

from .helpers.browser import CHROMIUM, CHROMIUM_ARGS
from .helpers.servers import Echo, ServerTestCase
from .helpers.waiting import run, until

# Something JSON-shaped and long enough to be compressed (min_size is 128).
DOCUMENT = json.dumps({"type": "message", "channel": "room:lobby",
                       "data": [{"account": "user-%d" % i, "online": True} for i in range(40)]})


class CompressionTestCase(ServerTestCase):
    deflate = PerMessageDeflate()

    def setUp(self):
        self.app = Echo()
        settings = ServerSettings(handshake=HandshakeConfig(extensions=[self.deflate]),
                                  max_message_size=4 * 1024 * 1024)
        self.server = self.app.node = Server(self.app, settings, reactor)
        self.factory = ListenerFactory(self.server)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.url = "ws://127.0.0.1:%d/" % self.port.getHost().port
        self.addCleanup(self._stop)

    def only_extension(self):
        session, = self.server.sessions.values()
        extension, = session.connection.extensions
        return session, extension


class WebsocketsClientTests(CompressionTestCase):
    def test_compression_is_negotiated_and_messages_round_trip_both_ways(self):
        big = os.urandom(64) * 20000  # compressible binary, 1.25 MiB

        async def scenario():
            async with websockets.connect(self.url, compression="deflate", max_size=None) as ws:
                self.assertEqual(
                    [type(e).__name__ for e in ws.protocol.extensions], ["PerMessageDeflate"])
                await ws.send(DOCUMENT)
                self.assertEqual(await ws.recv(), DOCUMENT)
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
                await ws.send("short")  # under min_size: sent back uncompressed
                self.assertEqual(await ws.recv(), "short")
                session, extension = self.only_extension()
                self.assertEqual(session.extensions, ("permessage-deflate",))
                self.assertEqual(session.extension_details, (
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",))
                # The client compressed its messages; the server compressed
                # the two long answers.
                self.assertGreaterEqual(extension.inflated, 2)
                self.assertEqual(extension.deflated, 2)
        return run(scenario())

    def test_a_broadcast_to_compressed_sessions_is_compressed_once(self):
        async def scenario():
            clients = [await websockets.connect(self.url, compression="deflate")
                       for _ in range(5)]
            try:
                await until(lambda: len(self.server.sessions) >= 5)
                message = PreparedMessage.text(DOCUMENT)
                self.assertEqual(self.server.fan_out(message, self.server.sessions.values()), 5)
                frames = set(map(id, message.forms.values()))
                self.assertEqual(len(frames), 1)
                for ws in clients:
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 5), DOCUMENT)
            finally:
                for ws in clients:
                    await ws.close()
        return run(scenario())


class ContextTakeoverTests(CompressionTestCase):
    deflate = PerMessageDeflate(server_context_takeover=True, client_context_takeover=True)

    def test_both_sides_keep_their_context_when_configured(self):
        async def scenario():
            async with websockets.connect(self.url, compression="deflate") as ws:
                for _ in range(3):
                    await ws.send(DOCUMENT)
                    self.assertEqual(await ws.recv(), DOCUMENT)
                session, extension = self.only_extension()
                self.assertEqual(session.extension_details, ("permessage-deflate",))
                self.assertTrue(extension.keep_context)
                self.assertTrue(extension.client_keeps_context)
        return run(scenario())


PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>presence compression test</title>
<script>
window.result = new Promise((resolve, reject) => {
  const document_ = %s;
  const ws = new WebSocket("ws://127.0.0.1:%d/");
  const received = [];
  ws.onopen = () => { ws.send(document_); ws.send("hi"); };
  ws.onmessage = (event) => {
    received.push(event.data);
    if (received.length === 2) {
      resolve({extensions: ws.extensions, echoed: received[0] === document_,
               short: received[1]});
      ws.close(1000, "done");
    }
  };
  ws.onerror = () => reject("websocket error");
});
</script>
"""


class Page(Resource):
    isLeaf = True

    def __init__(self, body):
        super().__init__()
        self.body = body

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return self.body


class ChromiumTests(CompressionTestCase):
    def setUp(self):
        super().setUp()
        page = PAGE % (json.dumps(DOCUMENT).encode(), self.port.getHost().port)
        self.web = reactor.listenTCP(0, Site(Page(page)), interface="127.0.0.1")
        self.addCleanup(self.web.stopListening)

    def test_chromium_negotiates_compression_and_messages_round_trip(self):
        async def scenario():
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = await browser.new_page()
                    await page.goto("http://127.0.0.1:%d/page.html" % self.web.getHost().port)
                    result = await page.evaluate("window.result")
                finally:
                    await browser.close()
            self.assertEqual(result["extensions"], "permessage-deflate; "
                             "server_no_context_takeover; client_no_context_takeover")
            self.assertTrue(result["echoed"])
            self.assertEqual(result["short"], "hi")
            await until(lambda: self.app.closed)
            record, = self.app.closed
            self.assertEqual((record.code, record.reason, record.clean), (1000, "done", True))

        return run(scenario())
