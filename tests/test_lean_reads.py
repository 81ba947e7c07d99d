"""The lean read path (presence/net/twisted_internals.py install_lean_reads)
on Twisted's epoll reactor, in a process of its own (the tests' reactor is
asyncio's): a plain TCP connection's input is read without Twisted's
per-event logging context, whole; a failing protocol is logged and
disconnected, and a reset connection lost, as Twisted's own path does; ``PRESENCE_LEAN_READS=0`` keeps
Twisted's path. The Autobahn TestSuite runs the echo server with it on and
off (.ci/autobahn.py)."""

import json
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

PROBE = os.path.join(os.path.dirname(__file__), "helpers", "lean_reads_probe.py")


def probe(lean):
    env = dict(os.environ, PRESENCE_LEAN_READS="1" if lean else "0")
    output = subprocess.run([sys.executable, PROBE], env=env, capture_output=True, text=True,
                            timeout=60).stdout
    result = json.loads(output.strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    return result


class LeanReadsTests(SynchronousTestCase):
    def test_input_is_read_without_the_logging_context_and_arrives_whole(self):
        result = probe(lean=True)
        self.assertTrue(result["installed"])
        self.assertEqual(result["read"], {"received": "hello world", "systems": ["-"],
                                          "lost": "ConnectionDone"})

    def test_a_failing_protocol_is_logged_and_disconnected_as_twisted_does(self):
        result = probe(lean=True)
        self.assertEqual(result["failing"]["lost"], "RuntimeError")
        self.assertEqual(result["logged"], ["the protocol failed on purpose"])

    def test_a_reset_connection_is_lost_as_twisted_loses_it(self):
        # recv's ECONNRESET: Twisted's doRead answers CONNECTION_LOST, and
        # the lean path, which reads the socket itself, must too.
        for lean in (True, False):
            self.assertEqual(probe(lean)["reset"], {"received": "bye", "lost": "ConnectionLost"},
                             "lean" if lean else "Twisted's path")

    def test_without_the_switch_twisteds_own_path_reads_under_the_protocols_prefix(self):
        result = probe(lean=False)
        self.assertFalse(result["installed"])
        self.assertEqual(result["read"]["received"], "hello world")
        self.assertNotIn("-", result["read"]["systems"])
        self.assertEqual(result["failing"]["lost"], "RuntimeError")
        self.assertEqual(result["logged"], ["the protocol failed on purpose"])
