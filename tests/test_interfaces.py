"""Every implementation of the interfaces between the layers
(presence/net/interfaces.py) provides all of it: a session of every
protocol, every protocol core, the hub as the sessions' handler, the ticket
store as their redeemer. A protocol added to the dispatcher's table is
checked here too."""

import pytest
from twisted.internet import reactor
from zope.interface.verify import verifyClass, verifyObject

from bench.echo_server import EchoHandler
from presence.firepresence.connection import FirepresenceConnection
from presence.hub.hub import Hub
from presence.hub.tickets import TicketStore
from presence.net.dispatch import PROTOCOLS
from presence.net.interfaces import (
    IProtocolConnection,
    ISession,
    ISessionHandler,
    ITicketRedeemer,
    SessionHandler,
)
from presence.sse.connection import SSEConnection
from presence.websocket.connection import ServerConnection

from .helpers.framing import FIREPRESENCE, upgrade_request
from .helpers.redis import RedisTestCase
from .helpers.transports import Harness

REQUESTS = {"websocket": upgrade_request(), "firepresence": FIREPRESENCE,
            "sse": b"GET /sse HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n"}


class SessionTests(Harness):
    def test_a_session_of_every_protocol_provides_isession(self):
        self.assertEqual(sorted(entry.session.protocol_name for entry in PROTOCOLS),
                         sorted(REQUESTS))
        for entry in PROTOCOLS:
            dispatcher, transport = self.connect()
            dispatcher.dataReceived(REQUESTS[entry.session.protocol_name])
            session = transport.protocol
            self.assertIsInstance(session, entry.session)
            self.assertTrue(verifyObject(ISession, session))


@pytest.mark.parametrize("core", [ServerConnection, FirepresenceConnection, SSEConnection])
def test_every_protocol_core_provides_the_connection_interface(core):
    # The cores import nothing of Twisted or zope: they are checked, not declared.
    assert verifyClass(IProtocolConnection, core, tentative=True)


def test_handlers_provide_isessionhandler():
    assert verifyObject(ISessionHandler, SessionHandler())
    assert verifyObject(ISessionHandler, EchoHandler())


class DomainTests(RedisTestCase):
    def test_the_hub_handles_sessions_and_its_ticket_store_redeems_them(self):
        hub = Hub(self.engine, reactor)
        self.assertTrue(verifyObject(ISessionHandler, hub))
        self.assertTrue(verifyObject(ITicketRedeemer, hub.tickets))
        self.assertTrue(verifyObject(ITicketRedeemer, TicketStore(self.store, reactor)))
