"""Echo server on Presence's own WebSocket factory, for the wsbench harness
and the Autobahn TestSuite.

usage: python bench/echo_server.py PORT [--deflate] [--deflate-context-takeover]

Speaks the protocol in ../shared/wsbench/README.md: text and binary messages
are echoed unchanged; a text message starting with ``BCAST:`` is not echoed
but sent to every open session (the sender included), encoded once. Messages
up to 16 MiB are accepted so Autobahn's section 9 runs.

``--deflate`` accepts permessage-deflate (RFC 7692) with the server's
defaults (no server context takeover: one shared compressor, and a
broadcast compressed once) except that every message is compressed, however
short (the server's default leaves messages under 128 bytes alone);
``--deflate-context-takeover`` makes the server keep a compression context
per connection instead. Without either flag no
extension is accepted, as the wsbench protocol expects.
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from twisted.internet import epollreactor

    epollreactor.install()

from presence.net.dispatch import ListenerFactory  # noqa: E402
from presence.net.interfaces import SessionHandler  # noqa: E402
from presence.net.listening import NoDelayEndpoint  # noqa: E402
from presence.net.server import Server  # noqa: E402
from presence.net.settings import ServerSettings  # noqa: E402
from presence.websocket import mask  # noqa: E402
from presence.websocket.deflate import PerMessageDeflate  # noqa: E402
from presence.websocket.handshake import HandshakeConfig  # noqa: E402
from presence.wire.prepared import PreparedMessage  # noqa: E402


class EchoHandler(SessionHandler):
    def __init__(self):
        self.server = None

    def text_received(self, session, text):
        if text.startswith("BCAST:"):
            self.server.fan_out(PreparedMessage.text(text), self.server.sessions.values())
        else:
            session.send_text(text)

    def binary_received(self, session, data):
        session.send_binary(data)


def main(port, flags=()):
    from twisted.internet import endpoints, reactor

    from presence.net.twisted_internals import install_lean_reads

    lean = install_lean_reads(reactor)
    handler = EchoHandler()
    extensions = []
    if "--deflate" in flags or "--deflate-context-takeover" in flags:
        extensions.append(PerMessageDeflate(
            server_context_takeover="--deflate-context-takeover" in flags, min_size=0))
    # Autobahn's section 9 sends 16 MiB messages, messages of 65,536
    # fragments and thousands of messages back to back; the harness opens
    # 10,000 connections from 127.0.0.1, and section 12 has 131 MB
    # inflated per connection as fast as it goes: no operator limits here.
    settings = ServerSettings(handshake=HandshakeConfig(extensions=extensions),
                              max_message_size=16 * 1024 * 1024, max_fragments=0,
                              max_message_rate=0, max_inflated_rate=0, max_connections=0,
                              max_connections_per_ip=0)
    server = handler.server = Server(handler, settings, reactor)
    endpoint = NoDelayEndpoint(endpoints.serverFromString(
        reactor, "tcp:%d:interface=127.0.0.1:backlog=4096" % port))
    endpoint.listen(ListenerFactory(server))
    print("presence echo listening on %d (unmasking: %s, extensions: %s, lean reads: %s)"
          % (port, mask.UNMASKING, [e.name for e in extensions] or "none",
             "on" if lean else "off"), flush=True)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:])
