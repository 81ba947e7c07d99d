"""RFC 6455 (WebSocket) for the server side, as a sans-I/O protocol core.

Bytes in, events out; events in, bytes out. Nothing in this package imports
Twisted, opens a socket or reads a clock, so every rule a conformance suite
checks is tested here by feeding bytes and asserting bytes.

- :mod:`.handshake`: the opening handshake (4.2.1, 4.2.2).
- :mod:`.connection`: framing, fragmentation, ping/pong and the closing
  handshake (5, 7) as a state machine.
- :mod:`.frames`: frame constants and encoding (5.2).
- :mod:`.mask`: unmasking (5.3), pure Python or a C accelerator.
- :mod:`.close`: close codes (7.4) and the close record.
- :mod:`.extensions`: extension negotiation (9.1) and the extension interface.
"""

from .close import CloseRecord
from .connection import CLOSED, CLOSING, OPEN, InvalidState, ServerConnection
from .events import BinaryMessage, CloseReceived, Ping, Pong, ProtocolError, TextMessage
from .handshake import Accepted, HandshakeConfig, Rejected, server_handshake

__all__ = [
    "ServerConnection", "OPEN", "CLOSING", "CLOSED", "InvalidState",
    "TextMessage", "BinaryMessage", "Ping", "Pong", "CloseReceived", "ProtocolError",
    "HandshakeConfig", "Accepted", "Rejected", "server_handshake", "CloseRecord",
]
