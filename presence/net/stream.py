"""A client connection's stream, whatever its protocol: who is at the other
end, the messages written to it through its protocol core, the write path
and flow control every session shares.

- Messages go through the protocol core (``connection``), which encodes
  them in its protocol's form; a fan-out's form is encoded once for all.
- Writes are batched while a read is processed (a read that completes many
  messages answers with one send), and otherwise go out at once
  (presence/net/twisted_internals.py ``write``).
- The stream is its transport's streaming producer. When the transport's
  buffer is over its limit (the client is not reading as fast as we write),
  Twisted pauses us: the stream stops reading from the client too and counts
  what is written meanwhile; past ``--max-outgoing-buffer`` the client is
  dropped as a slow consumer.
- The handler may pause reading too (:meth:`Stream.pause_reading`), when it
  cannot keep up with a session's messages.
"""

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from ..wire.close import ABNORMAL_CLOSURE, NORMAL_CLOSURE
from ..wire.events import CLOSED, OPEN
from ..wire.jsontext import encode_document
from .twisted_internals import close_transport, write, write_sequence

__all__ = ["Stream", "VECTORED_WRITE_SIZE", "HOLD_WRITING", "HOLD_HANDLER", "HOLD_TURN",
           "HOLD_ANSWER"]

log = Logger()

#: Payloads from this size are written as header and payload with one
#: vectored send instead of being copied into one frame first.
VECTORED_WRITE_SIZE = 16384

# Why reading from a client is paused: it does not read what it is sent;
# the handler asked; the session waits for its turn behind others
# (presence/net/server.py, "taking turns"); it has sent more than is kept
# before its handshake is answered (presence/net/authentication.py).
HOLD_WRITING = 1
HOLD_HANDLER = 2
HOLD_TURN = 4
HOLD_ANSWER = 8


@implementer(IPushProducer)
class Stream(Protocol):
    """``server``: the node's client side (presence/net/server.py);
    ``connection``: the protocol core once the handshake is answered."""

    __slots__ = ("server", "transport", "connected", "connection", "_client_ip", "proxy",
                 "messages_out", "bytes_in", "bytes_out", "_producing", "_batch",
                 "_write_paused", "_paused_bytes", "_holds")

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.connected = 0
        self.connection = None
        self._client_ip = None
        #: The trusted proxy the client came through (X-Forwarded-For), or None.
        self.proxy = None
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._producing = False
        # The writes of the read being processed, or None outside a read.
        self._batch = None
        self._write_paused = False
        self._paused_bytes = 0
        # Why reading from the client is paused (HOLD_ bits), if it is.
        self._holds = 0

    def attach(self, transport, client_ip=None, proxy=None):
        """Take over ``transport`` from the dispatcher; ``client_ip`` is the
        address a trusted proxy said (None: the TCP peer's)."""
        self.transport = transport
        self.connected = 1
        self._client_ip = client_ip
        self.proxy = proxy
        transport.registerProducer(self, True)
        self._producing = True

    @property
    def client_ip(self):
        """The client's IP address: the TCP peer's (the PROXY protocol's
        source behind a balancer), or what a trusted proxy said. The peer is
        looked up only when first asked for: building its address costs a
        measurable share of a handshake, and most sessions never need it."""
        if self._client_ip is None and self.transport is not None:
            self._client_ip = getattr(self.transport.getPeer(), "host", None)
        return self._client_ip

    @client_ip.setter
    def client_ip(self, address):
        self._client_ip = address

    # ------------------------------------------------------------ messages

    def _send(self, payload, is_text):
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return False
        if len(payload) < VECTORED_WRITE_SIZE:
            data = connection.send_data(payload, is_text)
            if data is None:
                return False
            self._write(data)
        else:
            parts = connection.send_data_parts(payload, is_text)
            if parts is None:
                return False
            self._write_parts(parts)
        self.messages_out += 1
        return True

    def send_text(self, text):
        """Send a text message; False when the session is not open."""
        return self._send(text.encode("utf-8"), True)

    def send_binary(self, data):
        """Send a binary message; False when the session is not open, or its
        protocol carries no binary messages."""
        return self._send(data, False)

    def send_document(self, document):
        """Send a JSON-serialisable object as a text message."""
        return self._send(encode_document(document), True)

    def send_prepared(self, prepared):
        """Send a :class:`~presence.wire.prepared.PreparedMessage` (see
        :meth:`presence.net.server.Server.fan_out`), in the form its protocol
        encoded once."""
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return False
        # The form another session of the protocol made already, or this one's.
        data = prepared.forms.get(connection.prepared_key)
        if data is None:
            data = connection.send_prepared(prepared)
            if data is None:
                return False
        self.messages_out += 1
        if self._batch is None and not self._write_paused:
            self.bytes_out += len(data)
            write(self.transport, data)
        else:
            self._write(data)
        return True

    def close(self, code=NORMAL_CLOSURE, reason=""):
        """Start closing (RFC 6455 7.1.2); the transport is dropped if the
        client does not answer within the close timeout. Where the
        protocol's close is final (firepresence's close line), the transport
        is closed once it is written."""
        connection = self.connection
        if connection is None or connection.state is not OPEN:
            return
        self._write(connection.send_close(code, reason))
        if connection.state is CLOSED:
            if self._batch is None:
                self._close_transport(connection.peer_closed)
            # else: the read being processed closes it after its writes
        else:
            self.server.deadlines.set(self, self.server.settings.close_timeout)


    # ------------------------------------------------------------- writing

    def _admit(self, size):
        """Count ``size`` bytes about to be written; False when they would
        take a client that is not reading past the outgoing bound (it is
        then dropped)."""
        self.bytes_out += size
        if self._write_paused:
            self._paused_bytes += size
            if self._paused_bytes > self.server.settings.max_outgoing_buffer:
                self._slow_consumer()
                return False
        return True

    def _write(self, data):
        """Bytes to the client: batched while a read is being processed,
        otherwise written at once."""
        batch = self._batch
        if batch is not None:
            batch.append(data)
        elif self._admit(len(data)):
            write(self.transport, data)

    def _write_parts(self, parts):
        batch = self._batch
        if batch is not None:
            batch.extend(parts)
        elif self._admit(sum(map(len, parts))):
            write_sequence(self.transport, parts)

    def _flush(self, batch):
        """Write what one read produced (the batch is over: written at once)."""
        if len(batch) == 1:
            data = batch[0]
            if self._admit(len(data)):
                write(self.transport, data)
        elif self._admit(sum(map(len, batch))):
            write_sequence(self.transport, batch)

    # -------------------------------------------------------- flow control

    def _hold(self, reason):
        """Stop reading from the client for ``reason`` (one of the HOLD_
        bits); it is read again once no reason is left."""
        if not self._holds:
            self.transport.pauseProducing()
        self._holds |= reason

    def _release(self, reason):
        if self._holds & reason:
            self._holds &= ~reason
            if not self._holds and self.connected:
                self.transport.resumeProducing()

    def pauseProducing(self):
        # The transport's buffer is over its limit: the client is not reading
        # as fast as we write. Stop reading from it too (its own requests
        # would only queue more answers), and start counting what is queued.
        if self._write_paused:
            # Twisted says so again at every write while its buffer is full:
            # the count goes on (restarting it would let the queue grow
            # without bound).
            return
        self._write_paused = True
        self._paused_bytes = 0
        self._hold(HOLD_WRITING)

    def resumeProducing(self):
        self._write_paused = False
        self._paused_bytes = 0
        self._release(HOLD_WRITING)

    def stopProducing(self):
        pass

    def pause_reading(self):
        """Stop reading from the client until :meth:`resume_reading` (the
        handler cannot keep up with its messages)."""
        self._hold(HOLD_HANDLER)

    def resume_reading(self):
        self._release(HOLD_HANDLER)

    def _slow_consumer(self):
        server = self.server
        server.stats.slow_consumers += 1
        limit = server.settings.max_outgoing_buffer
        log.info("{session!r} dropped: client not reading, over {limit} bytes queued",
                 session=self, limit=limit)
        # Nothing can reach a client that does not read: the record says 1006
        # (closed without a close frame) and why.
        self._abort(ABNORMAL_CLOSURE, "slow consumer: more than %d bytes queued" % limit)

    # --------------------------------------------------------------- ending

    def _abort(self, code, reason):
        """Drop the transport now, recording ``code`` and ``reason`` unless a
        close was already under way."""
        if self.connection is not None:
            self.connection.abort(code, reason)
        self.transport.abortConnection()

    def _close_transport(self, clean):
        """Close the transport (``clean``: the client has nothing more to
        send), within the close timeout."""
        server = self.server
        server.deadlines.set(self, server.settings.close_timeout)
        if self._producing:
            # A registered producer holds a TLS transport open until it is
            # unregistered; nothing more is produced once the session closes.
            self._producing = False
            self.transport.unregisterProducer()
        close_transport(self.transport, clean)
