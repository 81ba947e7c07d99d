"""``twistd presence --demo``: a chat page at ``/demo`` on the API port, and
the two things a real application would provide for it, kept here and
clearly demo-only:

- the page's "backend" for tickets: a **demo key**, generated at start-up,
  held only in memory, that ``POST /tickets`` accepts for demo accounts
  (``demo-...``) on demo channels (``demo:*``) only; the page gets it in
  its HTML. It exists only while the demo is on.
- a **demo backend** that reads what clients publish from the Redis Stream
  (``XREADGROUP``, as any backend would) and re-publishes chat messages on
  ``demo:`` channels through the hub, so that the other tabs receive them.
  The nodes of a cluster share one consumer group: each message is relayed
  once. A message a node read and did not live to acknowledge is claimed by
  another node after ``claim_idle`` seconds (``XAUTOCLAIM``) and relayed if
  it is still recent (``MAX_RELAY_AGE``), so the group's pending list does
  not grow with every node that dies.

Never run ``--demo`` where untrusted people reach the API port: anyone who
loads ``/demo`` can get tickets for demo accounts.
"""

import json
import secrets
import time

from twisted.internet import defer, task
from twisted.logger import Logger

from ..redis.engine import RedisEngine, RedisUnavailable

__all__ = ["Demo", "DemoBackend", "DEMO_ACCOUNT_PREFIX", "DEMO_CHANNELS", "DEMO_CHANNEL"]

log = Logger()

#: Demo tickets are for these accounts and channels only.
DEMO_ACCOUNT_PREFIX = "demo-"
DEMO_CHANNELS = ["demo:*"]
#: The channel the demo page chats and shows presence on.
DEMO_CHANNEL = "demo:lobby"
#: Longest chat message relayed, in characters.
MAX_TEXT = 500
#: A chat message older than this (seconds) is no longer worth relaying when
#: it is claimed from a consumer that died with it.
MAX_RELAY_AGE = 60.0


class Demo:
    """What the API needs to serve the demo: its key and the client port."""

    def __init__(self):
        self.key = "DEMO-ONLY-" + secrets.token_urlsafe(24)
        self.channel = DEMO_CHANNEL
        #: ``(scheme, port number)`` of the client port the page connects
        #: to; set by the service once the ports listen.
        self.client = None

    def set_client_ports(self, ports):
        """``ports``: ``[(endpoint description, listening port)]``. The page
        connects to the first that a browser can reach directly (not one
        behind the PROXY protocol)."""
        for description, port in ports:
            if description.startswith("haproxy:"):
                continue
            number = getattr(port.getHost(), "port", None)
            if number is not None:
                self.client = ("wss" if description.startswith("ssl:") else "ws", number)
                return

    def allows(self, account):
        return account.startswith(DEMO_ACCOUNT_PREFIX)


class DemoBackend:
    """Demo only: the stream reader an application's backend would be.

    Relays ``{"text": TEXT}`` published by a client on a ``demo:`` channel
    to that channel's subscribers as ``{"from": ACCOUNT, "session": S,
    "text": TEXT}``; ignores everything else."""

    group = "presence-demo"

    def __init__(self, redis_url, hub, reactor, block=1.0, claim_idle=30.0):
        self.hub = hub
        self.reactor = reactor
        self.block = block
        self.claim_idle = claim_idle
        self._claimed_at = 0.0
        self.stream = hub.keys.stream
        self.consumer = hub.node_id
        # Its own connection: a blocking read holds up the connection it is on.
        self.engine = RedisEngine(redis_url, reactor, timeout=block + 2.0, poolsize=1)
        self.relayed = 0
        self.reclaimed = 0
        self._running = False
        self._loop = None

    def start(self):
        self._running = True
        self._loop = defer.ensureDeferred(self._run())
        self._loop.addErrback(lambda failure: failure.trap(defer.CancelledError))

    async def stop(self):
        self._running = False
        if self._loop is not None:
            self._loop.cancel()
        await self.engine.disconnect()

    async def _run(self):
        while self._running:
            try:
                await self._ensure_group()
                while self._running:
                    await self._read()
                    if self.reactor.seconds() - self._claimed_at >= self.claim_idle:
                        await self._claim()
                        self._claimed_at = self.reactor.seconds()
            except RedisUnavailable:
                pass
            except Exception as error:  # NOGROUP after a Redis restart, etc.
                if self._running:
                    log.warn("presence demo backend: {error}", error=error)
            if self._running:
                await task.deferLater(self.reactor, 1.0, lambda: None)

    async def _ensure_group(self):
        try:
            await self.engine.execute("XGROUP", "CREATE", self.stream, self.group, "$",
                                      "MKSTREAM")
        except Exception as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _read(self):
        reply = await self.engine.execute(
            "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", 100,
            "BLOCK", int(self.block * 1000), "STREAMS", self.stream, ">")
        for _stream, entries in reply or ():
            for entry_id, flat in entries:
                await self._relay(_fields(flat))
                await self.engine.execute("XACK", self.stream, self.group, entry_id)

    async def _claim(self):
        """Take over what other consumers read and never acknowledged (their
        node died between XREADGROUP and XACK): relay it unless it is too old
        to be chat any more, and acknowledge it either way."""
        start = "0-0"
        while True:
            reply = await self.engine.execute(
                "XAUTOCLAIM", self.stream, self.group, self.consumer,
                int(self.claim_idle * 1000), start, "COUNT", 100)
            start, entries = reply[0], reply[1]
            for entry_id, flat in entries:
                # A deleted entry (XTRIM, XDEL) comes back without fields.
                if flat and _entry_age(entry_id) <= MAX_RELAY_AGE:
                    await self._relay(_fields(flat))
                    self.reclaimed += 1
                await self.engine.execute("XACK", self.stream, self.group, entry_id)
            if start in ("0-0", b"0-0"):
                return

    async def _relay(self, fields):
        channel = fields.get("channel", "")
        if not channel.startswith("demo:"):
            return
        try:
            data = json.loads(fields.get("data", "null"))
        except ValueError:
            return
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text.strip():
            return
        await self.hub.publish([channel], {"from": fields.get("account"),
                                           "session": fields.get("session"),
                                           "text": text[:MAX_TEXT]})
        self.relayed += 1


def _fields(flat):
    return dict(zip(flat[0::2], flat[1::2]))


def _entry_age(entry_id):
    """Seconds since a stream entry was added: its id starts with the
    Redis server's clock in milliseconds."""
    milliseconds = int(str(entry_id).split("-", 1)[0])
    return time.time() - milliseconds / 1000.0
