"""Webhooks across nodes' deaths, with twistd processes on one real Redis
and a real HTTP receiver in the test (docs/api.md's receiver): a node
killed (SIGKILL) while its batch is in flight has that batch delivered by
another node, and a node killed while it holds sessions has their offline
events delivered, with ``reaped``."""

import json
import os
import signal

from twisted.internet import defer

from presence.client import PresenceClient
from presence.webhooks.settings import webhook_name

from .helpers.cluster import KEY, ClusterTestCase
from .helpers.processes import free_port, start_node_process
from .helpers.receiver import start_receiver
from .helpers.waiting import run, until, wait

SECRET = "whsec-cluster"


class WebhookClusterTests(ClusterTestCase):
    nodes_count = 2
    node_heartbeat = 0.5

    @defer.inlineCallbacks
    def setUp(self):
        self.receiver, _, self.url = start_receiver(self, SECRET)
        yield super().setUp()
        self.lease = self.keys.webhook(webhook_name(self.url), "lease")

    async def start_node(self):
        client_port, api_port = free_port(), free_port()
        process = await start_node_process(
            self, self.redis_url, client_port, api_port,
            ["--node-heartbeat", str(self.node_heartbeat), "--close-timeout", "2",
             "--leave-delay", "0", "--webhook", self.url, "--webhook-secret", SECRET],
            {"PRESENCE_API_KEY": KEY})
        return {"client": client_port, "process": process,
                "api": PresenceClient("http://127.0.0.1:%d" % api_port, KEY, pool=self.pool)}

    async def leader(self):
        """The node holding the webhook's lease (its id names its pid)."""
        holder = await until(lambda: self.engine.execute("GET", self.lease), 15, "a leader")
        pid = int(str(holder).split("-")[-2])
        return next(node for node in self.nodes if node["process"].pid == pid)

    async def ready(self):
        """Once the webhook's consumer group exists (events before it are not its)."""
        async def exists():
            try:
                groups = await wait(self.engine.execute("XINFO", "GROUPS", self.keys.event_log))
            except Exception:
                return False
            return bool(groups)
        await until(exists, 15, "the webhook's consumer group")

    def kill(self, node):
        os.kill(node["process"].pid, signal.SIGKILL)
        node["process"].wait(10)

    def handled(self, name, account):
        return [event for event in self.receiver.events
                if event["name"] == name and event.get("account") == account]

    def test_a_node_killed_mid_batch_has_its_batch_delivered_by_another(self):
        async def scenario():
            await self.ready()
            leader = await self.leader()
            other = next(node for node in self.nodes if node is not leader)
            self.receiver.hold = True
            client = await self.connect(other, "ann")
            await self.subscribe(client, "room:1")
            await client.close()
            await until(lambda: self.receiver.held, 15, "the leader's request held")
            held = [event["id"] for event in json.loads(self.receiver.requests[0][2])["events"]]
            self.assertTrue(held)
            self.receiver.hold = False
            self.kill(leader)
            await until(lambda: set(held) <= set(self.receiver.ids()), 30,
                        "the held batch delivered by the survivor")
            self.assertEqual(str(await wait(self.engine.execute("GET", self.lease))).split(
                "-")[-2], str(other["process"].pid))
            await until(lambda: self.handled("offline", "ann"), 15, "ann's offline")
            names = [event["name"] for event in self.receiver.events
                     if event.get("account") == "ann"]
            self.assertEqual(names, ["online", "member_added", "channel_occupied",
                                     "member_removed", "channel_vacated", "offline"])
        return run(scenario())

    def test_a_node_killed_with_sessions_has_their_offline_delivered_with_reaped(self):
        async def scenario():
            await self.ready()
            leader = await self.leader()
            other = next(node for node in self.nodes if node is not leader)
            client = await self.connect(other, "bob")
            await self.subscribe(client, "room:2")
            await until(lambda: self.handled("member_added", "bob"), 15, "bob's join")
            self.kill(other)
            offline = await until(lambda: self.handled("offline", "bob"), 30,
                                  "bob's offline, reaped")
            self.assertEqual(offline[0]["ended"], {"reaped": True})
            self.assertEqual(offline[0]["session"], client.welcome["session"])
            removed = self.handled("member_removed", "bob")
            self.assertEqual([(event["channel"], event["ended"]) for event in removed],
                             [("room:2", {"reaped": True})])
            for status, _, _ in self.receiver.requests:
                self.assertEqual(status, 200)  # every one signed right
        return run(scenario())
