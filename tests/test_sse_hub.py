"""SSE sessions with the hub, on a node in-process against a real Redis
(sessions on StringTransports): a ticket in the stream's URL redeemed in
Redis, its resume token opening the next stream, subscribes by POST, a
history channel's messages carrying their offset as the event id, so that a
client knows where it was, and the dashboard's rows showing it as protocol
sse (docs/protocol.md, "SSE")."""

from twisted.internet import defer

from presence.hub.settings import HistoryRule

from .helpers.hubs import HubTestCase
from .helpers.sse import event_documents, post_request
from .helpers.waiting import run, until


class SSEWithTheHubTests(HubTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.node = self.start_node(history=(HistoryRule("room:*", 100, 300),))
        yield run(until(lambda: self.node.hub.subscriber.connected, 10, "the subscription"))

    def post(self, path, body):
        session, transport = self.connect(self.node, post_request(path, body))
        return transport

    @defer.inlineCallbacks
    def test_a_stream_with_a_ticket_subscribes_by_post_and_gets_offsets_as_event_ids(self):
        ticket, _ = yield self.node.hub.tickets.issue("ann", {}, ["room:*"])
        session, stream = self.connect(self.node, (
            b"GET /sse?ticket=%s HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n"
            % ticket.encode()))
        welcome = yield run(until(lambda: [d for d in event_documents(stream.value())
                                           if d["type"] == "welcome"], 10, "the welcome"))
        self.assertEqual((welcome[0]["account"], session.protocol_name), ("ann", "sse"))
        answer = self.post(welcome[0]["send"], b'{"type":"subscribe","channel":"room:1"}')
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 202"))
        yield run(until(lambda: b'"type":"subscribed"' in stream.value(), 10, "subscribed"))
        for n in range(2):
            yield defer.ensureDeferred(self.node.hub.publish(["room:1"], {"n": n}))
        yield run(until(lambda: stream.value().count(b'"type":"message"') == 2, 10,
                        "the two messages"))
        events = [block for block in stream.value().split(b"\n\n")
                  if b'"type":"message"' in block]
        offsets = [document["offset"] for document in event_documents(b"\n\n".join(events))]
        self.assertEqual(len(offsets), 2)
        for block, offset in zip(events, offsets):
            self.assertTrue(block.startswith(b"id: %d\ndata: " % offset), block)
        # The dashboard's rows (asked across the cluster) show it as sse.
        rows, total = yield defer.ensureDeferred(self.node.hub.queries.sessions())
        self.assertEqual([(row["protocol"], row["account"]) for row in rows], [("sse", "ann")])
        # Its resume token opens a new stream, of the same account, without a ticket.
        session.close(1001, "going away")
        resumed, stream = self.connect(self.node, (
            b"GET /sse?resume=%s HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n"
            % welcome[0]["resume"].encode()))
        again = yield run(until(lambda: [d for d in event_documents(stream.value())
                                         if d["type"] == "welcome"], 10, "the welcome"))
        self.assertEqual((again[0]["account"], resumed.protocol_name), ("ann", "sse"))
        resumed.close(1000, "done")
        self.assertNotEqual(again[0]["resume"], welcome[0]["resume"])
        # A refused ticket: 401 before any session exists.
        refused, transport = self.connect(self.node, (
            b"GET /sse?ticket=%s HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n"
            % ticket.encode()))
        yield run(until(lambda: transport.value(), 10, "the refusal"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401 Unauthorized\r\n"))
