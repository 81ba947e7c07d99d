"""Autobahn|Python on Twisted with permessage-deflate accepted: the reference
for bench/deflate.sh. Echo + BCAST as in the wsbench protocol.

usage: python autobahn_deflate.py PORT   (in a venv with autobahn[twisted] and wsaccel)

Compression is Autobahn's default server behaviour once an offer is accepted
(the client's first permessage-deflate offer, as offered); a broadcast uses
prepareMessage/sendPreparedMessage, which Autobahn compresses per connection.
"""
import sys

from twisted.internet import epollreactor

epollreactor.install()

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # noqa: E402
from autobahn.websocket.compress import (  # noqa: E402
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from twisted.internet import reactor  # noqa: E402

clients = set()


def accept_deflate(offers):
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class Echo(WebSocketServerProtocol):
    def onOpen(self):
        clients.add(self)

    def onMessage(self, payload, isBinary):
        if not isBinary and payload[:6] == b"BCAST:":
            message = self.factory.prepareMessage(payload, False)
            for client in clients:
                client.sendPreparedMessage(message)
            return
        self.sendMessage(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        clients.discard(self)


port = int(sys.argv[1])
factory = WebSocketServerFactory("ws://127.0.0.1:%d" % port)
factory.protocol = Echo
factory.setProtocolOptions(perMessageCompressionAccept=accept_deflate, autoPingInterval=0,
                           maxMessagePayloadSize=0, maxFramePayloadSize=0)
reactor.listenTCP(port, factory, backlog=4096, interface="127.0.0.1")
print("autobahn-twisted (permessage-deflate) listening on", port, flush=True)
reactor.run()
