"""A Presence node with its hub, for measuring delivery through Redis.

usage: python bench/hub_server.py PORT [--redis URL] [--channels N] [--report SECONDS]
                                   [--history SIZE,TTL]

Every session is subscribed, as it opens, to channel ``bench`` (with
``--channels N``: to ``bench-K``, K = the session's number modulo N), the
way the hub subscribes a client that asked for it, but without sending it
an acknowledgement (wsload would count it as a broadcast). A text message
starting with ``BCAST:`` is published to the sender's channel *through
Redis* (PUBLISH, as a backend would), and comes back to this node's
subscription, which delivers it to every local subscriber encoded once:
the path of a real publish. Without ``--redis``, an embedded redis-server
is started. Every second (``--report``) the node prints what it delivered.
With ``--history SIZE,TTL`` the bench channels keep a history (``--history
'bench*=SIZE,TTL'``): a publish must then go through the node's script
(bench/hub_rate.py does), and carries its offset.
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from twisted.internet import epollreactor

    epollreactor.install()

from twisted.internet import defer, endpoints, task  # noqa: E402

from presence.hub.hub import Hub  # noqa: E402
from presence.hub.settings import HubSettings, parse_history_rule  # noqa: E402
from presence.net.dispatch import ListenerFactory  # noqa: E402
from presence.net.listening import NoDelayEndpoint  # noqa: E402
from presence.net.server import Server  # noqa: E402
from presence.net.settings import ServerSettings  # noqa: E402
from presence.redis.embedded import EmbeddedRedis  # noqa: E402
from presence.redis.engine import RedisEngine  # noqa: E402
from presence.websocket import mask  # noqa: E402


class BenchHub(Hub):
    channel_count = 0
    opened = 0

    def session_opened(self, session):
        if self.channel_count:
            channel = "bench-%d" % (self.opened % self.channel_count)
        else:
            channel = "bench"
        self.opened += 1
        channels = self.channels
        channels.subscriptions[session.id] = {channel}
        channels.listen(session, channel)
        channels.joined(session, channel)  # queued for the node's writer

    def text_received(self, session, text):
        if text.startswith("BCAST:"):
            channel, = self.channels.subscriptions[session.id]
            self.work.track(self.publish([channel], text), "publishing")


async def main(reactor, port, redis_url, channel_count, report_every, history=None):
    if redis_url is None:
        embedded = EmbeddedRedis(reactor)
        redis_url = await embedded.started()
        reactor.addSystemEventTrigger("before", "shutdown", embedded.stopService)
    engine = RedisEngine(redis_url, reactor)
    rules = (parse_history_rule("bench*=" + history),) if history else ()
    hub = BenchHub(engine, reactor, HubSettings(history=rules))
    hub.channel_count = channel_count
    # Thousands of clients from 127.0.0.1, publishing as fast as they can.
    server = Server(hub, ServerSettings(max_connections=0, max_connections_per_ip=0,
                                        max_message_rate=0), reactor)
    hub.start(server)
    endpoint = NoDelayEndpoint(endpoints.serverFromString(
        reactor, "tcp:%d:interface=127.0.0.1:backlog=4096" % port))
    await endpoint.listen(ListenerFactory(server))
    print("presence hub listening on %d (unmasking: %s, redis: %s)"
          % (port, mask.UNMASKING, redis_url), flush=True)

    def report():
        print("delivered %d redis_messages %d sessions %d"
              % (hub.stats.delivered, hub.stats.redis_messages, len(server.sessions)),
              flush=True)
    task.LoopingCall(report).start(report_every, now=False)
    await defer.Deferred()  # until the reactor stops


def run():
    args = sys.argv[1:]
    port = int(args[0])
    redis_url = args[args.index("--redis") + 1] if "--redis" in args else None
    channel_count = int(args[args.index("--channels") + 1]) if "--channels" in args else 0
    report_every = float(args[args.index("--report") + 1]) if "--report" in args else 1.0
    history = args[args.index("--history") + 1] if "--history" in args else None
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, port, redis_url,
                                                         channel_count, report_every,
                                                         history)))


if __name__ == "__main__":
    run()
