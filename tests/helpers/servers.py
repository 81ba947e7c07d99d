"""A node's client side on a real loopback port, with the benchmark's echo
handler, for tests whose clients are real (the ``websockets`` library, raw
sockets); and a certificate for its TLS ports."""

import asyncio
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from bench.echo_server import EchoHandler
from presence.net.dispatch import ListenerFactory
from presence.net.server import Server
from presence.net.settings import ServerSettings
from presence.websocket.handshake import HandshakeConfig

from .waiting import run, until

__all__ = ["Echo", "ServerTestCase", "read_until_eof", "self_signed_certificate"]


class Echo(EchoHandler):
    """The benchmark's echo handler, recording sessions as they open and close."""

    def __init__(self):
        super().__init__()
        self.closed = []
        self.opened = []

    def session_opened(self, session):
        self.opened.append(session)

    def session_closed(self, session, record):
        self.closed.append(record)


async def read_until_eof(reader, limit=1 << 20):
    data = b""
    while len(data) < limit:
        chunk = await reader.read(65536)
        if not chunk:
            break
        data += chunk
    return data


class ServerTestCase(TestCase):
    """``self.server`` (an echo server) listens on ``self.url``."""

    handshake = HandshakeConfig()

    def setUp(self):
        self.app = Echo()
        settings = ServerSettings(handshake=self.handshake, max_message_size=4 * 1024 * 1024)
        self.server = self.app.server = Server(self.app, settings, reactor)
        self.factory = ListenerFactory(self.server)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.url = "ws://127.0.0.1:%d/" % self.port.getHost().port
        self.addCleanup(self._stop)

    @defer.inlineCallbacks
    def _stop(self):
        for session in list(self.server.sessions.values()):
            session.transport.abortConnection()
        yield self.port.stopListening()
        yield self.wait_for(lambda: not self.server.sessions)
        self.server.deadlines.stop()

    def wait_for(self, condition, timeout=5.0):
        """A Deferred firing once ``condition()`` holds (I/O, not timers)."""
        return run(until(condition, timeout))

    async def raw(self, data, read_all=True):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port.getHost().port)
        writer.write(data)
        await writer.drain()
        try:
            return await asyncio.wait_for(read_until_eof(reader), 5)
        finally:
            writer.close()


def self_signed_certificate(folder):
    """A key and a certificate for 127.0.0.1, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(folder, "key.pem")
    cert_path = os.path.join(folder, "cert.pem")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
