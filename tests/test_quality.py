"""The connection quality's refresh (presence/hub/quality.py) on a Clock,
with a recording store: it looks at QUALITY_TURN sessions a reactor turn,
so that a node with tens of thousands of sessions does not hold back every
delivery while it looks at all of them (bench/scale.py saw 100-170 ms
stalls every node heartbeat at 19,000 sessions), and writes only what
changed."""

from types import SimpleNamespace

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from presence.hub.quality import QUALITY_CHUNK, QUALITY_TURN, Quality


class RecordingStore:
    def __init__(self):
        self.written = []

    def write_quality(self, node, entries):
        self.written.append(list(entries))
        return defer.succeed(None)


def session(number, rtt=0.01):
    return SimpleNamespace(id="s%d" % number, account="user%d" % number, ready=True,
                           opened_at=1.0, last_heartbeat=None, last_read_at=None,
                           ping_sent_at=None, rtt=rtt)


class RefreshTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(100)
        self.store = RecordingStore()
        self.quality = Quality(self.store, "node-q", self.clock, 5.0)
        self.sessions = [session(number) for number in range(2 * QUALITY_TURN + 10)]
        self.quality.server = SimpleNamespace(
            sessions={s.id: s for s in self.sessions},
            settings=SimpleNamespace(heartbeat_interval=10.0))

    def written(self):
        return sum(len(chunk) for chunk in self.store.written)

    def test_sessions_are_looked_at_a_turn_at_a_time(self):
        done = defer.ensureDeferred(self.quality.refresh())
        # The first turn: its sessions only, and the refresh waits for the
        # reactor's next turn before the rest.
        self.assertNoResult(done)
        self.assertEqual(self.written(), QUALITY_TURN)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertTrue(all(len(chunk) <= QUALITY_CHUNK for chunk in self.store.written))
        # (A Clock runs the calls made at the time it reaches in the same
        # advance: the other turns, here; a reactor runs them on its next
        # iterations, after the I/O waiting.)
        self.clock.advance(0)
        self.successResultOf(done)
        self.assertEqual(self.written(), len(self.sessions))

    def test_only_the_sessions_whose_facts_changed_are_written_again(self):
        done = defer.ensureDeferred(self.quality.refresh())
        self.clock.advance(0)
        self.clock.advance(0)
        self.successResultOf(done)
        self.store.written.clear()
        self.sessions[7].rtt = 0.25
        self.sessions[-1].last_heartbeat = 150.0
        done = defer.ensureDeferred(self.quality.refresh())
        self.clock.advance(0)
        self.clock.advance(0)
        self.successResultOf(done)
        written = [entry for chunk in self.store.written for entry in chunk]
        self.assertEqual([session_id for session_id, _ in written], ["s7", self.sessions[-1].id])
        self.assertIn('"rtt_ms":250.0', written[0][1])
