"""The hub across nodes: three twistd processes and one real Redis, clients on
WebSocket and firepresence, backends on the HTTP API and on Redis directly.

Node liveness and Redis restarts run on the processes' real clocks: these
tests wait for conditions (bounded), never for a fixed time."""

import asyncio
import json
import signal

from presence.hub.settings import DEFAULTS

from .helpers.cluster import ClusterTestCase
from .helpers.waiting import run, until, wait


class DeliveryTests(ClusterTestCase):
    def test_a_publish_through_one_node_reaches_every_subscriber_once_and_nobody_else(self):
        a, b, c = self.nodes

        async def scenario():
            on_b = await self.connect(b, "ann")
            on_c = await self.connect(c, "bob")
            elsewhere = await self.connect(b, "cid")
            await self.subscribe(on_b, "room:1")
            await self.subscribe(on_c, "room:1")
            await self.subscribe(elsewhere, "room:2")
            answer = await wait(a["api"].publish("room:1", {"text": "hello"}))
            self.assertEqual(answer, {"channels": 1, "nodes": 2, "duplicate": False})
            await wait(a["api"].publish("room:2", {"text": "marker"}))
            for client in (on_b, on_c):
                message = await client.next_of("message")
                self.assertEqual(message, {"type": "message", "channel": "room:1",
                                           "data": {"text": "hello"}})
            marker = await elsewhere.next_of("message")
            self.assertEqual(marker["data"], {"text": "marker"})
            # Once: a second publish is the next message, not a repeat.
            await wait(a["api"].publish("room:1", {"text": "again"}))
            for client in (on_b, on_c):
                second = await client.next_of("message", 2)
                self.assertEqual(second["data"], {"text": "again"})
                self.assertEqual(len(client.of("message")), 2)
            self.assertEqual(len(elsewhere.of("message")), 1)
            await self.close_clients()

        return run(scenario())

    def test_juggernaut_publishes_deliver_and_except_skips_sessions(self):
        a, b, c = self.nodes

        async def scenario():
            first = await self.connect(a, "ann")
            second = await self.connect(b, "bob")
            for client in (first, second):
                await self.subscribe(client, "room:j")
            await wait(self.engine.publish("juggernaut", json.dumps({
                "channels": ["room:j"], "data": "from juggernaut",
                "except": first.welcome["session"]})))
            message = await second.next_of("message")
            self.assertEqual(message, {"type": "message", "channel": "room:j",
                                       "data": "from juggernaut"})
            await wait(self.engine.publish("juggernaut", json.dumps({
                "channels": ["room:j"], "data": "to all"})))
            self.assertEqual((await first.next_of("message"))["data"], "to all")
            self.assertEqual(len(first.of("message")), 1)
            await self.close_clients()

        return run(scenario())

    def test_members_join_and_leave_and_the_account_channel(self):
        a, b, c = self.nodes

        async def scenario():
            ann = await self.connect(a, "ann")
            bob = await self.connect(c, "bob")
            await self.subscribe(ann, "room:m", presence=True)
            await self.subscribe(bob, "room:m")
            join = await ann.next_of("join")
            self.assertEqual((join["account"], join["session"]), ("bob", bob.welcome["session"]))
            await ann.send({"type": "members", "channel": "room:m"})
            members = await ann.next_of("members")
            self.assertEqual(sorted(m["account"] for m in members["members"]), ["ann", "bob"])
            # A publish to an account's own channel reaches all its sessions.
            await wait(b["api"].publish("account:bob", "just for bob"))
            self.assertEqual((await bob.next_of("message"))["data"], "just for bob")
            await bob.close()
            leave = await ann.next_of("leave")
            self.assertEqual(leave["account"], "bob")
            # Bob did not ask for presence events: he never saw Ann's join.
            self.assertEqual(bob.of("join"), [])
            await ann.close()

        return run(scenario())

    def test_client_errors_are_answered_not_dropped(self):
        a = self.nodes[0]

        async def scenario():
            client = await self.connect(a, "eve", channels=["room:1"])
            await client.send({"type": "subscribe", "channel": "secret"})
            error = await client.next_of("error")
            self.assertEqual(error["reason"], "channel not allowed by the ticket")
            await client.ws.send("not json")
            self.assertEqual((await client.next_of("error", 2))["reason"],
                             "message is not a JSON object")
            await client.send({"type": "dance"})
            self.assertEqual((await client.next_of("error", 3))["reason"], "unknown message type")
            self.assertFalse(client.reader.done())  # still connected
            await client.send({"type": "publish", "channel": "room:1", "data": {"n": 1}})
            published = await client.next_of("published")
            entries = await wait(self.engine.execute("XRANGE", self.keys.stream, "-", "+"))
            self.assertEqual(entries[-1][0], published["id"])
            fields = dict(zip(entries[-1][1][0::2], entries[-1][1][1::2]))
            self.assertEqual((fields["channel"], json.loads(fields["data"]), fields["account"]),
                             ("room:1", {"n": 1}, "eve"))
            await client.close()

        return run(scenario())


class PresenceTests(ClusterTestCase):
    def test_presence_is_the_same_on_every_node_and_events_go_out(self):
        a, b, c = self.nodes

        async def scenario():
            ann = await self.connect(a, "ann")
            ann_too = await self.connect(c, "ann")
            bob = await self.connect(b, "bob")
            for node in self.nodes:
                self.assertEqual(await wait(node["api"].presence()), ["ann", "bob"])
            sessions = await wait(b["api"].account_presence("ann"))
            self.assertEqual(sorted(s["session"] for s in sessions["sessions"]),
                             sorted([ann.welcome["session"], ann_too.welcome["session"]]))
            await ann.close()
            # Still online: her other session is open.
            self.assertEqual(await wait(a["api"].presence()), ["ann", "bob"])
            await ann_too.close()
            await until(lambda: any(e["type"] == "offline" and e["account"] == "ann"
                                          for e in self.events), message="ann offline")
            self.assertEqual(await wait(a["api"].presence()), ["bob"])
            online = [e["account"] for e in self.events if e["type"] == "online"]
            self.assertEqual(sorted(online), ["ann", "bob"])
            await bob.close()

        return run(scenario())

    def test_a_disconnect_through_one_node_closes_sessions_on_another(self):
        a, b, c = self.nodes

        async def scenario():
            target = await self.connect(c, "mallory")
            await wait(a["api"].disconnect(account="mallory", code=4000, reason="banned"))
            await until(lambda: target.reader.done(), message="closed")
            self.assertEqual((target.ws.close_code, target.ws.close_reason), (4000, "banned"))

        return run(scenario())

    def test_a_killed_node_leaves_presence_within_three_heartbeats(self):
        a, b, c = self.nodes

        async def scenario():
            await self.connect(c, "doomed")
            await self.connect(a, "survivor")
            c["process"].send_signal(signal.SIGKILL)
            started = asyncio.get_event_loop().time()
            await until(lambda: any(e["type"] == "offline" and e["account"] == "doomed"
                                          for e in self.events), timeout=15,
                              message="the dead node's offline event")
            # Three heartbeats to expire, one more for a survivor to notice,
            # then the leave delay (the account could come back on a
            # survivor), looked at every second.
            self.assertLess(asyncio.get_event_loop().time() - started,
                            4 * self.node_heartbeat + DEFAULTS.leave_delay + 2.5)
            self.assertEqual(await wait(a["api"].presence()), ["survivor"])
            await self.close_clients()

        return run(scenario())


class PausedNodeTests(ClusterTestCase):
    nodes_count = 2

    def test_a_node_reaped_while_paused_asserts_its_sessions_again(self):
        """A node frozen past three heartbeats (a VM paused, a partition)
        is reaped by a survivor: its sessions go offline. When it runs
        again its clients are still connected, so its next heartbeat finds
        it was reaped and puts them back: online again, members again, and
        reachable."""
        a, b = self.nodes

        async def scenario():
            watcher = await self.connect(a, "watcher")
            await self.subscribe(watcher, "room:r", presence=True)
            ann = await self.connect(b, "ann")
            await self.subscribe(ann, "room:r")
            b["process"].send_signal(signal.SIGSTOP)
            try:
                await until(lambda: any(e["type"] == "offline" and e["account"] == "ann"
                                              for e in self.events), timeout=10,
                                  message="ann reaped while her node is paused")
                await until(lambda: watcher.of("leave"), message="the leave of the reaping")
            finally:
                b["process"].send_signal(signal.SIGCONT)
            offline_at = next(i for i, e in enumerate(self.events)
                              if e["type"] == "offline" and e["account"] == "ann")
            await until(lambda: any(e["type"] == "online" and e["account"] == "ann"
                                          for e in self.events[offline_at:]), timeout=10,
                              message="ann online again")
            self.assertEqual(await wait(a["api"].presence()), ["ann", "watcher"])
            await until(lambda: watcher.of("join"), message="ann's join again")
            members = await wait(self.store.members("room:r"))
            self.assertEqual(sorted(members.values()), ["ann", "watcher"])
            await wait(a["api"].publish("room:r", "welcome back"))
            await until(
                lambda: any(m.get("data") == "welcome back" for m in ann.of("message")),
                message="delivery after the pause")
            await self.close_clients()

        return run(scenario())


class OutageTests(ClusterTestCase):
    nodes_count = 2

    def test_clients_stay_connected_through_a_redis_restart_and_delivery_resumes(self):
        a, b = self.nodes

        async def scenario():
            ann = await self.connect(b, "ann")
            await self.subscribe(ann, "room:r")
            await wait(self.redis.stop_process())
            await wait(self.redis.started())
            # Publishes reach her again once her node has subscribed again.

            async def delivered():
                try:
                    await wait(a["api"].publish("room:r", "after the restart"))
                except Exception:
                    return False
                return bool(ann.of("message"))
            await until(delivered, timeout=20, message="delivery after the restart")
            self.assertFalse(ann.reader.done())

            # Presence is asserted again (after the Redis restart her node's
            # key may have expired, a survivor reaped her, and her node's
            # next heartbeat put her back: PausedNodeTests).
            async def present():
                return "ann" in await wait(a["api"].presence())
            await until(present, timeout=10, message="ann present again")
            await ann.close()

        return run(scenario())


class ShutdownTests(ClusterTestCase):
    nodes_count = 2

    def test_sigterm_closes_clients_with_1001_and_their_presence_ends(self):
        a, b = self.nodes

        async def scenario():
            client = await self.connect(b, "ann")
            b["process"].send_signal(signal.SIGTERM)
            await until(lambda: client.reader.done(), message="closed by the shutdown")
            self.assertEqual(client.ws.close_code, 1001)
            await until(lambda: any(e["type"] == "offline" and e["account"] == "ann"
                                          for e in self.events), message="offline event")
            self.assertEqual(await wait(a["api"].presence()), [])
            # The node leaves the cluster after its sessions' offline events:
            # once the process has exited.
            await until(lambda: b["process"].poll() is not None, 30, "node b stopped")
            nodes = await wait(self.engine.execute("SMEMBERS", self.keys.nodes))
            self.assertEqual(len(nodes), 1)

        return run(scenario())


class PingTests(ClusterTestCase):
    nodes_count = 1

    def test_a_ping_message_is_answered_with_a_pong_carrying_its_id(self):
        node, = self.nodes

        async def scenario():
            client = await self.connect(node, "ann")
            await client.send({"type": "ping", "id": 7})
            self.assertEqual(await client.next_of("pong"), {"type": "pong", "id": 7})
            await client.send({"type": "ping"})
            self.assertEqual(await client.next_of("pong", 2), {"type": "pong", "id": None})
            await client.close()

        return run(scenario())
