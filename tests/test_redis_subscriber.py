"""The node's pub/sub connection (presence/redis/subscriber.py) against a
real redis-server: a node's own stop closes it knowingly, and nothing is
logged as lost."""

from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher

from .helpers.hubs import HubTestCase
from .helpers.waiting import run, until


class LoggedLines:
    """The lines twisted.logger is given while it is attached."""

    def __init__(self):
        self.lines = []

    def __call__(self, event):
        self.lines.append(formatEvent(event))

    def attach(self, test):
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)
        return self


class StoppingTests(HubTestCase):
    @defer.inlineCallbacks
    def test_the_nodes_stop_logs_no_lost_subscription(self):
        node = self.start_node()
        yield run(until(lambda: node.hub.subscriber.connected, 10, "the subscription"))
        logged = LoggedLines().attach(self)

        yield defer.ensureDeferred(node.hub.stop())

        self.assertFalse(node.hub.subscriber.connected)
        self.assertEqual([line for line in logged.lines if "lost the Redis" in line], [])
