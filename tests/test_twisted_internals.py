"""Every Twisted internal Presence relies on (presence/net/twisted_internals.py).

The canaries run against a real ``tcp.Server``, a real TLS wrapper and a real
PROXY-protocol wrapper, and fail saying which attribute changed meaning, so
that a Twisted upgrade cannot silently reorder bytes, drop data or leak
memory. Then the direct write path itself on real TCP connections: bytes
arrive complete and in order when the kernel takes only part of a write."""

import asyncio
import inspect
import socket
import ssl
import struct
import tempfile

from twisted.internet import endpoints, reactor, tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from presence.net import twisted_internals
from presence.net.twisted_internals import (
    _direct,
    hand_over,
    listening_socket,
    peer_named_later,
    port_of,
    reserve_producer_attributes,
)
from presence.websocket.frames import encode_binary
from presence.wire.prepared import PreparedMessage

from .helpers.framing import upgrade_request
from .helpers.servers import ServerTestCase, self_signed_certificate
from .helpers.waiting import run, until

UPGRADE_TWISTED = ("; presence/net/twisted_internals.py relies on it: mend it (or take that "
                   "path out) before upgrading Twisted")


class Recorder(Protocol):
    """Keeps what it receives; its factory keeps every connection."""

    def __init__(self):
        self.received = b""

    def dataReceived(self, data):
        self.received += data


class Canaries(TestCase):
    """A real listening port of each kind and a real client: each test names
    the attribute it checks in its failure message."""

    description = "tcp:0:interface=127.0.0.1"

    def setUp(self):
        self.accepted = []
        factory = Factory.forProtocol(Recorder)
        build = factory.buildProtocol

        def recording(addr):
            protocol = build(addr)
            self.accepted.append(protocol)
            return protocol
        factory.buildProtocol = recording
        return endpoints.serverFromString(reactor, self.endpoint()).listen(factory).addCallback(
            self._listening)

    def endpoint(self):
        return self.description

    def _listening(self, port):
        self.port = port
        self.addCleanup(port.stopListening)

    async def client(self, prefix=b""):
        """A connected client, and the server side's protocol."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port.getHost().port, ssl=self.client_tls())
        self.addCleanup(writer.close)
        if prefix:
            writer.write(prefix)
        await until(lambda: self.accepted and self.accepted[-1].transport is not None
                    and self.accepted[-1].connected, 10, "the server's side of the connection")
        return reader, writer, self.accepted[-1]

    def client_tls(self):
        return None

    def tcp_transport(self, protocol):
        """The tcp.Server under ``protocol``'s transport (and wrappers)."""
        transport = protocol.transport
        while not isinstance(transport, tcp.Server):
            transport = transport.transport
        return transport


class TCPCanaries(Canaries):
    def test_a_plain_connection_is_a_tcp_server_with_the_attributes_read(self):
        async def scenario():
            _, _, protocol = await self.client()
            transport = protocol.transport
            self.assertIs(type(transport), tcp.Server,
                          "a TCP connection's transport is no longer tcp.Server: the direct "
                          "write path would never be taken" + UPGRADE_TWISTED)
            for name in ("dataBuffer", "_tempDataBuffer", "connected", "disconnecting",
                         "_writeDisconnected", "socket", "bufferSize", "protocol"):
                self.assertTrue(hasattr(transport, name), "tcp.Server has no %r%s"
                                % (name, UPGRADE_TWISTED))
            self.assertTrue(_direct(transport), "an idle, open connection is not sent to "
                            "directly: dataBuffer, _tempDataBuffer, connected, disconnecting "
                            "or _writeDisconnected changed meaning" + UPGRADE_TWISTED)
        return run(scenario())

    def test_the_lean_reads_inline_tcp_connections_own_read(self):
        # install_lean_reads writes tcp.Connection.doRead and _dataReceived
        # inline: a tcp.Server that read differently would be bypassed.
        self.assertIs(tcp.Server.doRead, tcp.Connection.doRead, "tcp.Server reads its own way"
                      + UPGRADE_TWISTED)
        self.assertIs(tcp.Server._dataReceived, tcp.Connection._dataReceived,
                      "tcp.Server delivers its own way" + UPGRADE_TWISTED)
        source = inspect.getsource(tcp.Connection.doRead) + inspect.getsource(
            tcp.Connection._dataReceived)
        for line in ("self.socket.recv(self.bufferSize)", "EWOULDBLOCK", "main.CONNECTION_LOST",
                     "main.CONNECTION_DONE", "self.protocol.dataReceived(data)"):
            self.assertIn(line, source, "tcp.Connection's read no longer does %r%s"
                          % (line, UPGRADE_TWISTED))

    def test_bytes_twisted_holds_are_in_the_buffers_the_direct_path_checks(self):
        async def scenario():
            reader, _, protocol = await self.client()
            transport = protocol.transport
            transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            data = bytes(range(256)) * 16384  # 4 MiB: more than the kernel takes at once
            transport.write(data)
            self.assertFalse(_direct(transport),
                             "bytes written with transport.write and not yet sent are not in "
                             "dataBuffer/_tempDataBuffer: the direct path would send later bytes "
                             "ahead of them (reordering the stream)" + UPGRADE_TWISTED)
            twisted_internals.write(transport, b"after")
            received = await asyncio.wait_for(reader.readexactly(len(data) + 5), 20)
            self.assertEqual(received, data + b"after", "bytes arrived out of order")
            await until(lambda: _direct(transport), 10, "Twisted's buffers emptied")
        return run(scenario())

    def test_a_half_closed_connection_is_not_written_to_directly(self):
        # Until the FIN is out, Twisted itself still sends what is written
        # (before the FIN), and so may the direct path; once it is out,
        # neither does.
        async def scenario():
            reader, _, protocol = await self.client()
            transport = protocol.transport
            transport.loseWriteConnection()
            self.assertEqual(await asyncio.wait_for(reader.read(), 10), b"")  # the FIN
            await until(lambda: transport._writeDisconnected, 10,
                        "_writeDisconnected set once the FIN is sent%s" % UPGRADE_TWISTED)
            self.assertFalse(_direct(transport),
                             "after the half-close the direct path would still send: "
                             "_writeDisconnected changed meaning" + UPGRADE_TWISTED)
        return run(scenario())

    def test_a_closing_connection_is_not_written_to_directly(self):
        async def scenario():
            _, _, protocol = await self.client()
            protocol.transport.loseConnection()
            self.assertFalse(_direct(protocol.transport),
                             "after loseConnection the direct path would still send: "
                             "disconnecting changed meaning" + UPGRADE_TWISTED)
        return run(scenario())

    def test_handing_over_makes_the_new_protocol_receive(self):
        async def scenario():
            _, writer, old = await self.client()
            new = Recorder()
            new.transport = old.transport
            hand_over(old.transport, old, new)
            writer.write(b"for the new one")
            await until(lambda: new.received == b"for the new one", 10,
                        "the bytes at the new protocol (transport.protocol changed meaning%s)"
                        % UPGRADE_TWISTED)
            self.assertEqual(old.received, b"")
        return run(scenario())

    def test_the_producer_attributes_are_those_register_producer_sets(self):
        async def scenario():
            _, _, protocol = await self.client()
            transport = self.tcp_transport(protocol)
            reserve_producer_attributes(protocol.transport)
            self.assertEqual((transport.producer, transport.streamingProducer), (None, False))
            producer = Recorder()
            transport.registerProducer(producer, True)
            self.assertIs(transport.producer, producer,
                          "registerProducer no longer sets 'producer'" + UPGRADE_TWISTED)
            self.assertIs(transport.streamingProducer, True,
                          "registerProducer no longer sets 'streamingProducer'" + UPGRADE_TWISTED)
            transport.unregisterProducer()
        return run(scenario())

    def test_a_connection_knows_its_listening_port_and_the_port_its_socket(self):
        async def scenario():
            _, _, protocol = await self.client()
            self.assertIs(port_of(protocol.transport), self.port,
                          "tcp.Server.server is no longer the listening port" + UPGRADE_TWISTED)
            listener = listening_socket(self.port)
            self.assertEqual(listener.getsockname()[1], self.port.getHost().port,
                             "Port.socket is no longer the listening socket" + UPGRADE_TWISTED)
        return run(scenario())


class TLSCanaries(Canaries):
    def endpoint(self):
        folder = tempfile.mkdtemp(prefix="presence-tls-")
        key, cert = self_signed_certificate(folder)
        return "ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s" % (key, cert)

    def client_tls(self):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def test_handing_over_under_tls_replaces_the_wrapped_protocol(self):
        async def scenario():
            _, writer, old = await self.client()
            self.assertIs(old.transport.wrappedProtocol, old,
                          "the TLS wrapper's wrappedProtocol is not the protocol it delivers "
                          "to" + UPGRADE_TWISTED)
            new = Recorder()
            new.transport = old.transport
            hand_over(old.transport, old, new)
            writer.write(b"over tls")
            await until(lambda: new.received == b"over tls", 10, "the bytes at the new protocol")
        return run(scenario())

    def test_the_producer_attributes_are_reserved_on_the_tcp_transport_underneath(self):
        async def scenario():
            _, _, protocol = await self.client()
            reserve_producer_attributes(protocol.transport)
            transport = self.tcp_transport(protocol)
            self.assertEqual((transport.producer, transport.streamingProducer), (None, False))
            self.assertIs(port_of(protocol.transport), self.port,
                          "a TLS connection no longer answers for its TCP transport's 'server'"
                          + UPGRADE_TWISTED)
        return run(scenario())


class PROXYCanaries(Canaries):
    description = "haproxy:tcp:0:interface=127.0.0.1"

    def test_handing_over_behind_the_proxy_protocol_replaces_the_wrapped_protocol(self):
        async def scenario():
            _, writer, old = await self.client(b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\n")
            self.assertIs(old.transport.wrappedProtocol, old,
                          "the PROXY protocol wrapper's wrappedProtocol is not the protocol it "
                          "delivers to" + UPGRADE_TWISTED)
            new = Recorder()
            new.transport = old.transport
            hand_over(old.transport, old, new)
            writer.write(b"behind a balancer")
            await until(lambda: new.received == b"behind a balancer", 10,
                        "the bytes at the new protocol")
        return run(scenario())


    def test_behind_the_proxy_protocol_the_peer_is_named_after_the_connection_is_made(self):
        async def scenario():
            _, writer, protocol = await self.client()
            transport = protocol.transport
            self.assertTrue(peer_named_later(transport),
                            "the PROXY protocol wrapper is no longer HAProxyProtocolWrapper"
                            + UPGRADE_TWISTED)
            self.assertEqual(transport.getPeer().host, "127.0.0.1")  # the balancer, so far
            writer.write(b"PROXY TCP4 192.0.2.9 192.0.2.1 5000 80\r\nx")
            await until(lambda: protocol.received == b"x", 10, "the bytes after the header")
            self.assertEqual(transport.getPeer().host, "192.0.2.9",
                             "the wrapper no longer names the peer from the header"
                             + UPGRADE_TWISTED)
        return run(scenario())


class PartialWriteTests(ServerTestCase):
    def setUp(self):
        super().setUp()
        # Room to queue everything for a client that is slow to read.
        self.server.settings.max_outgoing_buffer = 64 * 1024 * 1024

    async def slow_client(self):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_event_loop().sock_connect(sock, ("127.0.0.1", self.port.getHost().port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
        writer.write(upgrade_request())
        await reader.readuntil(b"\r\n\r\n")
        return reader, writer

    def test_messages_arrive_whole_and_in_order_when_sends_are_partial(self):
        count, size = 60, 100_000

        async def scenario():
            reader, writer = await self.slow_client()
            await until(lambda: self.server.sessions)
            session, = self.server.sessions.values()
            for index in range(count):
                session.send_binary(struct.pack("!I", index) * (size // 4))
            transport = session.transport
            # The kernel could not take it all: part of it is in Twisted's buffer.
            self.assertGreater(len(transport.dataBuffer) + transport._tempDataLen, 0)
            for index in range(count):
                expected = encode_binary(struct.pack("!I", index) * (size // 4))
                frame = await asyncio.wait_for(reader.readexactly(len(expected)), 10)
                self.assertEqual(frame, expected)
            writer.close()
        return run(scenario())

    def test_fan_out_to_a_mix_of_fast_and_backed_up_clients_keeps_order(self):
        async def scenario():
            clients = [await self.slow_client() for _ in range(3)]
            await until(lambda: len(self.server.sessions) >= 3)
            messages = [PreparedMessage.binary(struct.pack("!I", i) * 25_000) for i in range(40)]
            frames = [encode_binary(message.payload) for message in messages]
            for message in messages:
                self.server.fan_out(message, list(self.server.sessions.values()))
            for reader, writer in clients:
                for frame in frames:
                    received = await asyncio.wait_for(reader.readexactly(len(frame)), 10)
                    self.assertEqual(received, frame)
                writer.close()
        return run(scenario())


class FakeSocket:
    def __init__(self, accept):
        self.accept = accept
        self.sent = b""

    def sendmsg(self, parts):
        data = b"".join(parts)[:self.accept]
        self.sent += data
        return len(data)

    def send(self, data):
        return self.sendmsg([data])


def fake_tcp_transport(accept):
    """A tcp.Server with nothing buffered whose socket takes ``accept`` bytes;
    what is left goes to writeSequence/write, recorded."""
    transport = tcp.Server.__new__(tcp.Server)
    transport.dataBuffer = b""
    transport._tempDataBuffer = []
    transport.connected = True
    transport.disconnecting = False
    transport.socket = FakeSocket(accept)
    transport.queued = []
    transport.writeSequence = transport.queued.extend
    transport.write = transport.queued.append
    return transport


class VectoredWriteTests(SynchronousTestCase):
    header, payload = b"\x82\x7e\x00\x08", b"12345678"

    def check(self, accept):
        transport = fake_tcp_transport(accept)
        twisted_internals.write_sequence(transport, [self.header, self.payload])
        self.assertEqual(transport.socket.sent + b"".join(transport.queued),
                         self.header + self.payload)
        return transport.queued

    def test_whatever_the_kernel_takes_the_rest_is_queued_in_order(self):
        for accept in range(len(self.header) + len(self.payload) + 1):
            self.check(accept)

    def test_nothing_is_queued_when_everything_was_sent(self):
        self.assertEqual(self.check(12), [])

    def test_a_whole_unsent_payload_is_queued_without_being_copied(self):
        self.assertIs(self.check(4)[0], self.payload)
