"""Writing bytes to a TCP transport without waiting for the next reactor turn.

``transport.write`` on a Twisted TCP connection appends to a buffer, registers
the socket for writability (an ``epoll_ctl`` call), and sends on a later
reactor iteration, which unregisters it again. For one frame written to
10,000 connections that is 20,000 extra system calls and a whole extra pass
over the sockets. When the transport has nothing buffered, nothing is lost by
calling ``send()`` at once: the bytes go out in the same order they would
have, and whatever the kernel does not take is handed to ``transport.write``,
which buffers it ahead of anything written later. This reads two of
Twisted's buffer attributes (``dataBuffer``, ``_tempDataBuffer``), so it is
used only on the exact transport class it was written against, and every
other transport (TLS, wrappers, test transports) takes the plain path.
"""

from twisted.internet import tcp

__all__ = ["write", "write_sequence"]

_TCP_SERVER = tcp.Server


def _direct(transport):
    return (transport.__class__ is _TCP_SERVER and not transport.dataBuffer
            and not transport._tempDataBuffer and transport.connected
            and not transport.disconnecting and not transport._writeDisconnected)


def write(transport, data):
    """Write ``data`` to ``transport``, sending at once when it is a plain TCP
    connection with an empty buffer."""
    if _direct(transport):
        try:
            sent = transport.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Let Twisted's own write path meet the error and close the
            # connection the usual way.
            transport.write(data)
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
        try:
            sent = transport.socket.sendmsg(parts)
        except BlockingIOError:
            sent = 0
        except OSError:
            transport.writeSequence(parts)
            return
        for index, part in enumerate(parts):
            if sent < len(part):
                parts = [part[sent:]] + parts[index + 1:] if sent else parts[index:]
                break
            sent -= len(part)
        else:
            return
    transport.writeSequence(parts)
