"""Several nodes, one Redis: twistd processes as a user runs them."""

import asyncio
import json
import subprocess
import tempfile

import websockets
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from presence.client import PresenceClient
from presence.redis_process import EmbeddedRedis

from .framing import random_key, upgrade_request
from .test_auth import wait
from .test_integration import run
from .test_plugin import TWISTD, free_port, outside_env, wait_for_port


class TwoNodesTests(TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.redis = EmbeddedRedis(reactor)
        self.addCleanup(self.redis.stopService)
        self.redis_url = yield self.redis.started()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.nodes = [self.start_node() for _ in range(2)]

    def start_node(self):
        client_port, api_port = free_port(), free_port()
        env = dict(outside_env(), PRESENCE_API_KEY="shared-key")
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "presence", "--redis", self.redis_url,
             "--listen", "tcp:%d:interface=127.0.0.1" % client_port,
             "--api", "tcp:%d:interface=127.0.0.1" % api_port, "--admin", "none"],
            cwd=tempfile.mkdtemp(prefix="presence-node-"), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(self.stop_node, process)
        wait_for_port(api_port, process)
        wait_for_port(client_port, process)
        return {"client": client_port, "api": api_port, "process": process}

    def stop_node(self, process):
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=30)

    def test_a_ticket_issued_on_one_node_is_redeemed_on_the_other_once(self):
        a, b = self.nodes
        client = PresenceClient("http://127.0.0.1:%d" % a["api"], "shared-key", pool=self.pool)

        async def scenario():
            issued = await wait(client.issue_ticket("user-9", channels=["room:1"]))
            url = "ws://127.0.0.1:%d/?ticket=%s" % (b["client"], issued["ticket"])
            async with websockets.connect(url) as ws:
                welcome = json.loads(await ws.recv())
                self.assertEqual((welcome["type"], welcome["account"]), ("welcome", "user-9"))
            # Used: node A refuses it too.
            reader, writer = await asyncio.open_connection("127.0.0.1", a["client"])
            writer.write(upgrade_request(path="/?ticket=" + issued["ticket"], key=random_key()))
            answer = await asyncio.wait_for(reader.read(65536), 10)
            writer.close()
            self.assertTrue(answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), answer)

        return run(scenario())
