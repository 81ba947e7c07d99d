"""Request bodies bounded before they are read, for both HTTP sites (the API
and the dashboard): docs/operations.md lists each site's maximum.

twisted.web's own Request keeps whatever body a client announces, before
any resource sees the request (and before anyone knows who is asking): in
memory below 100,000 bytes, in a temporary file above, or when the length
is not announced (``Transfer-Encoding: chunked``). So an unauthenticated
``POST`` with ``Content-Length: 1073741824`` had the node write a GiB to
disk before its 401.

A :class:`BoundedRequest` keeps its body in memory, at most its site's
``max_body`` bytes:

- a ``Content-Length`` over it is answered ``413`` as soon as the head has
  been read, before any of the body (no ``100 Continue`` is sent for it);
- a body without a length (chunked) is counted as it arrives, and answered
  ``413`` the moment it passes the bound, what it sent so far dropped.

Either way the connection is closed after the answer, and what more the
client sends is not read. The refusal is counted in the node's
``limits_hit`` under the site's name (``presence_limits_hit_total``, the
dashboard's "Limits hit").
"""

import io

from twisted.web.server import Request, Site

__all__ = ["BoundedRequest", "BoundedSite", "too_large_text"]

#: RFC 9110 15.5.14.
_STATUS_LINE = b"HTTP/1.1 413 Content Too Large\r\n"


def too_large_text(max_body):
    """The plain-text answer to a body over ``max_body`` bytes:
    ``(content type, body)``."""
    return (b"text/plain; charset=utf-8",
            b"request body larger than %d bytes\n" % max_body)


class BoundedRequest(Request):
    """A request whose body is held to ``channel.site.max_body`` bytes
    (its site is a :class:`BoundedSite`)."""

    #: Whether this request was answered 413 (its body is not kept, and it
    #: is never handed to a resource).
    too_large = False

    def gotLength(self, length):
        """The head is read; ``length`` is its Content-Length, or None
        (chunked). Called before any of the body is read."""
        self.content = io.BytesIO()
        if length is not None and length > self.channel.site.max_body:
            self._refuse()

    def handleContentChunk(self, data):
        if self.too_large:
            return
        if self.content.tell() + len(data) > self.channel.site.max_body:
            self._refuse()
            return
        self.content.write(data)

    def requestReceived(self, command, path, version):
        if self.too_large:
            return  # answered already: a body that passed the bound in one read
        super().requestReceived(command, path, version)

    def _refuse(self):
        self.too_large = True
        self.content = io.BytesIO()
        # The channel answers "Expect: 100-continue" after gotLength(): the
        # client is told 413 instead, and sends nothing.
        self.requestHeaders.removeHeader(b"expect")
        channel = self.channel
        site = channel.site
        site.refused()
        content_type, body = site.too_large(site.max_body)
        channel.transport.write(
            b"%sContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n"
            b"Connection: close\r\n\r\n%s" % (_STATUS_LINE, content_type, len(body), body))
        # Not read any further: the transport stops reading, writes the
        # answer, and closes.
        channel.loseConnection()


class BoundedSite(Site):
    """A Site of :class:`BoundedRequest`: ``max_body``, the largest body it
    reads (bytes); ``limit``, its name in ``stats.limits_hit`` (the node's
    ServerStats, or None); ``too_large(max_body)``, its answer's content
    type and body."""

    requestFactory = BoundedRequest

    def __init__(self, resource, max_body, limit, stats=None, too_large=too_large_text,
                 **kwargs):
        super().__init__(resource, **kwargs)
        self.max_body = max_body
        self.limit = limit
        self.stats = stats
        self.too_large = too_large

    def refused(self):
        """A body over ``max_body`` was refused."""
        if self.stats is not None:
            self.stats.limits_hit[self.limit] += 1
