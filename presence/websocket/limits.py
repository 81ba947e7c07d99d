"""The limits the WebSocket core enforces, with their defaults: what each one
bounds and why its default is what it is (docs/operations.md lists them for
operators)."""

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "DEFAULT_MAX_FRAGMENTS"]

#: Largest message accepted, in bytes, after reassembly (and decompression).
#: A message is buffered whole before it is delivered, so this bounds the
#: memory one client can make the server hold. Presence messages are small
#: JSON documents; 1 MiB leaves ample room.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024

#: Frames one message may come in. Each fragment costs a header to parse and
#: a piece to keep until the message is whole (about 50 bytes of Python
#: object for a 1-byte fragment), and empty fragments never bring a message
#: closer to the size limit: without this bound, one message could hold the
#: server busy forever, or cost 50 times its size. Browsers send one frame
#: per message; libraries that fragment do so in pieces of kilobytes.
DEFAULT_MAX_FRAGMENTS = 1024
