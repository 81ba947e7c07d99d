"""Channel history (--history): every publication to a history channel gets
the channel's next offset in the step that publishes it; a subscribe answers
the channel's epoch and offset; a recover sends every publication after the
client's offset, once, in order, then live ones, whatever is being published
meanwhile; an epoch Redis lost cannot be recovered from; GET /history pages
through what is kept. Real redis-servers, nodes in-process, sessions on
StringTransports (WebSocket and firepresence)."""

import asyncio
import json
import signal
import socket

from twisted.internet import defer, reactor

from presence.hub.history import MAX_PAGE, _Joining
from presence.hub.settings import HistoryRule, parse_history_rule
from presence.redis.engine import RedisUnavailable
from presence.redis.subscriber import RedisSubscriber
from presence.web.admin import prometheus
from presence.websocket.frames import OP_TEXT

from .helpers.api import APITestCase
from .helpers.framing import client_frame, upgrade_request
from .helpers.hubs import HubTestCase, documents
from .helpers.redis import RedisTestCase
from .helpers.waiting import lose, pause, run, until, wait

#: room:* keeps 10,000 publications for five minutes; small:* keeps 5.
RULES = (HistoryRule("small:*", 5, 300), HistoryRule("room:*", 10000, 300))

FIREPRESENCE_WITHOUT_TICKET = (b"OPTIONS / HTTP/1.1\r\nHost: presence.example\r\n"
                               b"Upgrade: firepresence\r\n\r\n")


def send(session, message):
    session.dataReceived(client_frame(OP_TEXT, json.dumps(message)))


def subscribed(transport, channel):
    return [d for d in documents(transport)
            if d.get("type") == "subscribed" and d["channel"] == channel]


def offsets(transport, channel):
    return [d["offset"] for d in documents(transport)
            if d.get("type") == "message" and d["channel"] == channel]


def test_a_history_option_is_a_pattern_a_size_and_a_ttl():
    assert parse_history_rule("room:*=100,300") == HistoryRule("room:*", 100, 300)
    assert parse_history_rule("a=b=1,2") == HistoryRule("a=b", 1, 2)
    for bad in ("room:*", "room:*=100", "=1,2", "room:*=0,300", "room:*=1,0", "x=a,b"):
        try:
            parse_history_rule(bad)
        except ValueError:
            continue
        raise AssertionError("%r was taken" % bad)


class _Session:
    def __init__(self):
        self.sent = []

    def send_document(self, document):
        self.sent.append(document)


def test_a_live_message_of_a_new_epoch_is_no_duplicate_of_the_history():
    """The history sent up to offset 5 of epoch "a"; Redis then lost the
    channel (FLUSHALL) and it started again at 1 under "b": those are new
    publications, not the in-flight duplicates of 1-5 of "a"."""
    joining = _Joining(_Session())
    joining.buffer, joining.last, joining.epoch = None, 5, "a"
    message = {"type": "message", "channel": "room:1"}
    assert joining.receive(dict(message, offset=4), "a")  # a duplicate: dropped, still joining
    assert not joining.receive(dict(message, offset=1), "b")  # another epoch: sent, live
    assert joining.session.sent == [dict(message, offset=1)]


class SubscriptionReadyTests(RedisTestCase):
    """A subscribe to a history channel reads the history only once Redis
    has made the node's subscription: a publication after the read is then
    sure to come live."""

    @defer.inlineCallbacks
    def test_ready_fires_once_redis_confirmed_the_subscription(self):
        subscriber = RedisSubscriber(self.redis_url, lambda channel, message: None,
                                     reactor=reactor)
        self.addCleanup(subscriber.close)
        yield run(until(lambda: subscriber.connected, 10, "connected"))
        process = self.embedded._transport
        process.signalProcess(signal.SIGSTOP)
        self.addCleanup(lambda: process.signalProcess(signal.SIGCONT) if process.pid else None)
        subscriber.subscribe("presence:channel:x")
        ready = subscriber.ready("presence:channel:x")
        yield run(pause(0.3))
        self.assertFalse(ready.called)  # Redis has not read the SUBSCRIBE
        process.signalProcess(signal.SIGCONT)
        yield run(until(lambda: ready.called, 10, "the subscription confirmed"))
        numsub = yield self.engine.execute("PUBSUB", "NUMSUB", "presence:channel:x")
        self.assertEqual(int(numsub[1]), 1)
        self.assertTrue(subscriber.ready("presence:channel:x").called)  # made: at once
        subscriber.subscribe("presence:channel:y")
        waiting = subscriber.ready("presence:channel:y")
        subscriber.unsubscribe("presence:channel:y")
        self.assertTrue(waiting.called)  # nothing left to wait for


class OneHistoryNode(APITestCase, HubTestCase):
    """One node with history on room:* and small:*, its API on a real port."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.node = self.start_node(history=RULES)
        self.url = self.serve_api(hub=self.node.hub)
        yield run(until(lambda: self.node.hub.subscriber.connected, 10, "the subscription"))

    def open(self, node=None):
        return self.open_session(node or self.node, "ann", channels=("room:*", "small:*",
                                                                     "other:*"))

    @defer.inlineCallbacks
    def subscribe(self, session, transport, channel, **asked):
        send(session, dict({"type": "subscribe", "channel": channel}, **asked))
        answers = yield run(until(lambda: subscribed(transport, channel), 10,
                                  "the subscribed answer"))
        return answers[-1]

    def publish(self, body):
        return self.request("POST", "/publish", body)


class HistoryTests(OneHistoryNode):
    @defer.inlineCallbacks
    def test_offsets_are_contiguous_and_live_and_stored_messages_carry_the_same(self):
        session, transport = self.open()
        answer = yield self.subscribe(session, transport, "room:1")
        self.assertEqual(answer["offset"], 0)
        epoch = answer["epoch"]
        self.assertRegex(epoch, "^[0-9a-f]{12}$")
        answers = []
        for n in range(1, 31):
            status, _, body = yield self.publish(
                {"channels": ["room:1", "other:1", "room:2"], "data": {"n": n}})
            self.assertEqual(status, 200, body)
            answers.append(body["offsets"])
        # Per channel, from 1, no gap; channels without history get none.
        self.assertEqual([a["room:1"] for a in answers],
                         [{"epoch": epoch, "offset": n} for n in range(1, 31)])
        self.assertEqual([a["room:2"]["offset"] for a in answers], list(range(1, 31)))
        self.assertNotIn("other:1", answers[0])
        yield run(until(lambda: len(offsets(transport, "room:1")) == 30, 10, "30 messages"))
        live = [d for d in documents(transport) if d.get("type") == "message"]
        self.assertEqual([(d["offset"], d["data"]) for d in live],
                         [(n, {"n": n}) for n in range(1, 31)])
        # The epoch the nodes' copy names is not the clients' (subscribed told it).
        self.assertEqual(list(live[0]), ["type", "channel", "offset", "data"])
        status, _, stored = yield self.request("GET", "/history/room:1?limit=1000")
        self.assertEqual(status, 200, stored)
        self.assertEqual((stored["channel"], stored["epoch"], stored["offset"]),
                         ("room:1", epoch, 30))
        self.assertEqual(stored["messages"], [{"offset": n, "data": {"n": n}}
                                              for n in range(1, 31)])

    @defer.inlineCallbacks
    def test_history_is_paged_with_since_and_limit(self):
        for n in range(1, 26):
            yield self.publish({"channel": "room:p", "data": "m%d" % n})
        pages = []
        since = 0
        while True:
            status, _, page = yield self.request("GET", "/history/room:p?since=%d&limit=10"
                                                 % since)
            self.assertEqual(status, 200, page)
            if not page["messages"]:
                break
            pages.append([m["offset"] for m in page["messages"]])
            since = page["messages"][-1]["offset"]
        self.assertEqual(pages, [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))])
        self.assertEqual(page["offset"], 25)
        # The limit is capped; a channel without history is 404; a bad since is 400.
        _, _, capped = yield self.request("GET", "/history/room:p?limit=%d" % (MAX_PAGE * 5))
        self.assertEqual(len(capped["messages"]), 25)
        status, _, body = yield self.request("GET", "/history/other:1")
        self.assertEqual((status, body["error"]), (404, "not_found"))
        status, _, body = yield self.request("GET", "/history/room:p?since=-1")
        self.assertEqual((status, body["error"]), (400, "bad_request"))
        status, _, body = yield self.request("GET", "/history/room:p", token="wrong")
        self.assertEqual(status, 401)

    @defer.inlineCallbacks
    def test_a_small_history_keeps_the_last_size_and_pages_from_the_oldest_kept(self):
        for n in range(1, 11):
            yield self.publish({"channel": "small:1", "data": n})
        _, _, page = yield self.request("GET", "/history/small:1?since=2")
        self.assertEqual([m["offset"] for m in page["messages"]], [6, 7, 8, 9, 10])
        self.assertEqual(int((yield self.engine.execute("XLEN", "presence:history:small:1"))),
                         5)

    @defer.inlineCallbacks
    def test_a_recover_sends_every_publication_after_the_offset_then_live_ones(self):
        first, first_transport = self.open()
        answer = yield self.subscribe(first, first_transport, "room:1")
        for n in range(1, 11):
            yield self.publish({"channel": "room:1", "data": n})
        session, transport = self.open()
        answer = yield self.subscribe(session, transport, "room:1",
                                      recover={"epoch": answer["epoch"], "offset": 4})
        self.assertEqual((answer["recovered"], answer["offset"]), (True, 10))
        yield self.publish({"channel": "room:1", "data": 11})
        yield run(until(lambda: 11 in offsets(transport, "room:1"), 10, "the live message"))
        self.assertEqual(offsets(transport, "room:1"), list(range(5, 12)))
        self.assertEqual(documents(transport)[0]["type"], "subscribed")  # before them
        self.assertEqual(self.node.hub.stats.recoveries,
                         {"attempted": 1, "succeeded": 1, "failed": 0})

    @defer.inlineCallbacks
    def test_a_recover_redis_does_not_answer_is_not_recovered_and_live_ones_follow(self):
        first, first_transport = self.open()
        answer = yield self.subscribe(first, first_transport, "room:z")
        yield self.publish({"channel": "room:z", "data": 1})
        # Delivered to this node before the second session subscribes: else
        # it could reach that session too, as any message still on its way.
        yield run(until(lambda: offsets(first_transport, "room:z") == [1], 10,
                        "the first message delivered"))
        process = self.embedded._transport
        process.signalProcess(signal.SIGSTOP)  # Redis stands still: nothing is answered
        thaw = lambda: process.signalProcess(signal.SIGCONT)  # noqa: E731
        self.addCleanup(thaw)
        session, transport = self.open()
        send(session, {"type": "subscribe", "channel": "room:z",
                       "recover": {"epoch": answer["epoch"], "offset": 0}})
        answer, = yield run(until(lambda: subscribed(transport, "room:z"), 10, "subscribed"))
        self.assertEqual(answer, {"type": "subscribed", "channel": "room:z", "recovered": False})
        thaw()
        yield run(until(lambda: self.engine.ping(), 10, "Redis going on",
                        retry_on=(RedisUnavailable,)))
        status, _, body = yield self.publish({"channel": "room:z", "data": 2})
        self.assertEqual(status, 200, body)
        yield run(until(lambda: offsets(transport, "room:z"), 10, "the live message"))
        self.assertEqual(offsets(transport, "room:z"), [2])
        self.assertEqual(self.node.hub.stats.recoveries["failed"], 1)

    @defer.inlineCallbacks
    def test_a_recovery_past_half_the_outgoing_bound_is_not_made(self):
        # Written at once, a longer one would close the client as a slow
        # consumer (past --max-outgoing-buffer unread), and it would come
        # back to recover it again: it reloads its state instead.
        self.node.server.settings.max_outgoing_buffer = 4000  # 2,000 bytes of history
        first, first_transport = self.open()
        answer = yield self.subscribe(first, first_transport, "room:b")
        for n in range(1, 31):
            yield self.publish({"channel": "room:b", "data": "x" * 90})
        session, transport = self.open()
        recovered = yield self.subscribe(session, transport, "room:b",
                                         recover={"epoch": answer["epoch"], "offset": 0})
        self.assertEqual((recovered["recovered"], recovered["offset"]), (False, 30))
        near, near_transport = self.open()
        recovered = yield self.subscribe(near, near_transport, "room:b",
                                         recover={"epoch": answer["epoch"], "offset": 25})
        self.assertTrue(recovered["recovered"])
        latest, latest_transport = self.open()
        yield self.subscribe(latest, latest_transport, "room:b", history=30)
        yield self.publish({"channel": "room:b", "data": "live"})
        for received in (transport, near_transport, latest_transport):
            yield run(until(lambda: 31 in offsets(received, "room:b"), 10, "the live one"))
        self.assertEqual(offsets(transport, "room:b"), [31])
        self.assertEqual(offsets(near_transport, "room:b"), list(range(26, 32)))
        # Of the last 30, the latest that fit (about 156 bytes each).
        self.assertEqual(offsets(latest_transport, "room:b"), list(range(19, 32)))

    @defer.inlineCallbacks
    def test_history_k_sends_the_last_k_first(self):
        for n in range(1, 8):
            yield self.publish({"channel": "room:k", "data": n})
        session, transport = self.open()
        answer = yield self.subscribe(session, transport, "room:k", history=3)
        self.assertEqual(answer["offset"], 7)
        self.assertNotIn("recovered", answer)
        yield run(until(lambda: len(offsets(transport, "room:k")) == 3, 10, "three messages"))
        self.assertEqual([d["data"] for d in documents(transport) if d["type"] == "message"],
                         [5, 6, 7])

    @defer.inlineCallbacks
    def test_a_recover_from_before_the_oldest_kept_or_another_epoch_is_not_recovered(self):
        session, transport = self.open()
        answer = yield self.subscribe(session, transport, "small:2")
        epoch = answer["epoch"]
        for n in range(1, 11):
            yield self.publish({"channel": "small:2", "data": n})
        late, late_transport = self.open()
        answer = yield self.subscribe(late, late_transport, "small:2",
                                      recover={"epoch": epoch, "offset": 4})
        self.assertEqual((answer["recovered"], answer["epoch"], answer["offset"]),
                         (False, epoch, 10))
        just, just_transport = self.open()
        answer = yield self.subscribe(just, just_transport, "small:2",
                                      recover={"epoch": epoch, "offset": 5})
        self.assertTrue(answer["recovered"])
        other, other_transport = self.open()
        answer = yield self.subscribe(other, other_transport, "small:2",
                                      recover={"epoch": "not-" + epoch, "offset": 9})
        self.assertFalse(answer["recovered"])
        plain, plain_transport = self.open()
        answer = yield self.subscribe(plain, plain_transport, "other:2",
                                      recover={"epoch": epoch, "offset": 9})
        self.assertEqual(answer, {"type": "subscribed", "channel": "other:2",
                                  "recovered": False})
        yield run(until(lambda: len(offsets(just_transport, "small:2")) == 5, 10, "6-10"))
        self.assertEqual(offsets(just_transport, "small:2"), [6, 7, 8, 9, 10])
        self.assertEqual(offsets(late_transport, "small:2"), [])
        self.assertEqual(self.node.hub.stats.recoveries,
                         {"attempted": 4, "succeeded": 1, "failed": 3})

    @defer.inlineCallbacks
    def test_after_flushall_a_recover_is_refused_with_a_new_epoch(self):
        session, transport = self.open()
        answer = yield self.subscribe(session, transport, "room:f")
        old_epoch = answer["epoch"]
        for n in range(1, 6):
            yield self.publish({"channel": "room:f", "data": n})
        yield self.engine.execute("FLUSHALL")
        late, late_transport = self.open()
        answer = yield self.subscribe(late, late_transport, "room:f",
                                      recover={"epoch": old_epoch, "offset": 3})
        self.assertFalse(answer["recovered"])
        self.assertNotEqual(answer["epoch"], old_epoch)
        self.assertEqual(answer["offset"], 0)
        # The next publication starts the new epoch at 1.
        _, _, body = yield self.publish({"channel": "room:f", "data": "new"})
        self.assertEqual(body["offsets"]["room:f"], {"epoch": answer["epoch"], "offset": 1})

    @defer.inlineCallbacks
    def test_a_retried_publish_id_is_stored_once_and_answers_its_first_offsets(self):
        body = {"channels": ["room:i", "other:i"], "data": "once", "id": "order-1"}
        _, _, first = yield self.publish(body)
        _, _, again = yield self.publish(body)
        self.assertEqual(first["offsets"]["room:i"]["offset"], 1)
        self.assertEqual((again["duplicate"], again["offsets"]), (True, first["offsets"]))
        _, _, page = yield self.request("GET", "/history/room:i")
        self.assertEqual(page["messages"], [{"offset": 1, "data": "once"}])

    def test_a_bad_recover_or_history_is_an_error_and_subscribes_nothing(self):
        session, transport = self.open()
        for asked in ({"recover": {"epoch": "e"}}, {"recover": {"epoch": 1, "offset": 1}},
                      {"recover": {"epoch": "e", "offset": -1}}, {"recover": "e"},
                      {"history": "3"}, {"history": True}):
            send(session, dict({"type": "subscribe", "channel": "room:1"}, **asked))
        errors = [d for d in documents(transport) if d["type"] == "error"]
        self.assertEqual(len(errors), 6)
        self.assertNotIn("room:1", self.node.hub.channels.subscriptions.get(session.id, ()))

    @defer.inlineCallbacks
    def test_firepresence_sessions_get_offsets_and_recover_alike(self):
        for n in range(1, 6):
            yield self.publish({"channel": "room:fp", "data": n})
        _, _, page = yield self.request("GET", "/history/room:fp")
        session, transport = self.connect(self.node, FIREPRESENCE_WITHOUT_TICKET)
        session.account = "ann"
        session.allowed_channels = ("room:*",)
        session.become_ready()
        transport.clear()

        def lines():
            return [json.loads(line) for line in transport.value().splitlines()]
        session.dataReceived(json.dumps({"type": "subscribe", "channel": "room:fp", "recover": {
            "epoch": page["epoch"], "offset": 2}}).encode() + b"\n")
        yield run(until(lambda: len(lines()) >= 4, 10, "subscribed and three messages"))
        yield self.publish({"channel": "room:fp", "data": 6})
        yield run(until(lambda: len(lines()) >= 5, 10, "the live message"))
        got = lines()
        self.assertEqual((got[0]["type"], got[0]["recovered"], got[0]["offset"]),
                         ("subscribed", True, 5))
        self.assertEqual([(d["offset"], d["data"]) for d in got[1:]],
                         [(3, 3), (4, 4), (5, 5), (6, 6)])


class CountedTests(OneHistoryNode):
    """Recoveries are counted in /metrics, the node report and the
    dashboard's overview, with the history's memory in Redis."""

    @defer.inlineCallbacks
    def test_recoveries_and_history_memory_are_counted_everywhere(self):
        session, transport = self.open()
        answer = yield self.subscribe(session, transport, "room:c")
        for n in range(1, 1001):
            yield self.publish({"channel": "room:c", "data": "x" * 90})
        again, again_transport = self.open()
        yield self.subscribe(again, again_transport, "room:c",
                             recover={"epoch": answer["epoch"], "offset": 990})
        lost, lost_transport = self.open()
        yield self.subscribe(lost, lost_transport, "room:c",
                             recover={"epoch": "gone", "offset": 990})
        hub = self.node.hub
        yield hub.history.measure(lambda: list(hub.channels.listeners))
        self.assertEqual(hub.history.memory["channels"], 1)
        # 1,000 publications of about 100 bytes: 100-150 KB.
        self.assertTrue(100000 < hub.history.memory["bytes"] < 150000, hub.history.memory)
        metrics = prometheus(self.node.server, hub)
        for line in ('presence_recoveries_total{outcome="attempted"} 2',
                     'presence_recoveries_total{outcome="succeeded"} 1',
                     'presence_recoveries_total{outcome="failed"} 1',
                     "presence_history_channels 1",
                     "presence_history_memory_bytes %d" % hub.history.memory["bytes"]):
            self.assertIn(line + "\n", metrics)
        report = hub.liveness.node_report()
        self.assertEqual(report["recoveries"], {"attempted": 2, "succeeded": 1, "failed": 1})
        self.assertEqual(report["history_memory"], hub.history.memory)
        yield hub.liveness.announce()
        overview = yield defer.ensureDeferred(hub.queries.overview())
        self.assertEqual(overview["recoveries"], {"attempted": 2, "succeeded": 1, "failed": 1})
        self.assertEqual(overview["history_memory"], hub.history.memory)


class RecoveryUnderLoadTests(HubTestCase):
    """Publishing at full rate from another node while a client recovers."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.a = self.start_node(history=RULES, engine_timeout=10.0)
        self.b = self.start_node(history=RULES, engine_timeout=10.0)
        for node in (self.a, self.b):
            yield run(until(lambda: node.hub.subscriber.connected, 10, "the subscription"))

    async def publish_burst(self, node, channel, count, published, in_flight=64):
        """``count`` publications to ``channel`` from ``node``, ``in_flight``
        at a time, as fast as Redis takes them; ``published``: their (offset,
        n) as answered."""
        numbers = iter(range(1, count + 1))

        async def publisher():
            for n in numbers:
                answer = await wait(node.hub.publish_recorded(None, [channel], {"n": n}))
                published.append((answer[2][channel]["offset"], n))
        await asyncio.gather(*[publisher() for _ in range(in_flight)])

    def messages(self, transport):
        return [d for d in documents(transport) if d.get("type") == "message"]

    @defer.inlineCallbacks
    def test_a_recover_during_a_burst_of_5000_publishes_has_no_gap_and_no_duplicate(self):
        published = []
        burst = run(self.publish_burst(self.b, "room:burst", 5000, published))
        yield run(until(lambda: len(published) >= 1000, 30, "a thousand published"))
        self.assertLess(len(published), 4000)
        epoch = (yield self.engine.execute("HGET", "presence:history-epoch:room:burst",
                                           "epoch"))
        # Node A has no subscriber of the channel yet: its pub/sub subscription
        # is made by this subscribe, while the burst goes on.
        session, transport = self.open_session(self.a, "ann")
        send(session, {"type": "subscribe", "channel": "room:burst",
                       "recover": {"epoch": epoch, "offset": 500}})
        yield burst
        answer, = yield run(until(lambda: subscribed(transport, "room:burst"), 10, "subscribed"))
        self.assertTrue(answer["recovered"])
        # The subscribe happened during the burst: part came from history, part live.
        self.assertLess(answer["offset"], 5000)
        self.assertGreater(answer["offset"], 500)
        yield run(until(lambda: len(self.messages(transport)) >= 4500, 30,
                        "every publication after 500"))
        got = [d["offset"] for d in self.messages(transport)]
        self.assertEqual(got, list(range(501, 5001)))
        # Each with the data its publish was answered that offset for.
        self.assertEqual([(d["offset"], d["data"]["n"]) for d in self.messages(transport)],
                         sorted(published)[500:])
        self.assertEqual([offset for offset, _ in sorted(published)], list(range(1, 5001)))

    @defer.inlineCallbacks
    def test_a_client_moving_from_node_b_to_node_a_recovers_everything_once(self):
        published = []
        on_b, b_transport = self.open_session(self.b, "ann")
        send(on_b, {"type": "subscribe", "channel": "room:move"})
        answer, = yield run(until(lambda: subscribed(b_transport, "room:move"), 10,
                                  "subscribed on B"))
        epoch = answer["epoch"]
        burst = run(self.publish_burst(self.a, "room:move", 3000, published, in_flight=16))
        yield run(until(lambda: len(self.messages(b_transport)) >= 700, 30, "700 on B"))
        # B's connection goes (lost, no close); what B delivered is what the client has.
        lose(on_b, b_transport)
        seen = [d["offset"] for d in self.messages(b_transport)]
        last = seen[-1]
        self.assertEqual(seen, list(range(1, last + 1)))
        on_a, a_transport = self.open_session(self.a, "ann")
        send(on_a, {"type": "subscribe", "channel": "room:move",
                    "recover": {"epoch": epoch, "offset": last}})
        yield burst
        self.assertLess(last, 3000)
        yield run(until(lambda: len(self.messages(a_transport)) >= 3000 - last, 30,
                        "everything after %d" % last))
        answer, = subscribed(a_transport, "room:move")
        self.assertTrue(answer["recovered"])
        self.assertEqual(seen + [d["offset"] for d in self.messages(a_transport)],
                         list(range(1, 3001)))


class RecoveryOverARealSocketTests(HubTestCase):
    """A client that does not read while its recovery is sent: what the
    kernel and Twisted's 64 KiB do not take counts against
    --max-outgoing-buffer (here 128 KiB)."""

    @defer.inlineCallbacks
    def test_a_recovery_larger_than_the_client_may_leave_unread_does_not_drop_it(self):
        node = self.start_node(history=RULES)
        node.server.settings.max_outgoing_buffer = 128 * 1024
        port = reactor.listenTCP(0, node.factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        yield run(until(lambda: node.hub.subscriber.connected, 10, "the subscription"))
        # 3,000 publications of about 300 bytes: 900 KB of history.
        data = "x" * 300
        for start in range(0, 3000, 100):
            yield defer.gatherResults([node.hub.publish_recorded(None, ["room:big"], data)
                                       for _ in range(100)])
        epoch = yield self.engine.execute("HGET", "presence:history-epoch:room:big", "epoch")
        ticket, _ = yield node.hub.tickets.issue("ann", {}, ["room:*"])

        async def scenario():
            loop = asyncio.get_event_loop()
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            self.addCleanup(sock.close)
            await loop.sock_connect(sock, ("127.0.0.1", port.getHost().port))
            await loop.sock_sendall(sock, upgrade_request("/?ticket=" + ticket))
            await until(lambda: any(s.ready for s in node.server.sessions.values()), 10,
                        "the session ready")
            session, = node.server.sessions.values()
            session.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            await loop.sock_sendall(sock, client_frame(OP_TEXT, json.dumps(
                {"type": "subscribe", "channel": "room:big",
                 "recover": {"epoch": epoch, "offset": 0}})))
            recoveries = node.hub.stats.recoveries
            await until(lambda: recoveries["succeeded"] + recoveries["failed"] == 1, 10,
                        "the subscribe answered")
            await pause(0.5)  # the client reads nothing meanwhile
            return session

        session = yield run(scenario())
        self.assertEqual(node.server.stats.slow_consumers, 0)
        self.assertIsNone(session.close_record)
        self.assertEqual(node.hub.stats.recoveries["failed"], 1)
