"""The twistd plugin, as a user meets it: ``twistd --help`` lists it after
the README's install step, and ``twistd -n presence`` serves WebSocket on
every --listen endpoint and shuts down cleanly."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import websockets
from twisted.trial.unittest import TestCase

from .test_integration import run

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def outside_env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("twistd exited: %s" % process.stdout.read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("nothing listening on %d" % port)


def start_node_process(test, redis_url, client_port, api_port, arguments=(), env=None,
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
            wait_for_port(port, process)
    return process


def stop_node_process(process):
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # in case a test left it stopped
        process.terminate()
        process.communicate(timeout=30)


class PluginTests(TestCase):
    def setUp(self):
        self.outside = tempfile.mkdtemp(prefix="presence-plugin-")

    def test_twistd_help_lists_presence_from_outside_the_repository(self):
        result = subprocess.run([TWISTD, "--help"], cwd=self.outside, env=outside_env(),
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("presence", result.stdout.split("Commands:")[1])

    def test_twistd_presence_serves_every_listen_endpoint_and_stops_cleanly(self):
        ports = [free_port(), free_port()]
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "presence"]
            + ["--listen=tcp:%d:interface=127.0.0.1" % port for port in ports]
            + ["--api=tcp:0:interface=127.0.0.1", "--admin=none"],
            cwd=self.outside, env=outside_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        for port in ports:
            wait_for_port(port, process)

        async def clients():
            first = await websockets.connect("ws://127.0.0.1:%d/" % ports[0])
            second = await websockets.connect("ws://127.0.0.1:%d/" % ports[1])
            await asyncio_wait(await first.ping(b"are you there"))
            await asyncio_wait(await second.ping())
            process.send_signal(signal.SIGTERM)
            for ws in (first, second):
                await ws.wait_closed()
                self.assertEqual(ws.close_code, 1001)

        def stopped(_):
            output, _ = process.communicate(timeout=30)
            # twistd ends by re-raising the signal that stopped it.
            self.assertIn(process.returncode, (0, -signal.SIGTERM), output)
            self.assertIn("Server Shut Down.", output)
            self.assertIn("WebSocket and firepresence on tcp:%d:interface=127.0.0.1" % ports[0],
                          output)
            self.assertIn("closing 2 sessions", output)
        return run(clients()).addCallback(stopped)


class PortTakenTests(TestCase):
    """A port that cannot be listened on (here: taken by another socket)
    stops the node with exit status 1, so that a supervisor sees it."""

    def start(self, *arguments):
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        arguments = [argument.replace("TAKEN", str(port)) for argument in arguments]
        return subprocess.run(
            [TWISTD, "-n", "--pidfile=", "presence", *arguments],
            cwd=tempfile.mkdtemp(prefix="presence-node-"),
            env=dict(outside_env(), PRESENCE_API_KEY="k"), capture_output=True, text=True,
            timeout=60)

    def test_a_taken_client_port(self):
        result = self.start("--listen=tcp:TAKEN:interface=127.0.0.1",
                            "--api=tcp:0:interface=127.0.0.1", "--admin=none")
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("presence: could not start", result.stdout)
        self.assertIn("Address already in use", result.stdout)

    def test_a_taken_dashboard_port(self):
        result = self.start("--listen=tcp:0:interface=127.0.0.1",
                            "--api=tcp:0:interface=127.0.0.1",
                            "--admin=tcp:TAKEN:interface=127.0.0.1")
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("presence: the dashboard could not start", result.stdout)


async def asyncio_wait(waiter):
    import asyncio

    await asyncio.wait_for(waiter, 10)
