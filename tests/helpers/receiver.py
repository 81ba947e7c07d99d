"""A webhook receiver for the tests: a real HTTP server (twisted.web on
loopback) whose handling is docs/api.md's receiver, run as written there
(its signature check and its deduplication by id)."""

import json
import pathlib

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

__all__ = ["documented_receiver", "Receiver", "start_receiver"]

API_DOC = pathlib.Path(__file__).resolve().parent.parent.parent / "docs" / "api.md"


def documented_receiver(secret, handle):
    """docs/api.md's receiver (the Python block under "### A receiver"), its
    SECRET ``secret`` and its ``handle`` given: its ``receive(signature,
    body)``, answering a status."""
    text = API_DOC.read_text()
    section = text[text.index("### A receiver"):]
    start = section.index("```python\n") + len("```python\n")
    code = section[start:section.index("```", start)]
    namespace = {}
    exec(compile(code, str(API_DOC), "exec"), namespace)
    namespace["SECRET"] = secret.encode("utf-8")
    namespace["handle"] = handle
    return namespace["receive"]


class Receiver(Resource):
    """Keeps every request (``requests``: status, signature, body), every
    event of every request as it came (``arrived``, duplicates included) and
    the events the documented receiver handled (``events``: each id once).
    ``refuse``: answer the next N requests 503; ``hold``: answer nothing
    (the requests are kept in ``held``)."""

    isLeaf = True

    def __init__(self, secret):
        super().__init__()
        self.requests = []
        self.arrived = []
        self.events = []
        self.refuse = 0
        self.refuse_always = False
        self.hold = False
        self.held = []
        self.receive = documented_receiver(secret, self.events.append)

    def render_POST(self, request):
        body = request.content.read()
        signature = (request.getHeader("x-presence-signature") or "")
        if self.hold:
            self.held.append(request)
            self.requests.append((None, signature, body))
            return NOT_DONE_YET
        if self.refuse_always or self.refuse:
            self.refuse = max(0, self.refuse - 1)
            status = 503
        else:
            try:
                status = self.receive(signature, body)
            except Exception:
                status = 400
            if status == 200:
                self.arrived.extend(json.loads(body)["events"])
        self.requests.append((status, signature, body))
        request.setResponseCode(status)
        return b""

    def ids(self):
        return [event["id"] for event in self.events]


def start_receiver(test, secret, port=0):
    """A Receiver listening on loopback (``port``, any free one by default),
    stopped at ``test``'s cleanup: ``(receiver, listening port, URL)``."""
    receiver = Receiver(secret)
    site = Site(receiver)
    listening = reactor.listenTCP(port, site, interface="127.0.0.1")
    test.addCleanup(listening.stopListening)
    url = "http://127.0.0.1:%d/hook" % listening.getHost().port
    return receiver, listening, url
