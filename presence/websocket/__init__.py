"""RFC 6455 (WebSocket) for the server side, as a sans-I/O protocol core.

Bytes in, events out; events in, bytes out. Nothing in this package imports
Twisted, opens a socket or reads a clock, so every rule a conformance suite
checks is tested here by feeding bytes and asserting bytes.

- :mod:`.handshake`: the opening handshake (4.2.1, 4.2.2).
- :mod:`.connection`: framing, fragmentation, ping/pong and the closing
  handshake (5, 7) as a state machine.
- :mod:`.frames`: frame constants and encoding (5.2), the Close payload
  (5.5.1) and the heartbeat's ping.
- :mod:`.mask`: unmasking (5.3), pure Python or a C accelerator.
- :mod:`.limits`: the sizes it bounds, and their defaults.
- :mod:`.extensions`: extension negotiation (9.1) and the extension interface;
  :mod:`.deflate`: permessage-deflate (RFC 7692).

Close codes and the events it reports are every protocol's
(presence/wire/close.py, presence/wire/events.py). Importing this package
imports none of its modules: the plugin's options read the defaults without
choosing an unmasking path.
"""
