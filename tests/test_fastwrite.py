"""The direct write path (presence.fastwrite) on real TCP connections: bytes
arrive complete and in order when the kernel takes only part of a write."""

import asyncio
import socket
import struct

from twisted.internet import tcp
from twisted.trial.unittest import SynchronousTestCase

from presence import fastwrite
from presence.websocket.connection import PreparedMessage
from presence.websocket.frames import encode_binary

from .framing import upgrade_request
from .test_integration import ServerTestCase, run
from .waiting import async_until


class PartialWriteTests(ServerTestCase):
    def setUp(self):
        super().setUp()
        # Room to queue everything for a client that is slow to read.
        self.node.settings.max_outgoing_buffer = 64 * 1024 * 1024

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
            await async_until(lambda: self.node.sessions)
            session, = self.node.sessions.values()
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
            await async_until(lambda: len(self.node.sessions) >= 3)
            messages = [PreparedMessage.binary(struct.pack("!I", i) * 25_000) for i in range(40)]
            frames = [message.frame for message in messages]
            for message in messages:
                self.node.fan_out(message, list(self.node.sessions.values()))
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
        fastwrite.write_sequence(transport, [self.header, self.payload])
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
