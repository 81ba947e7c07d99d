"""Nodes of a cluster in this process: each a Hub and its client side
(Server) on the test's real Redis, with a clock of its own (the reactor, or
a Clock the test advances, so that announcements, reaping and
re-assertion run when the test says), and WebSocket sessions on
StringTransports."""

import collections
import json

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from presence.hub.hub import Hub
from presence.hub.settings import HubSettings
from presence.net.dispatch import ListenerFactory
from presence.net.server import Server
from presence.net.settings import ServerSettings
from presence.websocket.frames import OP_TEXT

from .framing import server_frames, upgrade_request
from .redis import RedisTestCase
from .waiting import lose

__all__ = ["Node", "HubTestCase", "documents"]

#: One node: its hub, its client side, the factory of its ports, its clock.
Node = collections.namedtuple("Node", "hub server factory clock")


def documents(transport):
    """The JSON documents the server wrote to a session's transport."""
    return [json.loads(payload) for opcode, payload in server_frames(transport.value())
            if opcode == OP_TEXT]


class HubTestCase(RedisTestCase):
    def start_node(self, clock=reactor, node_heartbeat=60.0, engine_timeout=None,
                   node_id=None, history=(), leave_delay=0.0, workers_of=""):
        """A node on ``clock``, started; stopped at cleanup. ``history``:
        its HistoryRules (--history); ``leave_delay``: --leave-delay (none
        here, unless a test is about it: offline events at once);
        ``workers_of``: as a worker of that ``HOST:PID`` (--workers)."""
        engine = self.make_engine(timeout=engine_timeout or self.engine_timeout)
        hub = Hub(engine, clock, HubSettings(node_heartbeat=node_heartbeat,
                                             history=tuple(history), leave_delay=leave_delay,
                                             workers_of=workers_of),
                  node_id=node_id)
        server = Server(hub, ServerSettings(heartbeat_interval=0), clock, tickets=hub.tickets)
        hub.start(server)
        self.addCleanup(hub.stop)
        factory = ListenerFactory(server)
        factory.startFactory()
        self.addCleanup(factory.stopFactory)
        return Node(hub, server, factory, clock)

    def connect(self, node, request=None):
        """A connection to ``node`` that sent ``request`` (a WebSocket
        handshake by default): ``(session, transport)``, lost at cleanup."""
        dispatcher = node.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 50000))
        dispatcher.makeConnection(transport)
        dispatcher.dataReceived(request if request is not None else upgrade_request())
        session = transport.protocol
        self.addCleanup(lose, session, transport)
        return session, transport

    def open_session(self, node, account="fuzzer", channels=("room:*",)):
        """A WebSocket session, authenticated as a ticket for ``account`` and
        ``channels`` would make it (what redeeming does, without waiting for
        Redis)."""
        session, transport = self.connect(node)
        session.account = account
        session.allowed_channels = tuple(channels)
        session.become_ready()
        assert b"welcome" in transport.value()
        transport.clear()
        return session, transport
