"""permessage-deflate (RFC 7692): negotiation and per-message compression.

:class:`PerMessageDeflate` is the server's configuration: it reads the
client's offers (section 7.1) and accepts the first it can honour.
:class:`DeflateExtension` is the agreed parameters on one connection: it
inflates messages whose first frame carries RSV1 (7.2.2) and compresses
outgoing ones (7.2.1).

Memory is what permessage-deflate costs, so this module is careful with it:

- A compressor with the default window (15 bits) and memory level (8) holds
  about 256 KiB. When the server does not keep its compression context
  (``server_no_context_takeover``, the default here), every message is
  compressed on its own, so one compressor per parameter set is shared by
  all connections (it is reset after each message with a full flush), and a
  message fanned out to many connections is compressed once. A connection
  that does keep its context (``--deflate-server-context-takeover``) gets
  its own compressor when it first sends a compressed message.
- An inflater holds about 7 KiB plus its window (32 KiB at 15 bits). When the
  client does not keep its context (``client_no_context_takeover``, which
  the server asks for by default), an inflater lives only while a
  compressed message is arriving; otherwise each connection keeps one from
  its first compressed message on.
- Inflating is bounded by the maximum message size as it happens (the
  decompressor's ``max_length``), so a small message that would inflate past
  the limit fails with 1009 without the server allocating the full size.
"""

import zlib

from ..wire.close import INVALID_PAYLOAD, MESSAGE_TOO_BIG
from .extensions import Extension, ExtensionError, ExtensionFactory
from .frames import RSV1

__all__ = ["PerMessageDeflate", "DeflateExtension", "EXTENSION_NAME", "DEFAULT_WINDOW_BITS",
           "DEFAULT_COMPRESSION_LEVEL", "DEFAULT_MEMORY_LEVEL", "DEFAULT_MIN_SIZE"]

EXTENSION_NAME = "permessage-deflate"

#: zlib's largest window, for the server's compressor and asked of clients:
#: the best ratios; smaller windows trade them for memory per connection.
DEFAULT_WINDOW_BITS = 15
#: zlib's own default level and memory level: its balance of CPU and ratio.
DEFAULT_COMPRESSION_LEVEL = 6
DEFAULT_MEMORY_LEVEL = 8
#: Messages shorter than this are sent uncompressed: below it, deflate's own
#: overhead and the CPU spent outweigh the bytes saved.
DEFAULT_MIN_SIZE = 128

# 7.2.1: the tail every sync-flushed message ends with, removed on the wire
# and appended again before inflating (7.2.2).
_TAIL = b"\x00\x00\xff\xff"

_WINDOW_BITS = range(8, 16)


def _window_bits(value):
    """A window-bits parameter value (7.1.2): a decimal integer 8-15 with no
    leading zeros or sign; ``None`` when invalid."""
    if value is None or not (value.isascii() and value.isdigit()) or value[0] == "0":
        return None
    bits = int(value)
    return bits if bits in _WINDOW_BITS else None


class PerMessageDeflate(ExtensionFactory):
    """The server's permessage-deflate configuration.

    ``server_max_window_bits`` (9-15): the largest window the server
    compresses with (a client's offer may lower it). zlib cannot produce a
    raw deflate stream with an 8-bit window, so an offer that demands
    ``server_max_window_bits=8`` is declined.
    ``client_max_window_bits`` (9-15): the window asked of clients that offer
    to limit theirs; smaller windows shrink the server's inflaters. (8 is
    not offered: zlib-based clients, browsers among them, cannot use it.)
    ``server_context_takeover``: keep the compression context between
    messages (better ratios on similar messages; a compressor of its own per
    connection). Off by default: messages are compressed independently, with
    one shared compressor, and a fan-out compresses once.
    ``client_context_takeover``: let clients keep theirs (better ratios on
    client messages; an inflater kept per connection). Off by default.
    ``compression_level`` (0-9) and ``memory_level`` (1-9): zlib's.
    ``min_size``: messages shorter than this many bytes are sent uncompressed.
    """

    name = EXTENSION_NAME

    def __init__(self, server_max_window_bits=DEFAULT_WINDOW_BITS,
                 client_max_window_bits=DEFAULT_WINDOW_BITS, server_context_takeover=False,
                 client_context_takeover=False, compression_level=DEFAULT_COMPRESSION_LEVEL,
                 memory_level=DEFAULT_MEMORY_LEVEL, min_size=DEFAULT_MIN_SIZE):
        if server_max_window_bits not in range(9, 16):
            raise ValueError("server_max_window_bits must be 9-15")
        if client_max_window_bits not in range(9, 16):
            # zlib-based clients cannot compress with an 8-bit window either.
            raise ValueError("client_max_window_bits must be 9-15")
        if compression_level not in range(0, 10):
            raise ValueError("compression_level must be 0-9")
        if memory_level not in range(1, 10):
            raise ValueError("memory_level must be 1-9")
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.server_context_takeover = server_context_takeover
        self.client_context_takeover = client_context_takeover
        self.compression_level = compression_level
        self.memory_level = memory_level
        self.min_size = min_size
        # One compressor per window size, shared by every connection that
        # compresses each message on its own (server_no_context_takeover).
        self._shared = {}

    def accept(self, params):
        """Accept one offer (7.1) or return ``None`` to decline it."""
        seen = set()
        server_no_context_takeover = False
        client_no_context_takeover = False
        server_bits = None
        client_bits = None
        client_bits_offered = False
        for name, value in params:
            if name in seen:
                return None  # 7.1: a repeated parameter makes the offer invalid
            seen.add(name)
            if name == "server_no_context_takeover":
                if value is not None:
                    return None
                server_no_context_takeover = True
            elif name == "client_no_context_takeover":
                if value is not None:
                    return None
                client_no_context_takeover = True
            elif name == "server_max_window_bits":
                server_bits = _window_bits(value)
                if server_bits is None:
                    return None  # 7.1.2.1: a value is required, 8-15
            elif name == "client_max_window_bits":
                client_bits_offered = True
                if value is not None:
                    client_bits = _window_bits(value)
                    if client_bits is None:
                        return None
            else:
                return None  # 7.1: an unknown parameter makes the offer invalid

        response = []
        # 7.1.1.1: a server accepting server_no_context_takeover must answer
        # with it; it may add it on its own, which is how this server keeps
        # no compression state per connection.
        keep_context = self.server_context_takeover and not server_no_context_takeover
        if not keep_context:
            response.append(("server_no_context_takeover", None))
        # 7.1.1.2: the server may always ask the client not to keep its
        # context; then an inflater need only live while a message arrives.
        client_keeps_context = self.client_context_takeover and not client_no_context_takeover
        if not client_keeps_context:
            response.append(("client_no_context_takeover", None))
        # 7.1.2.1: with server_max_window_bits in the offer, the answer must
        # carry a value no larger; without it, the server may still compress
        # with a smaller window (any inflater decodes that), and says nothing.
        compress_bits = self.server_max_window_bits
        if server_bits is not None:
            if server_bits < 9:
                return None  # zlib cannot honour an 8-bit raw deflate window
            compress_bits = min(compress_bits, server_bits)
            response.append(("server_max_window_bits", str(compress_bits)))
        # 7.1.2.2: client_max_window_bits may be answered only when offered,
        # with a value no larger than the offer's; otherwise the client may
        # use up to 15 bits and the inflater must allow for it.
        inflate_bits = 15
        if client_bits_offered:
            inflate_bits = min(self.client_max_window_bits,
                               client_bits if client_bits is not None else 15)
            if inflate_bits < 15 or client_bits is not None:
                response.append(("client_max_window_bits", str(inflate_bits)))
        return DeflateExtension(self, response, compress_bits, inflate_bits, keep_context,
                                client_keeps_context)

    def shared_compressor(self, window_bits):
        compressor = self._shared.get(window_bits)
        if compressor is None:
            compressor = self._shared[window_bits] = self.new_compressor(window_bits)
        return compressor

    def new_compressor(self, window_bits):
        return zlib.compressobj(self.compression_level, zlib.DEFLATED, -window_bits,
                                self.memory_level)


class DeflateExtension(Extension):
    """permessage-deflate as agreed on one connection."""

    name = EXTENSION_NAME
    rsv = RSV1

    __slots__ = ("config", "params", "compress_bits", "inflate_bits", "keep_context",
                 "client_keeps_context", "_compressor", "_inflater", "inflated", "inflated_bytes",
                 "deflated")

    def __init__(self, config, params, compress_bits, inflate_bits, keep_context,
                 client_keeps_context):
        self.config = config
        self.params = params
        self.compress_bits = compress_bits
        self.inflate_bits = inflate_bits
        self.keep_context = keep_context
        self.client_keeps_context = client_keeps_context
        self._compressor = None
        self._inflater = None
        #: Messages received compressed, and messages this connection compressed.
        self.inflated = 0
        #: Bytes inflated so far: what the session's --max-inflated-rate
        #: charges (compressed data can inflate about 1000 times).
        self.inflated_bytes = 0
        self.deflated = 0

    def response_params(self):
        return self.params

    # -------------------------------------------------------- 7.2.2 inflate

    def decode(self, data, end_of_message, limit):
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(-self.inflate_bits)
        try:
            # max_length one past the limit: producing that much proves the
            # message too big, and stops before anything larger is allocated.
            out = inflater.decompress(data, limit + 1) if data else b""
            if end_of_message and len(out) <= limit:
                # Below max_length all input was consumed: nothing is left in
                # unconsumed_tail to go before the tail.
                out += inflater.decompress(_TAIL, limit + 1 - len(out))
        except zlib.error as error:
            self._inflater = None
            raise ExtensionError(INVALID_PAYLOAD, "invalid compressed data (%s)" % error) from None
        if len(out) > limit:
            self._inflater = None
            raise ExtensionError(MESSAGE_TOO_BIG, "message larger than the limit once inflated")
        self.inflated_bytes += len(out)
        if end_of_message:
            self.inflated += 1
            if not self.client_keeps_context or inflater.eof:
                # Without context takeover (or after a final block) the next
                # message starts from an empty window: free this one now.
                self._inflater = None
        return out

    # ------------------------------------------------------- 7.2.1 compress

    def encode(self, payload):
        if len(payload) < self.config.min_size or not payload:
            return 0, payload
        return RSV1, self.compress(payload)

    def compress(self, payload):
        """The compressed payload of one message, tail removed (7.2.1)."""
        self.deflated += 1
        if self.keep_context:
            compressor = self._compressor
            if compressor is None:
                compressor = self._compressor = self.config.new_compressor(self.compress_bits)
            data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        else:
            # A full flush ends the message on a byte boundary and forgets
            # the history, so the next message (of any connection sharing
            # this compressor) starts from an empty window (7.1.1.1).
            compressor = self.config.shared_compressor(self.compress_bits)
            data = compressor.compress(payload) + compressor.flush(zlib.Z_FULL_FLUSH)
        return data[:-4] if data.endswith(_TAIL) else data

    @property
    def shared_encoding(self):
        """A key under which this connection's encoding of a message can be
        reused for other connections (``None`` when it depends on this
        connection's own context)."""
        if self.keep_context:
            return None
        return (id(self.config), self.compress_bits)
