"""The twistd plugin, as a user meets it: ``twistd --help`` lists it after
the README's install step, cheaply, and ``twistd -n presence`` serves
WebSocket on every --listen endpoint and shuts down cleanly."""

import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile

import websockets
from twisted.trial.unittest import TestCase

from .helpers.processes import TWISTD, free_port, outside_env, wait_for_port
from .helpers.waiting import run

#: What importing the plugin must not load: the Redis client, the C
#: unmasking accelerators, or the reactor (twistd imports every plugin to
#: list them, for --help too).
HEAVY = ("txredisapi", "websockets", "wsaccel", "presence.websocket.mask",
         "twisted.internet.reactor", "klein", "treq", "jinja2")

_IMPORTS = """
import json, sys
from twisted.plugins import presence_plugin
presence_plugin.serviceMaker.options().parseOptions([])
print(json.dumps(sorted(sys.modules)))
"""


class PluginTests(TestCase):
    def setUp(self):
        self.outside = tempfile.mkdtemp(prefix="presence-plugin-")

    def test_twistd_help_lists_presence_from_outside_the_repository(self):
        result = subprocess.run([TWISTD, "--help"], cwd=self.outside, env=outside_env(),
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("presence", result.stdout.split("Commands:")[1])

    def test_importing_the_plugin_and_its_options_loads_nothing_heavy(self):
        result = subprocess.run([sys.executable, "-c", _IMPORTS], cwd=self.outside,
                                env=outside_env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        modules = json.loads(result.stdout)
        self.assertIn("presence.app.options", modules)
        self.assertEqual([name for name in modules if name.split(".")[0] in HEAVY
                          or name in HEAVY or name.startswith("presence.websocket.mask")], [])

    def test_twistd_presence_serves_every_listen_endpoint_and_stops_cleanly(self):
        ports = [free_port(), free_port()]
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "presence"]
            + ["--listen=tcp:%d:interface=127.0.0.1" % port for port in ports]
            + ["--api=tcp:0:interface=127.0.0.1", "--admin=none"],
            cwd=self.outside, env=outside_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: process.poll() is None and process.kill())

        async def clients():
            for port in ports:
                await wait_for_port(port, process)
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
            self.assertIn("WebSocket, firepresence and SSE on tcp:%d:interface=127.0.0.1" % ports[0],
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
    await asyncio.wait_for(waiter, 10)
