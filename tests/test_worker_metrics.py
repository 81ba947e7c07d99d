"""/metrics with --workers: the workers of one parent answer a scrape with
the sum of their metrics (presence/web/metrics.py ``summed``, gathered by
presence/hub/queries.py ``worker_metrics``), so that a scrape of the shared
dashboard port answers the same series whichever worker takes it. Here:
the sums themselves, and nodes in this process on a real Redis that are
workers of one parent, of another, or on their own. tests/test_workers.py
scrapes real worker processes."""

from twisted.internet import defer, endpoints, reactor
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from presence.web.admin import AdminApp
from presence.web.metrics import exposition, prometheus, summed

from .helpers.api import tracked
from .helpers.hubs import HubTestCase
from .helpers.redis import reconnected
from .helpers.waiting import run, wait
from .test_dashboard_security import http


def _family(name, samples, kind="counter", combine="sum"):
    return [name, kind, "help of " + name, samples, combine]


class SumsTests(SynchronousTestCase):
    def test_each_sample_is_added_across_workers_by_its_name_and_labels(self):
        one = [_family("closes_total", [["closes_total", {"code": "1000"}, 3],
                                        ["closes_total", {"code": "1006"}, 1]])]
        two = [_family("closes_total", [["closes_total", {"code": "1000"}, 4],
                                        ["closes_total", {"code": "4001"}, 2]])]
        self.assertEqual(summed([one, two]), [_family("closes_total", [
            ["closes_total", {"code": "1000"}, 7], ["closes_total", {"code": "1006"}, 1],
            ["closes_total", {"code": "4001"}, 2]])])

    def test_histogram_buckets_sum_and_gauges_sum(self):
        def histogram(fast, total, seconds):
            return _family("rtt_seconds", [["rtt_seconds_bucket", {"le": "0.01"}, fast],
                                           ["rtt_seconds_bucket", {"le": "+Inf"}, total],
                                           ["rtt_seconds_sum", {}, seconds],
                                           ["rtt_seconds_count", {}, total]], "histogram")

        def gauge(value):
            return _family("sessions", [["sessions", {"protocol": "sse"}, value]], "gauge")
        text = exposition(summed([[histogram(1, 2, 0.5), gauge(3)],
                                  [histogram(4, 5, 0.25), gauge(4)]]))
        self.assertEqual(text, "# HELP rtt_seconds help of rtt_seconds\n"
                               "# TYPE rtt_seconds histogram\n"
                               'rtt_seconds_bucket{le="0.01"} 5\n'
                               'rtt_seconds_bucket{le="+Inf"} 7\n'
                               "rtt_seconds_sum 0.75\n"
                               "rtt_seconds_count 7\n"
                               "# HELP sessions help of sessions\n"
                               "# TYPE sessions gauge\n"
                               'sessions{protocol="sse"} 7\n')

    def test_what_every_worker_reads_alike_is_not_added_and_nan_is_left_out(self):
        def pending(value):
            return [_family("webhook_pending", [["webhook_pending", {}, value]], "gauge",
                            "max")]
        self.assertEqual(summed([pending(10), pending(12)])[0][3],
                         [["webhook_pending", {}, 12]])
        self.assertEqual(summed([pending("NaN"), pending(0.5)])[0][3],
                         [["webhook_pending", {}, 0.5]])
        self.assertEqual(summed([pending("NaN"), pending("NaN")])[0][3],
                         [["webhook_pending", {}, "NaN"]])


class WorkersOfOneParentTests(HubTestCase):
    """Four nodes on one Redis: two workers of parent ``host:1``, one of
    ``host:2``, one on its own; each with its dashboard."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.nodes = {}
        for name, group, sessions in (("a1", "host:1", 2), ("a2", "host:1", 3),
                                      ("b", "host:2", 5), ("alone", "", 7)):
            node = self.start_node(node_id=name, workers_of=group)
            for number in range(sessions):
                self.open_session(node, account="%s-%d" % (name, number))
            dashboard = AdminApp(node.hub, node.server, None)
            site = tracked(Site(dashboard.resource()))
            port = yield endpoints.serverFromString(
                reactor, "tcp:0:interface=127.0.0.1").listen(site)
            self.addCleanup(port.stopListening)
            self.nodes[name] = (node, dashboard, port.getHost().port)
        for node, _, _ in self.nodes.values():
            yield node.hub.liveness.announce()

    async def scrape(self, name):
        port = self.nodes[name][2]
        answer = await http(port, "GET", "/metrics", [("Host", "127.0.0.1:%d" % port)])
        self.assertEqual(answer.status, 200, answer.body)
        return answer.body.decode("utf-8")

    def test_a_worker_answers_the_sum_of_its_parents_workers_only(self):
        async def scenario():
            for name, total in (("a1", 5), ("a2", 5), ("b", 5)):
                text = await self.scrape(name)
                self.assertIn('presence_sessions{protocol="websocket"} %d\n' % total, text)
                self.assertIn("presence_handshakes_accepted_total %d\n" % total, text)
            text = await self.scrape("a1")
            self.assertTrue(text.startswith("# presence: the sum of 2 workers of host:1 "
                                            "(this one: a1)\n"), text[:200])
            self.assertIn('presence_metrics_workers{state="summed"} 2\n', text)
            self.assertIn('presence_metrics_workers{state="missing"} 0\n', text)
            self.assertIn('presence_metrics_workers{state="summed"} 1\n', await self.scrape("b"))
        return run(scenario())

    def test_a_node_on_its_own_answers_its_own_metrics_as_before(self):
        async def scenario():
            node, dashboard, _ = self.nodes["alone"]
            text = await self.scrape("alone")
            self.assertEqual(text, prometheus(node.server, node.hub, dashboard))
            self.assertNotIn("presence_metrics_workers", text)
            self.assertIn('presence_sessions{protocol="websocket"} 7\n', text)
        return run(scenario())

    def test_a_worker_that_does_not_answer_is_left_out_and_named(self):
        """a2 listed live but no longer answering (its dashboard gone): a1
        answers after the bound with its own counters."""
        self.nodes["a2"][0].hub.answers.metrics = None

        async def scenario():
            text = await self.scrape("a1")
            self.assertTrue(text.startswith("# presence: the sum of 1 worker of host:1 "
                                            "(this one: a1)\n"), text[:200])
            self.assertIn("# presence: worker a2 did not answer within 1 s: its counters are "
                          "left out\n", text)
            self.assertIn('presence_sessions{protocol="websocket"} 2\n', text)
            self.assertIn('presence_metrics_workers{state="missing"} 1\n', text)
        return run(scenario())

    def test_without_redis_a_worker_answers_its_own_and_says_why(self):
        async def scenario():
            await wait(self.stop_redis())
            text = await self.scrape("a1")
            self.assertIn("# presence: Redis did not answer, so the other workers of host:1 "
                          "could not be asked: this worker's (a1) counters alone\n", text)
            self.assertIn('presence_sessions{protocol="websocket"} 2\n', text)
            self.assertIn('presence_metrics_workers{state="missing"} NaN\n', text)
            # Back, so that the nodes stop without waiting for it.
            await wait(self.embedded.started())
            await wait(reconnected(self.engine.ping))
        return run(scenario())
