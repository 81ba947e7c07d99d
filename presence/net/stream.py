"""A client connection's byte stream, whatever its protocol: the write path
and flow control every session shares.

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

from ..wire.close import ABNORMAL_CLOSURE
from .twisted_internals import close_transport, write, write_sequence

__all__ = ["Stream"]

log = Logger()


@implementer(IPushProducer)
class Stream(Protocol):
    """``server``: the node's client side (presence/net/server.py);
    ``connection``: the protocol core once the handshake is answered."""

    __slots__ = ("server", "transport", "connected", "connection", "bytes_in", "bytes_out",
                 "_producing", "_batch", "_write_paused", "_paused_bytes",
                 "_reading_paused_by_handler")

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.connected = 0
        self.connection = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._producing = False
        # The writes of the read being processed, or None outside a read.
        self._batch = None
        self._write_paused = False
        self._paused_bytes = 0
        self._reading_paused_by_handler = False

    def attach(self, transport):
        """Take over ``transport`` (from the dispatcher)."""
        self.transport = transport
        self.connected = 1
        transport.registerProducer(self, True)
        self._producing = True

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
        """Write what one read produced."""
        if len(batch) == 1:
            self._write(batch[0])
        elif self._admit(sum(map(len, batch))):
            write_sequence(self.transport, batch)

    # -------------------------------------------------------- flow control

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
        self.transport.pauseProducing()

    def resumeProducing(self):
        self._write_paused = False
        self._paused_bytes = 0
        if not self._reading_paused_by_handler and self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self):
        pass

    def pause_reading(self):
        """Stop reading from the client until :meth:`resume_reading` (the
        handler cannot keep up with its messages)."""
        self._reading_paused_by_handler = True
        self.transport.pauseProducing()

    def resume_reading(self):
        self._reading_paused_by_handler = False
        if not self._write_paused:
            self.transport.resumeProducing()

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
