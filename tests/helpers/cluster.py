"""A cluster as a user runs one: twistd processes sharing one real Redis,
clients on WebSocket, backends on the HTTP API (presence.client) and on
Redis directly (the events channel)."""

import asyncio
import json

import websockets
from twisted.internet import defer, reactor

from presence.client import PresenceClient
from presence.redis.engine import RedisEngine
from presence.redis.keys import PresenceKeys
from presence.redis.store import PresenceStore
from presence.redis.subscriber import RedisSubscriber

from .processes import NodeProcessesTestCase, free_port, start_node_process
from .waiting import run, until, wait

__all__ = ["KEY", "Client", "ClusterTestCase"]

KEY = "hub-test-key"


class Client:
    """A WebSocket client that keeps what it receives, by type."""

    def __init__(self, ws):
        self.ws = ws
        self.received = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for text in self.ws:
                self.received.append(json.loads(text))
        except websockets.ConnectionClosed:
            pass

    def of(self, kind):
        return [m for m in self.received if m.get("type") == kind]

    async def send(self, message):
        await self.ws.send(json.dumps(message))

    async def next_of(self, kind, count=1, timeout=10):
        await until(lambda: len(self.of(kind)) >= count, timeout, "%d %s" % (count, kind))
        return self.of(kind)[count - 1]

    async def close(self):
        await self.ws.close()
        await self.reader


class ClusterTestCase(NodeProcessesTestCase):
    nodes_count = 3
    node_heartbeat = 0.5

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.engine = RedisEngine(self.redis_url, reactor, timeout=2)
        self.addCleanup(self.engine.disconnect)
        self.keys = PresenceKeys()
        self.store = PresenceStore(self.engine, self.keys)
        self.nodes = []
        for _ in range(self.nodes_count):
            self.nodes.append((yield run(self.start_node())))
        self.clients = []
        self.events = []
        self.subscriber = RedisSubscriber(self.redis_url, self._event, reactor=reactor)
        self.subscriber.subscribe(self.keys.events)
        self.addCleanup(self.subscriber.close)

    def _event(self, channel, message):
        self.events.append(json.loads(message))

    async def start_node(self):
        client_port, api_port = free_port(), free_port()
        process = await start_node_process(
            self, self.redis_url, client_port, api_port,
            ["--node-heartbeat", str(self.node_heartbeat), "--close-timeout", "2"],
            {"PRESENCE_API_KEY": KEY})
        return {"client": client_port, "process": process,
                "api": PresenceClient("http://127.0.0.1:%d" % api_port, KEY, pool=self.pool)}

    async def connect(self, node, account, channels=("room:*",)):
        issued = await wait(node["api"].issue_ticket(account, channels=list(channels)))
        ws = await websockets.connect("ws://127.0.0.1:%d/?ticket=%s" % (
            node["client"], issued["ticket"]))
        client = Client(ws)
        self.clients.append(client)
        client.welcome = await client.next_of("welcome")
        return client

    async def subscribe(self, client, channel, presence=False):
        await client.send({"type": "subscribe", "channel": channel, "presence": presence})
        await until(lambda: any(m.get("channel") == channel for m in client.of("subscribed")),
                          message="subscribed to " + channel)

    async def close_clients(self):
        for client in self.clients:
            await client.close()
