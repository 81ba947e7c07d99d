"""Run by tests/test_lean_reads.py in a process of its own, on Twisted's
epoll reactor (the tests' own reactor is asyncio's): a server and clients
on loopback, with the lean read path installed unless PRESENCE_LEAN_READS=0.
Prints one JSON document: what each scenario saw."""

import json
import os
import socket
import struct
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import defer, endpoints, protocol, reactor  # noqa: E402
from twisted.internet.error import ConnectionDone  # noqa: E402
from twisted.python import context, log  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from presence.net.twisted_internals import install_lean_reads  # noqa: E402


class Recorder(protocol.Protocol):
    def connectionMade(self):
        self.received = b""
        self.systems = []
        self.factory.accepted.append(self)

    def dataReceived(self, data):
        self.systems.append(context.get(log.ILogContext, {}).get("system"))
        if b"raise" in data:
            raise RuntimeError("the protocol failed on purpose")
        self.received += data

    def connectionLost(self, reason):
        self.lost = reason.type.__name__
        self.factory.lost.callback(self)


class Client(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(self.factory.send)
        if self.factory.close:
            self.transport.loseConnection()


async def scenario(port, server_factory, send, close):
    server_factory.lost = defer.Deferred()
    client_factory = protocol.ClientFactory.forProtocol(Client)
    client_factory.send, client_factory.close = send, close
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    client = await endpoint.connect(client_factory)
    if not close:
        reactor.callLater(0.3, client.transport.loseConnection)
    server = await server_factory.lost
    return {"received": server.received.decode(), "systems": sorted(set(server.systems)),
            "lost": server.lost}


async def reset_scenario(port, server_factory):
    """A client that sends, then resets the connection (SO_LINGER 0): the
    server reads the bytes, then recv fails with ECONNRESET."""
    server_factory.lost = defer.Deferred()
    client = socket.create_connection(("127.0.0.1", port.getHost().port))
    client.sendall(b"bye")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    reactor.callLater(0.2, client.close)
    server = await server_factory.lost
    return {"received": server.received.decode(), "lost": server.lost}


async def main():
    logged = []
    log.addObserver(lambda event: event.get("isError") and logged.append(
        str(event.get("failure").value)))
    installed = install_lean_reads(reactor)
    factory = protocol.Factory.forProtocol(Recorder)
    factory.accepted = []
    port = await endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        factory)
    result = {"installed": installed,
              "read": await scenario(port, factory, b"hello world", True),
              "failing": await scenario(port, factory, b"raise", False),
              "reset": await reset_scenario(port, factory),
              "logged": logged}
    print(json.dumps(result), flush=True)


def run():
    done = defer.ensureDeferred(main())
    done.addErrback(lambda failure: print(json.dumps({"error": failure.getTraceback()})))
    done.addBoth(lambda _: reactor.stop())
    reactor.callLater(20, reactor.stop)  # bounded, whatever happens
    reactor.run()


if __name__ == "__main__":
    run()
