"""Every use Presence makes of Twisted's internals, in one place.

Each of them buys something measured (docs/performance.md) or is the only way
to do what is needed, and each reads or writes an attribute that Twisted does
not promise to keep. A Twisted upgrade that changed one could silently reorder
bytes, drop data or leak memory, so tests/test_twisted_internals.py checks
every attribute named here against a real ``tcp.Server``, a real TLS wrapper
and a real PROXY-protocol wrapper, and fails saying which one changed.

- **Writing at once** (:func:`write`, :func:`write_sequence`).
  ``transport.write`` on a Twisted TCP connection appends to a buffer,
  registers the socket for writability (an ``epoll_ctl`` call), and sends
  on a later reactor iteration, which unregisters it again. For one frame
  written to 10,000 connections that is 20,000 extra system calls and a
  whole extra pass over the sockets. When the transport has nothing
  buffered, nothing is lost by calling ``send()`` at once: the bytes go out
  in the same order they would have, and whatever the kernel does not take
  is handed to ``transport.write``, which buffers it ahead of anything
  written later. Reads ``dataBuffer``, ``_tempDataBuffer``, ``connected``,
  ``disconnecting``, ``_writeDisconnected`` and ``socket``, on the exact
  class it was written against only; every other transport (TLS, wrappers,
  test transports) takes the plain path.
- **Handing a connection over** (:func:`hand_over`). Once the request head
  is read, the session replaces the dispatcher as the protocol the
  transport delivers to (``transport.protocol``, or a wrapper's
  ``wrappedProtocol``), so dispatching costs nothing afterwards.
- **The producer attributes' layout** (:func:`reserve_producer_attributes`):
  ``producer`` and ``streamingProducer``, set early on the TCP transport.
- **Closing gently** (:func:`close_transport`): which transports can be
  half-closed (``FileDescriptor``).
- **Who the peer is behind the PROXY protocol** (:func:`peer_named_later`):
  Twisted's wrapper connects its protocol before the header has come, and
  answers ``getPeer()`` with the balancer's address until it has.
- **The listening socket** (:func:`listening_socket`) and the port a
  connection came from (:func:`port_of`), for TCP_NODELAY set once per
  port (presence/net/listening.py).
- **Lean reads** (:func:`install_lean_reads`). Twisted's epoll reactor
  hands every ready socket to ``_doReadOrWrite`` through
  ``log.callWithLogger``, which pushes and pops a legacy logging context
  (the "system" prefix of ``log.msg`` lines) around each event: five
  Python calls, about a seventh of the Python time of a small echo
  (docs/performance.md). For a plain TCP connection with only input ready,
  the lean path does what ``_doReadOrWrite`` would (``fileno()``, then
  ``doRead()``, disconnecting on what it returns or raises) without the
  context, with ``tcp.Connection.doRead`` and ``_dataReceived`` written
  inline (``socket.recv(bufferSize)``, then ``protocol.dataReceived``;
  ``EWOULDBLOCK`` is no event, any other error is ``CONNECTION_LOST``, an
  empty read ``CONNECTION_DONE``); every other event and selectable takes
  Twisted's own path.
  Replaces the reactor's ``doIteration`` (``doPoll``) and reads
  ``_poller``, ``_selectables``, ``_disconnectSelectable`` and
  ``_POLL_IN``, and the connection's ``socket``, ``bufferSize`` and
  ``protocol``; on any other reactor it does nothing.
"""

import errno
import os
import sys
import types

from twisted.internet import error, tcp
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.tcp import EWOULDBLOCK
from twisted.internet.abstract import FileDescriptor
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper
from twisted.python import log

__all__ = ["write", "write_sequence", "MAX_PARTS", "hand_over", "reserve_producer_attributes",
           "close_transport", "peer_named_later", "listening_socket", "port_of",
           "install_lean_reads", "LEAN_READS"]

#: Whether :func:`install_lean_reads` takes over the reactor's read
#: dispatch: ``PRESENCE_LEAN_READS=0`` keeps Twisted's own path throughout.
LEAN_READS = os.environ.get("PRESENCE_LEAN_READS", "1") != "0"

_TCP_SERVER = tcp.Server


def _direct(transport):
    """Whether bytes may be sent on ``transport``'s socket at once: a plain
    TCP connection, open, with nothing waiting in Twisted's buffers."""
    return (transport.__class__ is _TCP_SERVER and not transport.dataBuffer
            and not transport._tempDataBuffer and transport.connected
            and not transport.disconnecting and not transport._writeDisconnected)


def _send_now(send, data):
    """``send(data)`` on the non-blocking socket: the bytes the kernel took
    (0 when it would block), or None on any other error, which Twisted's
    own write path then meets and closes the connection over."""
    try:
        return send(data)
    except BlockingIOError:
        return 0
    except OSError:
        return None


def write(transport, data):
    """Write ``data`` to ``transport``, sending at once when it is a plain TCP
    connection with an empty buffer."""
    # _direct and _send_now written inline: this is every echo's and the
    # fan-out's path, once per session.
    if (transport.__class__ is _TCP_SERVER and not transport.dataBuffer
            and not transport._tempDataBuffer and transport.connected
            and not transport.disconnecting and not transport._writeDisconnected):
        try:
            sent = transport.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            transport.write(data)  # Twisted's own path meets the error
            return
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


#: Parts per vectored send; above this they are joined first (IOV_MAX is
#: 1024 on Linux, and a long iovec buys nothing over one copy).
MAX_PARTS = 64


def write_sequence(transport, parts):
    """Write the byte strings ``parts`` (a list) in order, with one vectored
    ``sendmsg`` when sending at once is possible: a large payload goes out
    without first being copied next to its frame header."""
    if len(parts) > MAX_PARTS:
        write(transport, b"".join(parts))
        return
    if _direct(transport):
        sent = _send_now(transport.socket.sendmsg, parts) or 0
        for index, part in enumerate(parts):
            if sent < len(part):
                parts = [part[sent:]] + parts[index + 1:] if sent else parts[index:]
                break
            sent -= len(part)
        else:
            return
    transport.writeSequence(parts)


def hand_over(transport, old, new):
    """Make ``new`` the protocol ``transport`` delivers to, in place of ``old``:
    a wrapper's (TLS, PROXY protocol) wrapped protocol, or the transport's
    own protocol."""
    if getattr(transport, "wrappedProtocol", None) is old:
        transport.wrappedProtocol = new
    else:
        transport.protocol = new


def reserve_producer_attributes(transport):
    """Set, to their defaults, the two attributes that registering a producer
    adds to a Twisted TCP transport (under TLS or the PROXY protocol, to the
    TCP transport underneath).

    The session registers itself as its transport's producer once the head
    is read. Instances of a class share one layout for the attributes they
    set in the same order; attributes first set that late fall out of it,
    and each connection then pays for a dictionary of its own: about 0.8 KiB
    (measured with tracemalloc over 10,000 idle connections). Setting them
    here, while the transport is being set up, keeps them in the layout."""
    while transport is not None and not isinstance(transport, FileDescriptor):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.producer = None
        transport.streamingProducer = False


def close_transport(transport, clean):
    """Close a client's connection, the server first (RFC 6455 7.1.1).

    After a clean end (both sides said goodbye) the client has nothing more
    to send, so the connection is simply closed. Otherwise a plain TCP
    connection is half-closed: the FIN follows our last bytes, and whatever
    the client still sends is read and discarded until it closes too.
    Closing outright while unread bytes sit in the socket would make the
    kernel send a reset, and a reset can destroy the client's copy of our
    last bytes (an answer, the close and its reason) before it reads them.
    TLS and wrapped transports close with their own protocol."""
    if not clean and isinstance(transport, FileDescriptor):
        transport.loseWriteConnection()
    else:
        transport.loseConnection()


def listening_socket(port):
    """The socket a listening port accepts on, or None (not a socket port)."""
    return getattr(port, "socket", None)


def port_of(transport):
    """The listening port a connection was accepted on (for TLS, the TCP
    transport underneath is asked), or None."""
    return getattr(transport, "server", None)


def peer_named_later(transport):
    """Whether the transport's peer is named by a PROXY protocol header,
    which is read after the connection is made: until then ``getPeer()``
    is the balancer's address, and afterwards it is whatever the header
    said, unchecked."""
    return isinstance(transport, HAProxyProtocolWrapper)


# What _doReadOrWrite answers for a selectable whose fileno() is -1.
_NO_FILEDESC = error.ConnectionFdescWentAway("File descriptor lost")


def install_lean_reads(reactor):
    """Dispatch plain TCP connections' input without Twisted's per-event
    logging context on ``reactor``, when it is Twisted's epoll reactor (and
    LEAN_READS); True when installed."""
    if not LEAN_READS:
        return False
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return False
    if type(reactor) is not EPollReactor:
        return False
    reactor.doIteration = types.MethodType(_lean_poll, reactor)
    return True


def _lean_poll(reactor, timeout):
    """EPollReactor.doPoll, with the lean path for a plain TCP connection
    whose only event is input."""
    if timeout is None:
        timeout = -1  # wait indefinitely
    selectables = reactor._selectables
    try:
        events = reactor._poller.poll(timeout, len(selectables))
    except OSError as err:
        if err.errno == errno.EINTR:
            return
        raise
    read_only = reactor._POLL_IN
    tcp_server = _TCP_SERVER
    slow = reactor._doReadOrWrite
    call_with_logger = log.callWithLogger
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is None:
            continue
        if event != read_only or selectable.__class__ is not tcp_server:
            call_with_logger(selectable, slow, selectable, fd, event)
            continue
        # _doReadOrWrite's read branch, with tcp.Connection's doRead and
        # _dataReceived written inline: two Python calls fewer per read.
        try:
            if selectable.fileno() == -1:
                why = _NO_FILEDESC
            else:
                try:
                    data = selectable.socket.recv(selectable.bufferSize)
                except OSError as failure:
                    why = None if failure.args[0] == EWOULDBLOCK else CONNECTION_LOST
                else:
                    if data:
                        why = None
                        selectable.protocol.dataReceived(data)
                    else:
                        why = CONNECTION_DONE
        except BaseException:
            why = sys.exc_info()[1]
            log.err()
        if why:
            reactor._disconnectSelectable(selectable, why, True)
