"""Listening endpoints, with the socket options every connection needs set
once on the listening socket.

Small frames should leave at once, so connections use TCP_NODELAY (Nagle's
algorithm would hold a frame back until the previous one is acknowledged).
On Linux an accepted socket inherits TCP_NODELAY from its listening socket,
so setting it there spares a ``setsockopt`` system call per connection, a
measurable share of a handshake. The port is marked, and connections from an
unmarked port (another OS, a listener made elsewhere) set it themselves.

With ``--workers N`` every port is shared by N processes. The parent opens
the listening sockets (:class:`SharedPort`) and each worker adopts its own
(:class:`AdoptingReactor`), wrapped as its endpoint would wrap a socket it
bound itself (TLS, the PROXY protocol). On Linux a TCP port is N sockets
bound with SO_REUSEPORT, one per worker, and the kernel spreads new
connections over them by a hash of the client's address and port (socket(7));
elsewhere, and for unix sockets, the workers share one socket and its accept
queue. Because the parent holds every socket, a port given as 0 is one
concrete port for all, and a worker that dies loses no connection waiting
to be accepted: its socket's queue waits for its replacement.
"""

import os
import socket
import sys

from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from .twisted_internals import listening_socket, port_of

__all__ = ["NoDelayEndpoint", "nodelay_inherited", "NODELAY_MARK", "SharedPort",
           "AdoptingReactor", "REUSE_PORT"]

#: Whether a TCP port is one socket per worker, balanced by the kernel: Linux
#: 3.9+ balances SO_REUSEPORT listeners; BSDs and macOS accept the option but
#: hand every connection to one of them, so there the workers share one.
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")

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


class SharedPort:
    """One listening endpoint opened by the parent of ``count`` workers.

    Twisted decides where ``description`` listens: it is parsed by
    ``serverFromString`` and listened on with a MemoryReactor (public API,
    twisted.internet.testing), which records the port, interface, backlog
    or path and mode that Twisted would bind, after its wrappers
    (``haproxy:``) and whatever ``ssl:`` needs (its certificate is loaded,
    so a missing file fails here, in the parent). Kinds that bind no socket
    of their own (``systemd:``, a plugin's) cannot be shared: ValueError.
    Fails with CannotListenError as Twisted's own ports do."""

    def __init__(self, description, count, reuse_port=REUSE_PORT):
        self.description = description
        recorder = listened_on(description)
        inet = [(port, backlog, interface) for port, _, backlog, interface
                in recorder.tcpServers]
        inet += [(port, backlog, interface) for port, _, _, backlog, interface
                 in recorder.sslServers]
        unix = [(path, backlog, mode) for path, _, backlog, mode, _ in recorder.unixServers]
        if len(inet) + len(unix) != 1:
            raise ValueError("%s: workers share tcp:, tcp6:, ssl:, unix: and haproxy: "
                             "ports only" % description)
        self.path = None
        self.sockets = []
        try:
            if unix:
                self.path, backlog, mode = unix[0]
                self.sockets.append(_unix_socket(self.path, backlog, mode))
            else:
                self._open_inet(*inet[0], count if reuse_port else 1, reuse_port)
        except BaseException:
            self.close()
            raise

    def _open_inet(self, port, backlog, interface, count, reuse_port):
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        for _ in range(count):
            sock = _inet_socket(family, interface, port, backlog, reuse_port)
            self.sockets.append(sock)
            # Port 0: the kernel chose one for the first socket; the others
            # join it there.
            port = sock.getsockname()[1]

    @property
    def address(self):
        """Where the port listens: ``host:port``, or the unix socket's path."""
        if self.path is not None:
            return self.path
        host, port = self.sockets[0].getsockname()[:2]
        return "%s:%d" % ("[%s]" % host if ":" in host else host, port)

    def fileno_for(self, slot):
        """The descriptor worker number ``slot`` (from 0) listens on."""
        return self.sockets[slot % len(self.sockets)].fileno()

    def close(self):
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        if self.path is not None and not self.path.startswith("\0"):
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.path = None


def listened_on(description):
    """A MemoryReactor that ``description`` was listened on: what Twisted
    would bind for it (SharedPort)."""
    recorder = MemoryReactor()
    try:
        serverFromString(recorder, description).listen(Factory())
    except Exception as error:
        raise ValueError("%s: not an endpoint Twisted can listen on (%s: %s)"
                         % (description, type(error).__name__, error))
    return recorder


def _inet_socket(family, interface, port, backlog, reuse_port):
    """A listening TCP socket as Twisted's tcp.Port makes one (SO_REUSEADDR
    on POSIX), with SO_REUSEPORT set before bind when asked, and
    TCP_NODELAY for its connections to inherit (above)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise CannotListenError(interface, port, error)
    sock.setblocking(False)
    return sock


def _unix_socket(path, backlog, mode):
    """A listening unix socket as Twisted's unix.Port makes one."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if not path.startswith("\0"):
            os.chmod(path, mode)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise CannotListenError(None, path, error)
    sock.setblocking(False)
    return sock


class AdoptingReactor:
    """The reactor as an endpoint parsed in a worker sees it: where the
    endpoint would bind a socket (``listenTCP``, ``listenSSL``,
    ``listenUNIX``), the worker adopts descriptor ``fd``, opened by its
    parent (:class:`SharedPort`), wrapped as Twisted's reactor wraps a
    socket it binds (``listenSSL`` is TLSMemoryBIOFactory over TCP, as in
    twisted.internet.posixbase); ``haproxy:`` wraps the factory before it
    gets here. Everything else is the reactor's."""

    def __init__(self, reactor, fd):
        self._reactor = reactor
        self._fd = fd

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def _adopt(self, factory):
        with socket.socket(fileno=os.dup(self._fd)) as probe:
            family = probe.family
        # adoptStreamPort listens on a duplicate; the inherited one is
        # closed so the worker holds one descriptor per socket.
        port = self._reactor.adoptStreamPort(self._fd, family, factory)
        os.close(self._fd)
        return port

    def listenTCP(self, port, factory, backlog=50, interface=""):
        return self._adopt(factory)

    def listenSSL(self, port, factory, contextFactory, backlog=50, interface=""):
        return self._adopt(TLSMemoryBIOFactory(contextFactory, False, factory))

    def listenUNIX(self, address, factory, backlog=50, mode=0o666, wantPID=0):
        return self._adopt(factory)
