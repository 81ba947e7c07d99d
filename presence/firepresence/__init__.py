"""firepresence: the raw protocol for clients that are not browsers, as a
sans-I/O protocol core of the same shape as the WebSocket one.

A client asks for it on the same port as WebSocket (``OPTIONS`` with
``Upgrade: firepresence``) and both directions then carry one JSON object per
line (docs/protocol.md specifies it whole).

- :mod:`.handshake`: the handshake decision on the request head.
- :mod:`.lines`: splitting the byte stream into JSON lines, and writing one.
- :mod:`.connection`: the open session as a state machine: lines in, events
  out (presence/wire/events.py); messages, pings and the close line in,
  bytes out.

Nothing here does I/O or reads a clock.
"""
