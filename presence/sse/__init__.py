"""Server-Sent Events downstream, HTTP POST upstream: the protocol for
browsers that cannot get a WebSocket through (a proxy that does not pass
``Upgrade``, a network that blocks it), as a sans-I/O protocol core of the
same shape as the WebSocket and firepresence ones.

A client opens a stream with ``GET /sse?ticket=T`` (``Accept:
text/event-stream``) and is answered with one long response: every server
message is one event, ``data: <the JSON a WebSocket carries>``. Its welcome
names a path (``"send"``) that carries a per-session secret; the client
POSTs its messages there, on other HTTP requests, and the answers travel on
the stream (docs/protocol.md specifies it whole).

- :mod:`.handshake`: which requests are SSE's, and the decisions on their
  heads: the stream's opening, a POST, a CORS preflight.
- :mod:`.connection`: the open session as a state machine: POST bodies in,
  events out (presence/wire/events.py); messages, pings and the close event
  in, bytes of the stream out.

Nothing here does I/O, reads a clock or draws a random number.
"""
