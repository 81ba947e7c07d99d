"""A node's client side without sockets: StringTransports for the wire and a
Clock for every timer, so that tests drive handshakes, messages and every
timeout byte by byte and second by second."""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from presence.net.dispatch import ListenerFactory
from presence.net.interfaces import SessionHandler
from presence.net.server import Server
from presence.net.settings import ServerSettings

from .framing import FIREPRESENCE, upgrade_request
from .waiting import lose

__all__ = ["RecordingHandler", "Harness"]


class RecordingHandler(SessionHandler):
    """Echoes, and records what happened."""

    def __init__(self):
        self.opened = []
        self.closed = []
        self.fail_on = None

    def session_opened(self, session):
        self.opened.append(session)

    def text_received(self, session, text):
        if text == self.fail_on:
            raise RuntimeError("application bug")
        session.send_text(text)

    def binary_received(self, session, data):
        session.send_binary(data)

    def session_closed(self, session, record):
        self.closed.append((session, record))


class Harness(SynchronousTestCase):
    """``self.server`` (its handler records and echoes) on a Clock;
    ``settings`` are its ServerSettings."""

    settings = dict(heartbeat_interval=30.0, heartbeat_timeout=10.0, close_timeout=5.0,
                    handshake_timeout=10.0)

    def setUp(self):
        self.clock = Clock()
        self.app = RecordingHandler()
        self.server = Server(self.app, ServerSettings(**self.settings), self.clock)
        self.factory = ListenerFactory(self.server)
        self.factory.startFactory()
        self.addCleanup(self.factory.stopFactory)

    def connect(self):
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 50000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 50000))
        protocol.makeConnection(transport)
        return protocol, transport

    def open_session(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(upgrade_request())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))
        transport.clear()
        return transport.protocol, transport

    def open_firepresence(self, head=FIREPRESENCE):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(head)
        transport.clear()
        return transport.protocol, transport

    def lose(self, protocol, transport):
        lose(protocol, transport)
