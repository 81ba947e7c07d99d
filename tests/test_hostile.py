"""Hostile clients, one test per kind: each is stopped by a documented limit
(docs/operations.md) with its documented close code or HTTP status, and a
well-behaved client beside it goes on receiving.

Most run on StringTransports with a Clock (every timer driven, no sleeping);
the client that never reads needs real sockets, and the subscribe flood the
hub on a real Redis.
"""

import asyncio
import json
import socket
import zlib

import websockets
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bench.echo_server import EchoHandler
from presence.hub.tickets import Ticket
from presence.net.dispatch import ListenerFactory
from presence.net.server import Server
from presence.net.settings import ServerSettings
from presence.websocket.deflate import PerMessageDeflate
from presence.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    encode_text,
)

from .helpers.framing import (
    client_frame,
    random_key,
    server_close_frame,
    server_frames,
    upgrade_request,
)
from .helpers.hubs import HubTestCase, documents
from .helpers.servers import ServerTestCase
from .helpers.waiting import lose, run, until

FIREPRESENCE_REQUEST = b"OPTIONS / HTTP/1.1\r\nHost: x\r\nUpgrade: firepresence\r\n\r\n"


class Echo(EchoHandler):
    """Echoes; ``BCAST:`` goes to every session; records closes."""

    def __init__(self):
        super().__init__()
        self.closed = []

    def session_closed(self, session, record):
        self.closed.append((session, record))


class Hostile(SynchronousTestCase):
    settings = {}

    def setUp(self):
        self.clock = Clock()
        self.app = Echo()
        settings = dict(heartbeat_interval=0, close_timeout=5.0, handshake_timeout=10.0)
        settings.update(self.settings)
        self.server = self.app.server = Server(self.app, ServerSettings(**settings), self.clock)
        self.factory = ListenerFactory(self.server)
        self.factory.startFactory()
        self.addCleanup(self.factory.stopFactory)
        # The well-behaved client, connected before the offender arrives.
        self.good, self.good_transport = self.open_session(ip="198.51.100.1")

    def connect(self, ip="192.0.2.7"):
        address = (IPv6Address if ":" in ip else IPv4Address)("TCP", ip, 50000)
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def open_session(self, ip="192.0.2.7", request=None):
        dispatcher, transport = self.connect(ip)
        dispatcher.dataReceived(request or upgrade_request())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "), transport.value())
        transport.clear()
        return transport.protocol, transport

    def lose(self, protocol, transport):
        """The client goes away (after its head, the session has the
        transport: it is the one told)."""
        transport.connected = False
        getattr(transport, "protocol", protocol).connectionLost(Failure(ConnectionDone()))

    def assert_good_client_still_served(self):
        self.good_transport.clear()
        self.good.dataReceived(client_frame(OP_TEXT, "still here"))
        self.assertEqual(self.good_transport.value(), encode_text("still here"))
        self.assertFalse(self.good_transport.disconnecting)

    def record_of(self, session):
        for closed, record in self.app.closed:
            if closed is session:
                return record
        raise AssertionError("no close record for %r" % (session,))


# ------------------------------------------------------------------ slowloris

class SlowlorisTests(Hostile):
    def test_a_head_trickled_a_byte_at_a_time_is_dropped_at_the_handshake_timeout(self):
        dispatcher, transport = self.connect()
        head = upgrade_request()
        for byte in range(len(head) - 1):  # one byte a second, never the last
            dispatcher.dataReceived(head[byte:byte + 1])
            self.clock.advance(1)
            if transport.disconnecting:
                break
            self.assert_good_client_still_served()
        # Dropped 10 s (the handshake timeout, swept every 0.5 s) after it
        # connected, with no answer: a client this slow gets no response.
        self.assertTrue(transport.disconnecting)
        self.assertEqual(byte + 1, 10)  # bytes sent, one a second
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.server.stats.handshakes_refused["handshake_timeout"], 1)
        self.lose(dispatcher, transport)
        self.assertEqual(self.server.connections, 1)  # the good client
        self.assert_good_client_still_served()


# ------------------------------------------------------- a client that never reads

class NeverReadsTests(ServerTestCase):
    """Real sockets: the kernel's buffers fill, Twisted's transport buffer
    passes 64 KiB and pauses the session, and past --max-outgoing-buffer
    the client is dropped."""

    LIMIT = 256 * 1024
    MESSAGE = 16 * 1024

    def setUp(self):
        super().setUp()
        self.server.settings.max_outgoing_buffer = self.LIMIT

    def test_a_client_that_never_reads_is_dropped_with_the_slow_consumer_reason(self):
        # Twisted's 64 KiB (which it may pass by a write before it pauses
        # the session), then at most the limit: about 350 KiB held, of the
        # 3 MiB the good client broadcasts.
        bound = 65536 + self.LIMIT + 2 * (self.MESSAGE + 64)

        async def scenario():
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_event_loop().sock_connect(sock, ("127.0.0.1",
                                                               self.port.getHost().port))
            await asyncio.get_event_loop().sock_sendall(sock, upgrade_request(key=random_key()))
            await until(lambda: self.server.sessions)
            offender, = self.server.sessions.values()
            offender.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            async with websockets.connect(self.url, compression=None, max_size=None) as good:
                largest = 0
                for number in range(200):
                    message = "BCAST:%d:" % number + "x" * self.MESSAGE
                    await good.send(message)
                    self.assertEqual(await asyncio.wait_for(good.recv(), 5), message)
                    transport = offender.transport
                    if not transport.connected:
                        break
                    held = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
                    largest = max(largest, held)
                    self.assertLessEqual(held, bound)
                else:
                    self.fail("the client that never reads was never dropped")
                # Dropped; the good client goes on receiving.
                await good.send("after")
                self.assertEqual(await asyncio.wait_for(good.recv(), 5), "after")
            sock.close()
            return offender, largest

        def check(result):
            offender, largest = result
            self.assertEqual(self.server.stats.slow_consumers, 1)
            record = offender.close_record
            self.assertEqual((record.code, record.initiated_by, record.clean),
                             (1006, "server", False))
            self.assertEqual(record.reason, "slow consumer: more than %d bytes queued"
                             % self.LIMIT)
            self.assertGreater(largest, 65536)  # the bound was reached, not avoided

        d = run(scenario())
        d.addCallback(lambda result: self.wait_for(lambda: result[0].close_record).addCallback(
            lambda _: result))
        return d.addCallback(check)


class SlowConsumerCountTests(Hostile):
    settings = {"max_outgoing_buffer": 1000}

    def test_twisted_pausing_again_at_every_write_does_not_restart_the_count(self):
        # Found by the test above: Twisted calls pauseProducing at every
        # write while its buffer is full, and each call restarted the count,
        # so a client that never read was never dropped.
        offender, transport = self.open_session()
        for _ in range(2):
            offender.pauseProducing()
            offender.send_binary(b"x" * 600)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.slow_consumers, 1)
        self.assert_good_client_still_served()


# -------------------------------------------------------------- floods

class PingFloodTests(Hostile):
    def test_a_flood_of_pings_is_closed_with_1008_past_the_burst(self):
        offender, transport = self.open_session()
        offender.dataReceived(b"".join(client_frame(OP_PING, b"%d" % n) for n in range(1000)))
        frames = server_frames(transport.value())
        # The burst (200) is answered; the 201st ping closes the session.
        self.assertEqual(frames[:200], [(OP_PONG, b"%d" % n) for n in range(200)])
        self.assertEqual(frames[200:],
                         [(OP_CLOSE, server_close_frame(1008, b"message rate exceeded")[2:])])
        self.assertEqual(self.server.stats.limits_hit["max-message-rate"], 1)
        # What it still sends before answering the close is dropped.
        transport.clear()
        offender.dataReceived(b"".join(client_frame(OP_PING, b"more") for _ in range(100)))
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.server.stats.limits_hit["max-message-rate"], 1)
        offender.dataReceived(client_frame(OP_CLOSE, b"\x03\xe8"))
        self.assertTrue(transport.disconnecting)
        self.lose(offender, transport)
        record = self.record_of(offender)
        self.assertEqual((record.code, record.reason, record.initiated_by),
                         (1008, "message rate exceeded", "server"))
        self.assert_good_client_still_served()

    def test_a_sustained_rate_over_the_limit_is_closed_and_one_under_it_is_not(self):
        fast, fast_transport = self.open_session()
        steady, steady_transport = self.open_session(ip="192.0.2.8")
        for second in range(10):
            for session, count in ((fast, 150), (steady, 95)):
                session.dataReceived(b"".join(client_frame(OP_TEXT, "m") for _ in range(count)))
            self.clock.pump([0.25] * 4)  # the node's timers on time: no stall
        # 200 at once, then 100 a second: 150 a second lasts three seconds.
        self.assertEqual(fast.messages_in, 150 + 150 + 100)
        self.assertTrue(fast_transport.value().endswith(
            server_close_frame(1008, b"message rate exceeded")))
        self.assertEqual(steady.messages_in, 950)
        self.assertFalse(steady_transport.disconnecting)

    def messages(self, count):
        return b"".join(client_frame(OP_TEXT, "m") for _ in range(count))

    def test_a_stall_of_the_node_closes_no_client_under_the_limit(self):
        # Clients at half the limit (50 a second, in a message every 20 ms)
        # go on sending while the node stands still for 5 s; their backlog
        # arrives in one read. Either the stall watch's timer has seen the
        # stall by then (a long callback), or the read comes first (a frozen
        # VM: the sockets are ready before the timer runs).
        for timer_first in (True, False):
            sessions = [self.open_session(ip="192.0.2.%d" % n) for n in (10, 11)]
            for _ in range(8):  # two seconds at 50 a second
                for session, _transport in sessions:
                    session.dataReceived(self.messages(12))
                self.clock.advance(0.25)
            if timer_first:
                self.clock.advance(5)
            else:
                self.clock.rightNow += 5
            for session, transport in sessions:
                session.dataReceived(self.messages(250))
                self.assertEqual(session.messages_in, 8 * 12 + 250)
                self.assertFalse(transport.disconnecting, transport.value()[-40:])
            self.clock.advance(0)
        self.assertEqual(self.server.stats.limits_hit["max-message-rate"], 0)

    def test_a_stall_is_no_licence_to_flood(self):
        offender, transport = self.open_session()
        # The node stands still for 5 s: its watch's timer, due in 0.25 s,
        # runs 4.75 s late, which is 475 more messages' worth at the limit.
        self.clock.advance(5)
        offender.dataReceived(self.messages(1000))
        self.assertEqual(offender.messages_in, 200 + 475)
        self.assertTrue(transport.value().endswith(
            server_close_frame(1008, b"message rate exceeded")))

    def test_a_quiet_client_gets_its_burst_and_no_more(self):
        quiet, transport = self.open_session()
        self.clock.pump([0.25] * 20)  # five quiet seconds, the node on time
        quiet.dataReceived(self.messages(1000))
        self.assertEqual(quiet.messages_in, 200)
        self.assertTrue(transport.value().endswith(
            server_close_frame(1008, b"message rate exceeded")))

    def test_a_flood_of_firepresence_lines_is_closed_with_1008(self):
        offender, transport = self.open_session(request=FIREPRESENCE_REQUEST)
        offender.dataReceived(b'{"type":"ping","id":1}\n' * 500)
        lines = transport.value().splitlines()
        self.assertEqual(lines[:200], [b'{"type":"pong","id":1}'] * 200)
        self.assertEqual(json.loads(lines[200]), {"type": "close", "code": 1008,
                                                  "reason": "message rate exceeded"})
        self.assertEqual(len(lines), 201)
        self.assertTrue(transport.disconnecting)
        self.assert_good_client_still_served()


class InflationFloodTests(Hostile):
    """Compressed messages that inflate about 1000 times: the message rate
    lets them through, --max-inflated-rate (1 MiB a second, bursts of
    2 MiB) does not."""

    def setUp(self):
        super().setUp()
        self.server.settings.handshake.extensions = [PerMessageDeflate()]

    def open_deflate_session(self, ip="192.0.2.7"):
        session, transport = self.open_session(ip=ip, request=upgrade_request(
            extra=["Sec-WebSocket-Extensions: permessage-deflate"]))
        self.assertEqual(session.extensions, ("permessage-deflate",))
        return session, transport

    @staticmethod
    def compressed(data):
        """A client's compressed text message (RFC 7692 7.2.1)."""
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return client_frame(OP_TEXT, payload[:-4], rsv=RSV1)

    def test_messages_inflating_a_thousandfold_are_closed_with_1008_past_the_budget(self):
        bomb = self.compressed(b" " * 1000000)
        self.assertLess(len(bomb), 1100)  # about 1,000 bytes inflating to 1 MB
        offender, transport = self.open_deflate_session()
        offender.dataReceived(bomb * 20)
        # 2 MiB at once: two messages pass; the third spends past it and
        # closes the session; the other seventeen are not even inflated.
        self.assertEqual(offender.messages_in, 2)
        self.assertTrue(transport.value().endswith(
            server_close_frame(1008, b"inflated data rate exceeded")))
        self.assertEqual(offender.connection.extensions[0].inflated_bytes, 3000000)
        self.assertEqual(self.server.stats.limits_hit["max-inflated-rate"], 1)
        offender.dataReceived(bomb * 10)
        self.assertEqual(offender.connection.extensions[0].inflated_bytes, 3000000)
        offender.dataReceived(client_frame(OP_CLOSE, b"\x03\xe8"))
        self.lose(offender, transport)
        record = self.record_of(offender)
        self.assertEqual((record.code, record.reason, record.initiated_by),
                         (1008, "inflated data rate exceeded", "server"))
        self.assert_good_client_still_served()

    def test_a_sustained_inflated_rate_over_the_limit_is_closed(self):
        bomb = self.compressed(b" " * 100000)  # 100 kB each
        offender, transport = self.open_deflate_session()
        closed = server_close_frame(1008, b"inflated data rate exceeded")
        for second in range(10):
            # 15 a second, 1.5 MB a second: past 1 MiB a second within
            # seconds, though 15 messages a second are well within the rate.
            offender.dataReceived(bomb * 15)
            if transport.value().endswith(closed):
                break
            transport.clear()
            self.clock.pump([0.25] * 4)
        # 2 MiB at once, then 1 MiB a second: the third second passes it.
        self.assertEqual(second, 2)
        self.assertEqual(offender.messages_in, 15 * 2 + 11)

    def test_a_client_compressing_ordinary_messages_is_not_closed(self):
        document = json.dumps({"type": "publish", "channel": "room:1",
                               "data": {"text": "hello " * 50}}).encode()
        steady, transport = self.open_deflate_session()
        for second in range(10):
            steady.dataReceived(self.compressed(document) * 90)
            self.clock.pump([0.25] * 4)
        self.assertEqual(steady.messages_in, 900)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.server.stats.limits_hit["max-inflated-rate"], 0)

    def test_one_message_of_the_largest_size_gets_through_compressed(self):
        largest = self.compressed(b"x" * self.server.settings.max_message_size)
        session, transport = self.open_deflate_session()
        session.dataReceived(largest)
        self.assertEqual(session.messages_in, 1)
        self.assertFalse(transport.disconnecting)

    def test_a_stall_of_the_node_closes_no_client_under_the_inflated_rate(self):
        # Half the limit (512 kB a second) sent during a 5 s stall of the
        # node arrives in one read: 2.5 MB, past the 2 MiB burst.
        chunk = self.compressed(b" " * 64000)
        session, transport = self.open_deflate_session()
        self.clock.advance(5)
        session.dataReceived(chunk * 40)
        self.assertEqual(session.messages_in, 40)
        self.assertFalse(transport.disconnecting)


class SlowRedemptions:
    """A ticket store whose every redemption waits until the test answers."""

    def __init__(self):
        self.pending = []

    def redeem(self, ticket, client_ip=None):
        d = defer.Deferred()
        self.pending.append(d)
        return d


class HeldDuringRedemptionTests(Hostile):
    """What a client sends after a handshake carrying a ticket, while the
    ticket is redeemed (before it has an answer)."""

    def test_what_is_sent_before_the_answer_is_bounded_then_delivered_in_order(self):
        self.server.tickets = SlowRedemptions()
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(upgrade_request(path="/?ticket=t-1"))
        session = transport.protocol
        self.assertEqual(transport.value(), b"")  # not answered yet
        frames = [client_frame(OP_TEXT, "%05d" % n + "x" * 1000) for n in range(200)]
        sent = 0
        for frame in frames:
            if transport.producerState == "paused":
                break
            session.dataReceived(frame)
            sent += 1
        # It is read no more once 64 KiB are kept (about 63 messages of 1 KiB),
        # not 200 KiB: what more it sends waits in the kernel's buffers.
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(sent, -(-64 * 1024 // len(frames[0])))
        self.assertLessEqual(session.ticket_check.held_size, 64 * 1024 + len(frames[0]))
        self.server.tickets.pending[0].callback(
            Ticket("user-1", {}, ("room:*",), None, self.clock.seconds()))
        self.assertEqual(transport.producerState, "producing")
        for frame in frames[sent:]:
            session.dataReceived(frame)
        echoed = [payload for opcode, payload in server_frames(
            transport.value().split(b"\r\n\r\n", 1)[1]) if opcode == OP_TEXT]
        self.assertEqual(echoed[0][:7], b'{"type"')  # the welcome
        self.assertEqual([e[:5] for e in echoed[1:]], [b"%05d" % n for n in range(200)])


class FragmentFloodTests(Hostile):
    def test_one_message_in_thousands_of_one_byte_fragments_is_closed_at_the_limit(self):
        offender, transport = self.open_session()
        offender.dataReceived(client_frame(OP_BINARY, b"x", fin=False))
        connection = offender.connection
        for number in range(1, 1024):
            offender.dataReceived(client_frame(0, b"x", fin=False))
        # 1,024 frames held: each is a 1-byte piece of the message.
        self.assertEqual(len(connection._message._parts), 1024)
        self.assertEqual(transport.value(), b"")
        offender.dataReceived(client_frame(0, b"x", fin=False) * 4000)
        self.assertEqual(transport.value(),
                         server_close_frame(1008, b"message in more than 1024 fragments"))
        self.assertIsNone(connection._message)  # let go at once
        self.assertEqual(self.server.stats.limits_hit["max-fragments"], 1)
        self.lose(offender, transport)
        self.assertEqual(self.record_of(offender).code, 1008)
        self.assert_good_client_still_served()

    def test_empty_fragments_that_never_end_a_message_are_closed_at_the_limit(self):
        offender, transport = self.open_session()
        offender.dataReceived(client_frame(OP_TEXT, b"", fin=False)
                              + client_frame(0, b"", fin=False) * 5000)
        self.assertEqual(transport.value(),
                         server_close_frame(1008, b"message in more than 1024 fragments"))
        self.assert_good_client_still_served()


class SubscribeFloodTests(HubTestCase):
    """The hub on a real Redis: WebSocket sessions with tickets."""

    def setUp(self):
        d = super().setUp()

        def started(_):
            self.node = self.start_node()
            self.hub, self.server = self.node.hub, self.node.server
        return d.addCallback(started)

    @defer.inlineCallbacks
    def open_session(self, account):
        ticket, _ = yield self.hub.tickets.issue(account, channels=["room:*"])
        session, transport = self.connect(self.node, upgrade_request(path="/?ticket=" + ticket))
        yield self.until(lambda: b"welcome" in transport.value())
        transport.clear()
        return session, transport

    def lose(self, session, transport):
        lose(session, transport)

    def until(self, condition, timeout=10.0):
        return run(until(condition, timeout))

    def documents(self, transport):
        return documents(transport)

    @defer.inlineCallbacks
    def test_a_flood_of_subscribes_is_bounded_by_the_channel_limit_then_closed_by_the_rate(self):
        good, good_transport = yield self.open_session("good")
        good.dataReceived(client_frame(OP_TEXT, json.dumps({"type": "subscribe",
                                                            "channel": "room:good"})))
        offender, transport = yield self.open_session("flooder")
        offender.dataReceived(b"".join(
            client_frame(OP_TEXT, json.dumps({"type": "subscribe", "channel": "room:%d" % n}))
            for n in range(1000)))
        # Past 20 ms of handling in one reactor turn (a loaded machine) the
        # session waits its turn for the rest (presence/net/server.py): the
        # read is done once the rate limit's close is written.
        yield self.until(lambda: (server_frames(transport.value()) or [(None,)])[-1][0]
                         == OP_CLOSE)
        answers = self.documents(transport)
        self.assertEqual([a["type"] for a in answers[:100]], ["subscribed"] * 100)
        self.assertEqual(answers[100:200], [
            {"type": "error", "reason": "too many channels: at most 100 per session",
             "request": "subscribe", "channel": "room:%d" % n} for n in range(100, 200)])
        self.assertEqual(len(answers), 200)
        self.assertEqual(server_frames(transport.value())[-1],
                         (OP_CLOSE, server_close_frame(1008, b"message rate exceeded")[2:]))
        self.assertEqual(len(self.hub.channels.subscriptions[offender.id]), 100)
        self.assertEqual(self.server.stats.limits_hit["max-channels-per-session"], 100)
        self.assertEqual(self.server.stats.limits_hit["max-message-rate"], 1)
        self.lose(offender, transport)
        self.assertNotIn("room:5", self.hub.channels.listeners)  # its subscriptions went with it
        # The well-behaved client still gets what is published to its channel.
        good_transport.clear()
        yield self.hub.publish(["room:good"], {"text": "hello"})
        yield self.until(lambda: good_transport.value())
        self.assertEqual(self.documents(good_transport),
                         [{"type": "message", "channel": "room:good", "data": {"text": "hello"}}])


# ------------------------------------------------------------ oversized everything

class OversizedTests(Hostile):
    settings = {"max_message_size": 4096, "max_head_size": 1024}

    def test_an_oversized_head_is_refused_with_431(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"GET / HTTP/1.1\r\nCookie: " + b"c" * 2000)
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        self.assertTrue(response.endswith(b"request head larger than 1024 bytes\n"))
        self.assertTrue(transport.disconnecting)
        self.assert_good_client_still_served()

    def test_a_head_of_too_many_fields_is_refused_with_431(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(upgrade_request(extra=["X: %d" % n for n in range(100)]))
        self.assertTrue(transport.value().endswith(b"more than 100 header fields\n"))
        self.assert_good_client_still_served()

    def test_an_oversized_message_is_closed_with_1009_when_its_length_is_announced(self):
        offender, transport = self.open_session()
        header = client_frame(OP_BINARY, b"x" * 5000)[:8]  # header and mask only
        offender.dataReceived(header)
        self.assertEqual(transport.value(),
                         server_close_frame(1009, b"message larger than 4096 bytes"))
        self.assert_good_client_still_served()

    def test_an_oversized_fragmented_message_is_closed_with_1009(self):
        offender, transport = self.open_session()
        offender.dataReceived(client_frame(OP_TEXT, b"a" * 3000, fin=False)
                              + client_frame(0, b"a" * 3000))
        self.assertEqual(transport.value(),
                         server_close_frame(1009, b"message larger than 4096 bytes"))
        self.assert_good_client_still_served()

    def test_oversized_firepresence_lines_get_error_lines_then_1007(self):
        offender, transport = self.open_session(request=FIREPRESENCE_REQUEST)
        offender.dataReceived(b"{" + b" " * 5000)  # never buffered past the limit
        self.assertEqual(offender.connection._reader._buffer, b"")
        offender.dataReceived(b"}\n" + (b"[" * 4100 + b"\n") * 9)
        lines = [json.loads(line) for line in transport.value().splitlines()]
        self.assertEqual(lines[:10], [{"type": "error",
                                       "reason": "line longer than 4096 bytes"}] * 10)
        self.assertEqual(lines[10:], [{"type": "close", "code": 1007,
                                       "reason": "too many malformed lines"}])
        self.assert_good_client_still_served()

    def test_an_oversized_close_reason_is_closed_with_1002(self):
        offender, transport = self.open_session()
        offender.dataReceived(client_frame(OP_CLOSE, b"\x03\xe8" + b"r" * 124))
        self.assertEqual(transport.value(),
                         server_close_frame(1002, b"control frame payload over 125 bytes"))
        self.assert_good_client_still_served()

    def test_an_oversized_ping_payload_is_closed_with_1002(self):
        offender, transport = self.open_session()
        offender.dataReceived(client_frame(OP_PING, b"p" * 126))
        self.assertEqual(transport.value(),
                         server_close_frame(1002, b"control frame payload over 125 bytes"))
        self.assert_good_client_still_served()


# ---------------------------------------------------------- connection limits

class PerAddressLimitTests(Hostile):
    settings = {"max_connections_per_ip": 3, "trusted_proxies": ["10.0.0.0/8"]}

    def test_connections_over_the_per_ip_limit_are_refused_with_429(self):
        sessions = [self.open_session() for _ in range(3)]
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(upgrade_request())
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), response)
        self.assertTrue(response.endswith(b"too many connections from 192.0.2.7: at most 3\n"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.handshakes_refused["max_connections_per_ip"], 1)
        self.assertEqual(self.server.stats.limits_hit["max-connections-per-ip"], 1)
        self.lose(dispatcher, transport)
        # Another address is served, and the offender's first three too.
        self.open_session(ip="192.0.2.8")
        self.assert_good_client_still_served()
        session, session_transport = sessions[0]
        session.dataReceived(client_frame(OP_TEXT, "ok"))
        self.assertEqual(session_transport.value(), encode_text("ok"))
        # One of them leaves: the address may connect again.
        self.lose(*sessions[0])
        self.open_session()
        self.assertEqual(self.server.connections_by_ip, {"192.0.2.7": 3, "192.0.2.8": 1,
                                                       "198.51.100.1": 1})

    def test_connections_still_sending_their_head_count(self):
        # Unfinished heads would otherwise let one address hold every slot
        # of --max-connections, and keep them by reopening.
        unfinished = [self.connect() for _ in range(3)]
        for dispatcher, _ in unfinished:
            dispatcher.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n")
        dispatcher, transport = self.connect()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 429 Too Many Requests\r\n"),
                        transport.value())
        self.assertTrue(transport.disconnecting)
        self.lose(dispatcher, transport)
        self.lose(*unfinished[0])
        self.open_session()  # a slot came free
        self.assertEqual(self.server.connections_by_ip["192.0.2.7"], 3)

    def test_clients_behind_a_trusted_proxy_are_counted_by_their_own_address(self):
        for number in range(5):
            self.open_session(ip="10.1.1.1", request=upgrade_request(
                extra=["X-Forwarded-For: 203.0.113.%d" % number]))
        dispatcher, transport = self.connect(ip="10.1.1.1")
        dispatcher.dataReceived(upgrade_request(extra=["X-Forwarded-For: 203.0.113.0"]) * 1)
        self.assertEqual(self.server.connections_by_ip["203.0.113.0"], 2)
        for _ in range(2):
            dispatcher, transport = self.connect(ip="10.1.1.1")
            dispatcher.dataReceived(upgrade_request(extra=["X-Forwarded-For: 203.0.113.0"]))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 429 "))
        self.assertNotIn("10.1.1.1", self.server.connections_by_ip)

    def test_ipv6_clients_are_counted_by_their_64(self):
        # One host can use every address in its /64: hopping addresses within
        # it must not escape the limit.
        opened = [self.open_session(ip="2001:db8:1:2::%x" % n) for n in range(1, 4)]
        dispatcher, transport = self.connect(ip="2001:db8:1:2:aaaa::9")
        dispatcher.dataReceived(upgrade_request())
        self.assertTrue(transport.value().endswith(
            b"too many connections from 2001:db8:1:2::/64: at most 3\n"), transport.value())
        self.open_session(ip="2001:db8:1:3::1")  # the next /64 is someone else
        session, _ = opened[0]
        self.assertEqual(session.client_ip, "2001:db8:1:2::1")  # the session keeps the address
        self.lose(*opened[0])
        self.assertEqual(self.server.connections_by_ip["2001:db8:1:2::/64"], 2)

    def test_every_connection_is_uncounted_when_it_ends(self):
        opened = [self.open_session(ip="192.0.2.%d" % (n % 4)) for n in range(4)]
        opened += [self.open_session(ip="192.0.2.0") for n in range(2)]
        refused = self.connect(ip="192.0.2.0")
        refused[0].dataReceived(upgrade_request())
        self.assertTrue(refused[1].value().startswith(b"HTTP/1.1 429 "))
        never = self.connect()  # never sends its head
        for protocol, transport in [*opened, refused, never, (self.good, self.good_transport)]:
            self.lose(protocol, transport)
        self.assertEqual((self.server.connections, self.server.connections_by_ip), (0, {}))


class PerNodeLimitTests(Hostile):
    settings = {"max_connections": 3}

    def test_connections_over_the_node_limit_are_refused_with_503(self):
        self.open_session()
        waiting = self.connect(ip="192.0.2.8")  # a handshake in progress counts
        dispatcher, transport = self.connect(ip="192.0.2.9")
        dispatcher.dataReceived(upgrade_request())
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), response)
        self.assertTrue(response.endswith(
            b"this server is at its limit of 3 connections: try again later\n"))
        self.assertEqual(self.server.stats.handshakes_refused["max_connections"], 1)
        self.assertEqual(self.server.stats.limits_hit["max-connections"], 1)
        self.assert_good_client_still_served()
        # Room again once a connection ends.
        self.lose(dispatcher, transport)
        self.lose(*waiting)
        self.open_session(ip="192.0.2.9")
        self.assertEqual(self.server.connections, 3)
