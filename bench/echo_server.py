"""Echo server on Presence's own WebSocket factory, for the wsbench harness
and the Autobahn TestSuite.

usage: python bench/echo_server.py PORT

Speaks the protocol in ../shared/wsbench/README.md: text and binary messages
are echoed unchanged; a text message starting with ``BCAST:`` is not echoed
but sent to every open session (the sender included), encoded once. Messages
up to 16 MiB are accepted so Autobahn's section 9 runs.
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from twisted.internet import epollreactor

    epollreactor.install()

from presence.application import Application  # noqa: E402
from presence.listening import NoDelayEndpoint  # noqa: E402
from presence.protocol import ServerSettings, WebSocketFactory  # noqa: E402
from presence.websocket import mask  # noqa: E402
from presence.websocket.frames import encode_text  # noqa: E402


class EchoApplication(Application):
    def __init__(self):
        self.factory = None

    def text_received(self, session, text):
        if text.startswith("BCAST:"):
            self.factory.fan_out(encode_text(text), self.factory.sessions.values())
        else:
            session.send_text(text)

    def binary_received(self, session, data):
        session.send_binary(data)


def main(port):
    from twisted.internet import endpoints, reactor

    application = EchoApplication()
    settings = ServerSettings(max_message_size=16 * 1024 * 1024)
    factory = application.factory = WebSocketFactory(application, settings, reactor)
    endpoint = NoDelayEndpoint(endpoints.serverFromString(
        reactor, "tcp:%d:interface=127.0.0.1:backlog=4096" % port))
    endpoint.listen(factory)
    print("presence echo listening on %d (wsaccel: %s)" % (port, mask.ACCELERATED), flush=True)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
