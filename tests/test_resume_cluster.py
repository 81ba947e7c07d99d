"""Resume tokens across real twistd nodes sharing one real Redis: a client
whose node is SIGKILLed comes back on another node with its token (no
ticket, no backend) and recovers every publication it missed, once, in
order (docs/tickets.md, "Resume tokens"; docs/messages.md, recovery)."""

import asyncio
import signal

import websockets

from presence.client import PresenceClient

from .helpers.cluster import KEY, Client, ClusterTestCase
from .helpers.processes import free_port, start_node_process
from .helpers.waiting import run, until, wait

#: Publications made while the client moves from one node to the other.
PUBLISHED = 400


class ResumeAcrossNodesTests(ClusterTestCase):
    nodes_count = 2

    async def start_node(self):
        client_port, api_port = free_port(), free_port()
        process = await start_node_process(
            self, self.redis_url, client_port, api_port,
            ["--node-heartbeat", str(self.node_heartbeat), "--close-timeout", "2",
             "--history", "room:*=1000,300"],
            {"PRESENCE_API_KEY": KEY})
        return {"client": client_port, "process": process,
                "api": PresenceClient("http://127.0.0.1:%d" % api_port, KEY, pool=self.pool)}

    def offsets(self, client):
        return [m["offset"] for m in client.of("message")]

    def test_a_client_resumes_on_another_node_after_a_sigkill_and_recovers_everything_once(self):
        async def scenario():
            a, b = self.nodes
            on_b = await self.connect(b, "ann")
            token = on_b.welcome["resume"]
            await on_b.send({"type": "subscribe", "channel": "room:live"})
            epoch = (await on_b.next_of("subscribed"))["epoch"]

            async def publishing():
                for n in range(1, PUBLISHED + 1):
                    await wait(a["api"].publish("room:live", n))
            publisher = asyncio.ensure_future(publishing())
            await until(lambda: len(on_b.of("message")) >= 50, 20, "50 messages on B")
            b["process"].send_signal(signal.SIGKILL)
            await until(lambda: b["process"].poll() is not None, 10, "B dead")
            await asyncio.wait_for(on_b.reader, 10)  # its connection is gone
            seen = self.offsets(on_b)
            self.assertEqual(seen, list(range(1, len(seen) + 1)))

            # Back on A with the token: no ticket, and a fresh token.
            on_a = Client(await websockets.connect(
                "ws://127.0.0.1:%d/?resume=%s" % (a["client"], token)))
            self.clients.append(on_a)
            welcome = await on_a.next_of("welcome")
            self.assertEqual(welcome["account"], "ann")
            self.assertNotIn(welcome["resume"], (None, token))
            await on_a.send({"type": "subscribe", "channel": "room:live",
                             "recover": {"epoch": epoch, "offset": seen[-1]}})
            self.assertTrue((await on_a.next_of("subscribed"))["recovered"])
            await publisher
            self.assertLess(len(seen), PUBLISHED)
            await until(lambda: len(seen) + len(on_a.of("message")) >= PUBLISHED, 30,
                        "every publication")
            self.assertEqual(seen + self.offsets(on_a), list(range(1, PUBLISHED + 1)))
            self.assertEqual([m["data"] for m in on_a.of("message")],
                             list(range(len(seen) + 1, PUBLISHED + 1)))

            # The token was used: a second use is refused, as a bad ticket.
            with self.assertRaises(websockets.InvalidStatus) as refused:
                await websockets.connect("ws://127.0.0.1:%d/?resume=%s" % (a["client"], token))
            self.assertEqual(refused.exception.response.status_code, 401)
            await on_a.close()

        return run(scenario())
