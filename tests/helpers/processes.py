"""``twistd presence`` as a child process, as a user runs it: started from
outside the repository, waited for without blocking the reactor, stopped at
the test's cleanup."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from presence.redis.embedded import EmbeddedRedis

from .waiting import until

__all__ = ["TWISTD", "outside_env", "free_port", "wait_for_port", "start_node_process",
           "stop_node_process", "NodeProcessesTestCase"]

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def outside_env():
    """The environment of a user's shell: nothing puts the repository on the path."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _listening(port, process):
    if process.poll() is not None:
        raise AssertionError("twistd exited: %s" % process.stdout.read())
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def wait_for_port(port, process, timeout=30.0):
    """Once something listens on loopback ``port``; fails at once if
    ``process`` exits meanwhile."""
    await until(lambda: _listening(port, process), timeout, "a listener on %d" % port, 0.05)


async def start_node_process(test, redis_url, client_port, api_port, arguments=(), env=None,
                             admin_port=None):
    """``twistd -n presence`` on loopback ``client_port`` and ``api_port``
    (and a dashboard on ``admin_port``, none without it) with Redis at
    ``redis_url``, more ``arguments`` and ``env`` added to the environment;
    stopped at ``test``'s cleanup. Returns the process once its ports listen."""
    admin = "none" if admin_port is None else "tcp:%d:interface=127.0.0.1" % admin_port
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "presence", "--redis", redis_url,
         "--listen", "tcp:%d:interface=127.0.0.1" % client_port,
         "--api", "tcp:%d:interface=127.0.0.1" % api_port, "--admin", admin, *arguments],
        cwd=tempfile.mkdtemp(prefix="presence-node-"), env=dict(outside_env(), **(env or {})),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    test.addCleanup(stop_node_process, process)
    for port in (api_port, client_port, admin_port):
        if port is not None:
            await wait_for_port(port, process)
    return process


def stop_node_process(process):
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # in case a test left it stopped
        process.terminate()
        process.communicate(timeout=30)


class NodeProcessesTestCase(TestCase):
    """A real Redis (``self.redis_url``) for the twistd nodes a test starts,
    and an HTTP pool for their APIs (``self.pool``), both gone at cleanup."""

    @defer.inlineCallbacks
    def setUp(self):
        self.redis = EmbeddedRedis(reactor)
        self.addCleanup(self.redis.stopService)
        self.redis_url = yield self.redis.started()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
