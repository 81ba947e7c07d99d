"""Test-wide setup.

The integration tests drive real clients written for asyncio (the
``websockets`` library) against the server on real sockets, in one process:
Twisted's asyncio reactor shares one event loop with them. It must be
installed before anything imports ``twisted.internet.reactor``.
"""

from twisted.internet import asyncioreactor

asyncioreactor.install()
