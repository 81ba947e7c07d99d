"""Several nodes, one Redis: twistd processes as a user runs them."""

import asyncio
import json

import websockets
from twisted.internet import defer

from presence.client import PresenceClient

from .helpers.framing import random_key, upgrade_request
from .helpers.processes import NodeProcessesTestCase, free_port, start_node_process
from .helpers.waiting import run, wait


class TwoNodesTests(NodeProcessesTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.nodes = []
        for _ in range(2):
            self.nodes.append((yield run(self.start_node())))

    async def start_node(self):
        client_port, api_port = free_port(), free_port()
        process = await start_node_process(self, self.redis_url, client_port, api_port,
                                           env={"PRESENCE_API_KEY": "shared-key"})
        return {"client": client_port, "api": api_port, "process": process}

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
