"""Webhooks deliver the event log: every presence event, signed, batched,
acknowledged only after a 2xx, retried with backoff, given up into dead
letters past their maximum age, filtered by name, in order, each once after
deduplication by id. A real Redis, nodes in-process (their sessions on
StringTransports), and a real HTTP receiver on loopback running the
receiver docs/api.md shows (tests/helpers/receiver.py). Retries and ages
are driven with a Clock where the test says so; a node's death is
tests/test_webhooks_cluster.py's."""

import json
import time

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from presence.webhooks.delivery import Webhooks, percentile
from presence.webhooks.settings import WebhookSettings
from presence.webhooks.signing import signature, verify
from presence.websocket.frames import OP_TEXT

from .helpers.framing import client_frame
from .helpers.hubs import HubTestCase
from .helpers.receiver import documented_receiver, start_receiver
from .helpers.waiting import lose, pause, run, until, wait

SECRET = "whsec-test"


def message(kind, channel):
    return client_frame(OP_TEXT, json.dumps({"type": kind, "channel": channel}))


def done(work):
    """A Deferred or a Twisted coroutine, awaitable from the test's asyncio
    coroutine."""
    return wait(defer.ensureDeferred(work))


def real_time_clock():
    """A Clock at the wall clock's time: events' ages are their time_ms
    (Redis's clock) against it."""
    clock = Clock()
    clock.advance(time.time())
    return clock


async def drive(clock, seconds, condition=lambda: False, step=0.5):
    """Advance ``clock`` by up to ``seconds``, ``step`` at a time, letting
    real I/O (Redis, HTTP) happen between steps; stops early once
    ``condition()`` holds, and answers it."""
    end = clock.seconds() + seconds
    while clock.seconds() < end:
        if condition():
            return True
        clock.advance(step)
        await pause(0.02)
    return condition()


class WebhookTestCase(HubTestCase):
    def start_webhooks(self, node, url, clock=reactor, **settings):
        """Webhooks to ``url`` delivering from ``node``, on ``clock``
        (retries quick unless ``settings`` say otherwise); stopped at
        cleanup."""
        values = dict(urls=(url,), secret=SECRET, retry_min=0.05, retry_max=0.2)
        values.update(settings)
        webhooks = Webhooks(WebhookSettings(**values), self.make_engine(), node.hub.keys,
                            node.hub.node_id, clock, reactor=reactor)
        webhooks.start()
        self.addCleanup(webhooks.stop)
        return webhooks

    async def ready(self, webhooks):
        """Once the webhooks' consumer group exists (it starts at the log's
        end: events before it are not theirs)."""
        await until(lambda: all(hook._group_ready for hook in webhooks.hooks), 10,
                    "the webhook's consumer group")

    async def logged(self):
        """Every entry of the event log: ``[(id, event)]``."""
        found, start = [], "-"
        while True:
            entries = await done(self.engine.execute("XRANGE", self.keys.event_log, start, "+",
                                                     "COUNT", 1000))
            found.extend((str(entry_id), json.loads(dict(zip(fields[0::2], fields[1::2]))[
                "data"])) for entry_id, fields in entries)
            if len(entries) < 1000:
                return found
            start = "(" + str(entries[-1][0])

    def churn(self, node, accounts, channel="room:1"):
        """A session for each of ``accounts``, each joining ``channel``;
        then each ends. Answers the sessions."""
        opened = [self.open_session(node, account) for account in accounts]
        for session, _ in opened:
            session.dataReceived(message("subscribe", channel))
        for session, transport in opened:
            lose(session, transport)
        return [session for session, _ in opened]


class MachineryTests(WebhookTestCase):
    """The delivery loop alone, on entries added to the log the way the
    scripts write them (a name, and the event's JSON)."""

    async def add(self, events):
        ids = []
        for event in events:
            event = dict(event, time_ms=int(time.time() * 1000))
            ids.append(str(await done(self.engine.execute(
                "XADD", self.keys.event_log, "*", "name", event["name"], "data",
                json.dumps(event)))))
        return ids

    def test_entries_go_in_order_in_batches_of_100_acknowledged_after_a_2xx(self):
        async def scenario():
            node = self.start_node()
            receiver, _, url = start_receiver(self, SECRET)
            receiver.refuse = 2
            webhooks = self.start_webhooks(node, url)
            await self.ready(webhooks)
            ids = await self.add([{"name": "online" if n % 2 == 0 else "offline",
                                   "account": "user-%d" % (n % 7), "session": "s%d" % n}
                                  for n in range(250)])
            await until(lambda: len(receiver.events) >= 250, 20, "250 events")
            self.assertEqual(receiver.ids(), ids)
            self.assertEqual([status for status, _, _ in receiver.requests[:2]], [503, 503])
            self.assertEqual({status for status, _, _ in receiver.requests[2:]}, {200})
            self.assertLessEqual(max(len(json.loads(body)["events"])
                                     for _, _, body in receiver.requests), 100)
            # The refused request was the first batch, sent again whole.
            first = [event["id"] for event in json.loads(receiver.requests[0][2])["events"]]
            self.assertEqual(first, ids[:len(first)])
            hook = webhooks.hooks[0]
            await until(lambda: hook.delivered == 250, 10, "250 acknowledged")
            await done(hook.refresh_status())
            self.assertEqual((hook.status["pending"], hook.status["delivered"], hook.failures),
                             (0, 250, 2))
            self.assertEqual(hook.report()["latency_p50_ms"] is not None, True)
        return run(scenario())

    def test_a_second_node_does_not_deliver_while_the_first_holds_the_lease(self):
        async def scenario():
            first, second = self.start_node(), self.start_node()
            receiver, _, url = start_receiver(self, SECRET)
            one = self.start_webhooks(first, url)
            await self.ready(one)
            await until(lambda: one.hooks[0].leading, 10, "the first node leading")
            two = self.start_webhooks(second, url)
            await self.ready(two)
            ids = await self.add([{"name": "online", "account": "a%d" % n, "session": "s%d" % n}
                                  for n in range(30)])
            await until(lambda: len(receiver.events) >= 30, 10, "30 events")
            await until(lambda: one.hooks[0].delivered == 30, 10, "30 acknowledged")
            self.assertEqual(receiver.ids(), ids)
            self.assertEqual((one.hooks[0].delivered, two.hooks[0].delivered), (30, 0))
            # The first stops: the second takes the lease over and delivers.
            await done(one.stop())
            more = await self.add([{"name": "offline", "account": "a1", "session": "s1"}])
            await until(lambda: len(receiver.events) >= 31, 10, "the next event")
            self.assertEqual(receiver.ids()[-1:], more)
            self.assertTrue(two.hooks[0].leading)
        return run(scenario())


class SignatureTests(SynchronousTestCase):
    """The documented receiver (docs/api.md, run as written) against
    signatures made as Presence makes them."""

    def setUp(self):
        self.handled = []
        self.receive = documented_receiver(SECRET, self.handled.append)
        self.body = b'{"time_ms":1,"events":[{"id":"1-0","name":"online"}]}'

    def test_a_right_signature_is_taken_and_an_event_handled_once(self):
        header = signature(SECRET, self.body, time.time())
        self.assertEqual(self.receive(header, self.body), 200)
        self.assertEqual(self.receive(header, self.body), 200)  # a retry
        self.assertEqual(self.handled, [{"id": "1-0", "name": "online"}])

    def test_a_wrong_secret_fails_verification(self):
        header = signature("not-the-secret", self.body, time.time())
        self.assertEqual(self.receive(header, self.body), 400)
        self.assertFalse(verify(SECRET, header, self.body, time.time()))
        self.assertEqual(self.handled, [])

    def test_a_changed_body_or_an_old_timestamp_fails(self):
        header = signature(SECRET, self.body, time.time())
        self.assertEqual(self.receive(header, self.body.replace(b"online", b"offline")), 400)
        old = signature(SECRET, self.body, time.time() - 600)
        self.assertEqual(self.receive(old, self.body), 400)
        self.assertEqual(self.handled, [])

    def test_the_header_is_stripes_form(self):
        header = signature("k", b"{}", 1700000000)
        self.assertEqual(header, "t=1700000000,v1=" + __import__("hmac").new(
            b"k", b"1700000000.{}", "sha256").hexdigest())

    def test_percentiles(self):
        self.assertEqual(percentile(list(range(1, 101)), 0.5), 50)
        self.assertEqual(percentile(list(range(1, 101)), 0.99), 99)
        self.assertIsNone(percentile([], 0.5))
