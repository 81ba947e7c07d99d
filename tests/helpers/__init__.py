"""What the tests share, one module a job:

- :mod:`.waiting`: the one bounded waiter (``until``), and carrying a
  coroutine to trial and back (``run``, ``wait``);
- :mod:`.framing`: the bytes clients send (frames, handshakes) and the
  drivers of a protocol core;
- :mod:`.transports`: a node's client side on StringTransports and a Clock;
- :mod:`.servers`: a node's client side on a real loopback port;
- :mod:`.redis`: a real redis-server per test;
- :mod:`.logs`: what a test hears of twisted.logger;
- :mod:`.api`: the HTTP API on a real port, with an OAuth introspection server;
- :mod:`.processes`: ``twistd presence`` as a child process;
- :mod:`.cluster`: several such processes sharing one Redis, and their clients;
- :mod:`.browser`: Chromium for Playwright.
"""
