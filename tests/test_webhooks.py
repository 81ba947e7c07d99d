"""Webhooks deliver the event log: every presence event, signed, batched,
acknowledged only after a 2xx, retried with backoff, given up into dead
letters past their maximum age, filtered by name, in order, each once after
deduplication by id. A real Redis, nodes in-process (their sessions on
StringTransports), and a real HTTP receiver on loopback running the
receiver docs/api.md shows (tests/helpers/receiver.py). Retries and ages
are driven with a Clock where the test says so; a node's death is
tests/test_webhooks_cluster.py's."""

import asyncio
import json
import pathlib
import sys
import time

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from presence.web.admin import AdminApp, prometheus
from presence.webhooks.delivery import Webhooks, percentile
from presence.webhooks.settings import EVENT_NAMES, WebhookSettings
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


class EventTypeTests(WebhookTestCase):
    def test_every_event_type_is_delivered_with_a_valid_signature(self):
        async def scenario():
            node = self.start_node()
            receiver, _, url = start_receiver(self, SECRET)
            webhooks = self.start_webhooks(node, url)
            await self.ready(webhooks)
            session, transport = self.open_session(node, "ann")
            session.dataReceived(message("subscribe", "room:1"))
            await done(node.hub.writer.finished())
            lose(session, transport)
            await until(lambda: len(receiver.events) >= 6, 10, "six events")
            await pause(0.3)  # nothing more comes
            names = [event["name"] for event in receiver.events]
            self.assertEqual(names, ["online", "member_added", "channel_occupied",
                                     "member_removed", "channel_vacated", "offline"])
            self.assertEqual(sorted(set(names)), sorted(EVENT_NAMES))
            for status, header, body in receiver.requests:
                # The documented receiver verified each (400 otherwise).
                self.assertEqual(status, 200)
                self.assertTrue(verify(SECRET, header, body, time.time()))
                self.assertEqual(set(json.loads(body)), {"time_ms", "events"})
            online, added, occupied, removed, vacated, offline = receiver.events
            for event in receiver.events:
                self.assertEqual(event["session"], session.id)
                self.assertEqual(event["node"], node.hub.node_id)
                # (the id's time is Redis's at the XADD, time_ms at the change)
                self.assertLessEqual(abs(int(event["id"].split("-")[0]) - event["time_ms"]), 5)
            self.assertEqual(online["account"], "ann")
            self.assertEqual((added["channel"], occupied["channel"], removed["channel"],
                              vacated["channel"]), ("room:1",) * 4)
            self.assertEqual(offline["ended"]["code"], 1006)
            self.assertEqual(removed["ended"]["code"], 1006)
            self.assertEqual([event_id for event_id, _ in await self.logged()],
                             receiver.ids())
            await until(lambda: webhooks.hooks[0].delivered == 6, 10, "six acknowledged")
            report = webhooks.reports()[0]
            self.assertEqual((report["delivered"], report["dead"], report["leading"]),
                             (6, 0, True))
        return run(scenario())

    def test_the_log_is_written_with_the_change_even_without_webhooks(self):
        async def scenario():
            node = self.start_node()
            session, transport = self.open_session(node, "bob")
            self.open_session(node, "bob")  # a second session: no second online
            await done(node.hub.writer.finished())
            lose(session, transport)  # not the last one: no offline
            await done(node.hub.writer.finished())
            self.assertEqual([event["name"] for _, event in await self.logged()], ["online"])
        return run(scenario())

    def test_an_accounts_offline_follows_the_leave_delay_and_a_reload_is_not_logged(self):
        async def scenario():
            node = self.start_node(leave_delay=1.0)
            session, transport = self.open_session(node, "ann")
            await done(node.hub.writer.finished())
            lose(session, transport)  # a reload: back within the delay
            self.open_session(node, "ann")
            other, gone = self.open_session(node, "bob")
            await done(node.hub.writer.finished())
            lose(other, gone)  # gone for good
            await done(node.hub.writer.finished())
            self.assertEqual([(e["name"], e["account"]) for _, e in await self.logged()],
                             [("online", "ann"), ("online", "bob")])
            await until(lambda: self.logged(), 1)  # (the log answers)
            async def offline_logged():
                return [e for _, e in await self.logged() if e["name"] == "offline"]
            offline = await until(offline_logged, 5, "bob's offline, after the delay")
            self.assertEqual([(e["account"], e["ended"]["code"]) for e in offline],
                             [("bob", 1006)])
            self.assertEqual([(e["name"], e["account"]) for _, e in await self.logged()],
                             [("online", "ann"), ("online", "bob"), ("offline", "bob")])
        return run(scenario())

    def test_the_log_is_capped_at_its_maxlen(self):
        async def scenario():
            node = self.start_node()
            node.hub.store.event_log_maxlen = 10
            self.churn(node, ["user-%d" % n for n in range(200)])
            await done(node.hub.writer.finished())
            length = int(await done(self.engine.execute("XLEN", self.keys.event_log)))
            self.assertLess(length, 200)  # about 10: MAXLEN ~ trims whole nodes
        return run(scenario())


class FilterTests(WebhookTestCase):
    def test_only_the_events_named_are_sent(self):
        async def scenario():
            node = self.start_node()
            receiver, _, url = start_receiver(self, SECRET)
            webhooks = self.start_webhooks(node, url, events=frozenset({"online", "offline"}))
            await self.ready(webhooks)
            self.churn(node, ["ann", "bob"])
            await until(lambda: len(receiver.events) >= 4, 10, "four events")
            await until(lambda: webhooks.hooks[0].skipped >= 6, 10, "six skipped")
            self.assertEqual(sorted(event["name"] for event in receiver.events),
                             ["offline", "offline", "online", "online"])
            self.assertEqual(len(await self.logged()), 10)
            # The skipped ones are acknowledged: nothing pending.
            await done(webhooks.hooks[0].refresh_status())
            self.assertEqual(webhooks.hooks[0].status["pending"], 0)
        return run(scenario())


class RetryTests(WebhookTestCase):
    def test_refused_requests_are_retried_and_every_account_stays_in_order(self):
        async def scenario():
            node = self.start_node()
            receiver, _, url = start_receiver(self, SECRET)
            receiver.refuse = 4
            webhooks = self.start_webhooks(node, url, batch_size=7)
            await self.ready(webhooks)
            accounts = ["user-%d" % n for n in range(20)]
            for round_ in range(3):
                self.churn(node, accounts, "room:%d" % round_)
            await done(node.hub.writer.finished())
            logged = await self.logged()
            await until(lambda: len(receiver.events) >= len(logged), 20, "every event")
            await until(lambda: webhooks.hooks[0].delivered == len(logged), 10, "acknowledged")
            self.assertEqual([status for status, _, _ in receiver.requests[:4]], [503] * 4)
            self.assertEqual(receiver.ids(), [event_id for event_id, _ in logged])
            for account in accounts:
                arrived = [event["id"] for event in receiver.arrived
                           if event.get("account") == account]
                self.assertEqual(arrived, sorted(set(arrived), key=lambda i: tuple(
                    map(int, i.split("-")))))
            self.assertEqual(webhooks.hooks[0].failures, 4)
            self.assertEqual(webhooks.hooks[0].retrying, 0)
        return run(scenario())

    def test_a_receiver_down_for_30_s_loses_nothing(self):
        async def scenario():
            node = self.start_node()
            receiver, listening, url = start_receiver(self, SECRET)
            port = listening.getHost().port
            clock = real_time_clock()
            webhooks = self.start_webhooks(node, url, clock=clock, retry_min=1.0,
                                           retry_max=8.0)
            await self.ready(webhooks)
            await done(defer.maybeDeferred(listening.stopListening))
            self.churn(node, ["user-%d" % n for n in range(30)])
            await done(node.hub.writer.finished())
            logged = await self.logged()
            hook = webhooks.hooks[0]
            await drive(clock, 30)
            self.assertEqual(receiver.events, [])
            self.assertGreater(hook.failures, 3)
            self.assertTrue(hook.last_error)  # refused, or no answer within the timeout
            self.assertEqual(hook.retrying, len(logged) if len(logged) < 100 else 100)
            report = hook.report()
            self.assertGreaterEqual(report["oldest_undelivered_s"], 0.0)
            receiver = start_receiver(self, SECRET, port=port)[0]  # up again
            self.assertTrue(await drive(clock, 120, lambda: len(receiver.events) >= len(logged)))
            self.assertEqual(receiver.ids(), [event_id for event_id, _ in logged])
            self.assertEqual(hook.dead, 0)
            await until(lambda: hook.delivered == len(logged), 10, "acknowledged")
            await done(hook.refresh_status())
            self.assertEqual(hook.status["pending"], 0)
            self.assertEqual(hook.report()["oldest_undelivered_s"], 0.0)
        return run(scenario())

    def test_events_past_the_max_age_go_to_the_dead_letters(self):
        async def scenario():
            node = self.start_node()
            receiver, _, url = start_receiver(self, SECRET)
            receiver.refuse_always = True
            clock = real_time_clock()
            webhooks = self.start_webhooks(node, url, clock=clock, retry_min=1.0,
                                           retry_max=5.0, max_age=60.0)
            await self.ready(webhooks)
            self.churn(node, ["ann", "bob"])
            await done(node.hub.writer.finished())
            logged = await self.logged()
            hook = webhooks.hooks[0]
            await drive(clock, 50)
            self.assertEqual(hook.dead, 0)  # not yet: retried
            self.assertGreater(hook.failures, 3)
            self.assertTrue(await drive(clock, 30, lambda: hook.dead == len(logged)))
            self.assertEqual(receiver.events, [])
            letters = await done(webhooks.store.dead_letters(hook.name, 100))
            self.assertEqual(sorted(json.loads(fields["event"])["id"] for _, fields in letters),
                             [event_id for event_id, _ in logged])
            self.assertEqual({fields["error"] for _, fields in letters}, {"HTTP 503"})
            await done(hook.refresh_status())
            self.assertEqual((hook.status["dead"], hook.status["dead_letters"],
                              hook.status["pending"]), (len(logged), len(logged), 0))
            # Counted and shown: /metrics and the dashboard's overview.
            admin = AdminApp(node.hub, node.server, "a password", clock=clock,
                             webhooks=webhooks)
            text = prometheus(node.server, node.hub, admin)
            label = 'webhook="%s"' % url
            self.assertIn('presence_webhook_events_total{%s,outcome="dead"} %d\n'
                          % (label, len(logged)), text)
            self.assertIn('presence_webhook_dead_letters{%s} %d\n' % (label, len(logged)), text)
            self.assertIn('presence_webhook_requests_total{%s,result="failed"} %d\n'
                          % (label, hook.failures), text)
            await done(node.hub.liveness.announce())
            overview = await done(node.hub.queries.overview())
            page = admin.env.get_template("overview_content.html").render(
                overview=overview, close_counts={}, chart=[], chart_span="-",
                webhooks=webhooks.reports())
            self.assertIn('<section id="webhooks">', page)
            self.assertIn("%d (%d kept)" % (len(logged), len(logged)), page)
            self.assertIn("HTTP 503", page)
            # Back up: the dead letters are not sent again; what comes now is.
            receiver.refuse_always = False
            self.churn(node, ["cy"])
            self.assertTrue(await drive(clock, 10, lambda: len(receiver.events) == 6))
            self.assertEqual({event["account"] for event in receiver.events}, {"cy"})
        return run(scenario())


class NeverInTheWayTests(WebhookTestCase):
    def test_a_receiver_that_never_answers_does_not_slow_sessions(self):
        async def scenario():
            node = self.start_node()
            receiver, _, url = start_receiver(self, SECRET)
            receiver.hold = True
            webhooks = self.start_webhooks(node, url, timeout=30.0)
            await self.ready(webhooks)
            self.churn(node, ["first"])
            await until(lambda: receiver.held, 10, "a request held")
            started = time.monotonic()
            self.churn(node, ["user-%d" % n for n in range(300)])
            await done(node.hub.writer.finished())
            self.assertLess(time.monotonic() - started, 5.0)
            self.assertEqual(await done(self.store.online_accounts()), [])
            self.assertEqual(len(receiver.held), 1)  # one batch in flight, the rest waits
        return run(scenario())


class ExactlyOnceTests(WebhookTestCase):
    def test_ten_thousand_sessions_every_event_delivered_once_after_dedup(self):
        async def scenario():
            node = self.start_node()
            receiver, _, url = start_receiver(self, SECRET)
            webhooks = self.start_webhooks(node, url)
            await self.ready(webhooks)
            sessions = []
            for start in range(0, 10000, 250):  # within --max-connections-per-ip
                opened = [self.open_session(node, "user-%d" % n, channels=())
                          for n in range(start, start + 250)]
                await pause(0)
                for session, transport in opened:
                    lose(session, transport)
                sessions.extend(session for session, _ in opened)
                await done(node.hub.writer.finished())
            await until(lambda: len(receiver.events) >= 20000, 120, "20,000 events")
            await pause(0.5)
            ids = receiver.ids()
            self.assertEqual(len(ids), len(set(ids)))
            self.assertEqual(len(ids), 20000)
            by_session = {}
            for event in receiver.events:
                by_session.setdefault(event["session"], []).append(event["name"])
            self.assertEqual(set(by_session), {session.id for session in sessions})
            self.assertEqual({tuple(names) for names in by_session.values()},
                             {("online", "offline")})
            self.assertEqual(ids, [event_id for event_id, _ in await self.logged()])
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


class DocumentedReaderTests(WebhookTestCase):
    """docs/redis.md's redis-py reader of the event log, run as written (its
    connection made to the test's Redis) in a child process: it prints every
    event once, and, restarted, goes on from where it left off."""

    def reader_code(self):
        text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "redis.md").read_text()
        section = text[text.index("## The event log"):]
        start = section.index("```python\n") + len("```python\n")
        code = section[start:section.index("```", start)]
        path = self.redis_url[len("unix://"):].split("?")[0]
        connection = "r = redis.Redis(decode_responses=True)"
        self.assertIn(connection, code)
        return code.replace(connection, "r = redis.Redis(unix_socket_path=%r, "
                            "decode_responses=True)" % path)

    async def read_with_the_reader(self, code, count):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-u", "-c", code, stdout=asyncio.subprocess.PIPE)
        lines = []
        try:
            while len(lines) < count:
                line = await asyncio.wait_for(process.stdout.readline(), 15)
                self.assertTrue(line, "the reader ended")
                lines.append(line.decode().split())
            try:  # nothing more comes
                extra = await asyncio.wait_for(process.stdout.readline(), 0.5)
            except asyncio.TimeoutError:
                extra = b""
            self.assertEqual(extra, b"")
        finally:
            process.kill()
            await process.wait()
        return lines

    def test_the_documented_reader_reads_every_event_once_and_goes_on_after_a_restart(self):
        async def scenario():
            node = self.start_node()
            code = self.reader_code()
            self.churn(node, ["ann", "bob"])
            await done(node.hub.writer.finished())
            first = await self.read_with_the_reader(code, 10)
            logged = await self.logged()
            self.assertEqual([line[0] for line in first], [i for i, _ in logged])
            self.assertEqual(sorted(line[1] for line in first),
                             sorted(["online", "member_added", "member_removed", "offline"] * 2
                                    + ["channel_occupied", "channel_vacated"]))
            self.churn(node, ["cy"])
            await done(node.hub.writer.finished())
            second = await self.read_with_the_reader(code, 6)
            self.assertEqual([line[0] for line in second],
                             [i for i, _ in (await self.logged())[10:]])
            self.assertEqual({line[2] for line in second}, {"cy"})  # its account
        return run(scenario())


class OptionTests(SynchronousTestCase):
    """--webhook and its companions, to WebhookSettings."""

    def parse(self, *arguments, environ=None):
        from presence.app.config import node_settings_from_options
        from presence.app.options import Options

        self.patch(__import__("os").environ, "get", (environ or {}).get)
        options = Options()
        options.parseOptions(list(arguments))
        return node_settings_from_options(options)

    def test_webhooks_need_a_secret(self):
        from twisted.python.usage import UsageError
        with self.assertRaises(UsageError) as raised:
            self.parse("--webhook", "http://backend/hook")
        self.assertIn("--webhook-secret", str(raised.exception))
        settings = self.parse("--webhook", "http://backend/hook",
                              environ={"PRESENCE_WEBHOOK_SECRET": "s"})
        self.assertEqual((settings.webhooks.urls, settings.webhooks.secret),
                         (("http://backend/hook",), "s"))

    def test_the_filter_takes_only_event_names(self):
        from twisted.python.usage import UsageError
        settings = self.parse("--webhook", "http://a/", "--webhook", "https://b/",
                              "--webhook-secret", "s", "--webhook-events", "online, offline",
                              "--webhook-timeout", "2", "--webhook-max-age", "60",
                              "--event-log-maxlen", "500")
        hooks = settings.webhooks
        self.assertEqual((hooks.urls, hooks.events, hooks.timeout, hooks.max_age),
                         (("http://a/", "https://b/"), frozenset({"online", "offline"}), 2.0,
                          60.0))
        self.assertEqual(settings.hub.event_log_maxlen, 500)
        with self.assertRaises(UsageError) as raised:
            self.parse("--webhook", "http://a/", "--webhook-secret", "s",
                       "--webhook-events", "online,joined")
        self.assertIn("unknown joined", str(raised.exception))

    def test_defaults_are_the_settings(self):
        settings = self.parse()
        self.assertEqual(settings.webhooks, WebhookSettings())
        self.assertEqual(settings.webhooks.urls, ())
