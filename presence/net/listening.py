"""Listening endpoints, with the socket options every connection needs set
once on the listening socket.

Small frames should leave at once, so connections use TCP_NODELAY (Nagle's
algorithm would hold a frame back until the previous one is acknowledged).
On Linux an accepted socket inherits TCP_NODELAY from its listening socket,
so setting it there spares a ``setsockopt`` system call per connection, a
measurable share of a handshake. The port is marked, and connections from an
unmarked port (another OS, a listener made elsewhere) set it themselves.
"""

import socket

from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from .twisted_internals import listening_socket, port_of

__all__ = ["NoDelayEndpoint", "nodelay_inherited", "NODELAY_MARK"]

#: Attribute set on a listening port whose connections inherit TCP_NODELAY.
NODELAY_MARK = "presence_nodelay_inherited"


@implementer(IStreamServerEndpoint)
class NoDelayEndpoint:
    """Wraps a stream server endpoint: once listening, sets TCP_NODELAY on
    the listening socket if it is a TCP one."""

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def listen(self, factory):
        return self.endpoint.listen(factory).addCallback(self._listening)

    @staticmethod
    def _listening(port):
        listener = listening_socket(port)
        if listener is not None and listener.family in (socket.AF_INET, socket.AF_INET6):
            try:
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            else:
                setattr(port, NODELAY_MARK, True)
        return port


def nodelay_inherited(transport):
    """Whether ``transport`` came from a port marked by NoDelayEndpoint (for
    TLS, the TCP transport underneath is asked)."""
    return getattr(port_of(transport), NODELAY_MARK, False)
