"""A raw SSE client on asyncio streams, as small as the protocol allows
(docs/protocol.md, "SSE"): a stream opened with ``GET /sse``, its events read
(a proxy may send the response chunked), and POSTs to the welcome's path on
connections of their own; and the bytes of both, for tests on
StringTransports."""

import asyncio
import json

__all__ = ["SSEStream", "post", "post_request", "event_documents"]


async def _head(reader):
    status = await reader.readline()
    fields = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    return status, fields


class SSEStream:
    """One stream: ``status`` and ``fields`` of its answer, then
    :meth:`next_event` (``(event name, JSON data)``)."""

    def __init__(self, reader, writer, status, fields):
        self.reader, self.writer = reader, writer
        self.status, self.fields = status, fields
        self._chunked = fields.get("transfer-encoding", "").lower() == "chunked"
        self._buffer = b""
        self.events = []

    @classmethod
    async def open(cls, port, path, host="127.0.0.1", headers=(), ssl=None, prefix=b"",
                   local_addr=None):
        """``prefix``: bytes before the request (a PROXY protocol header);
        ``local_addr``: the client's ``(address, port)``, as for asyncio."""
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl, local_addr=local_addr)
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (host, port),
                 "Accept: text/event-stream", *headers]
        writer.write(prefix + ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, fields = await _head(reader)
        return cls(reader, writer, status, fields)

    async def _more(self):
        if not self._chunked:
            data = await self.reader.read(65536)
        else:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            data = data[:-2]
            if size == 0:
                data = b""
        if not data:
            raise EOFError("the stream ended")
        self._buffer += data.replace(b"\r\n", b"\n")

    async def next_event(self, timeout=5.0):
        """The next event with data: ``(name, document)``."""
        while True:
            while b"\n\n" not in self._buffer:
                await asyncio.wait_for(self._more(), timeout)
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            name, data = "message", []
            for line in block.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    data.append(line[6:])
            if data:
                event = (name, json.loads(b"\n".join(data)))
                self.events.append(event)
                return event

    async def next_of(self, kind, timeout=5.0):
        """The next event whose document's type is ``kind``."""
        while True:
            name, document = await self.next_event(timeout)
            if document.get("type") == kind:
                return document

    def close(self):
        self.writer.close()


async def post(port, path, document, host="127.0.0.1", headers=(), ssl=None, prefix=b"",
               local_addr=None):
    """POST ``document`` (JSON) to ``path``: ``(status line, body)``."""
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl, local_addr=local_addr)
    body = json.dumps(document).encode("utf-8")
    lines = ["POST %s HTTP/1.1" % path, "Host: %s:%d" % (host, port),
             "Content-Type: text/plain", "Content-Length: %d" % len(body), "Connection: close",
             *headers]
    writer.write(prefix + ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    try:
        status, fields = await _head(reader)
        length = int(fields.get("content-length", "0") or 0)
        answer = await reader.readexactly(length) if length else b""
        return status, answer
    finally:
        writer.close()


def post_request(path, body, extra=b"", version=b"1.1"):
    """The bytes of a POST of ``body`` to ``path`` (``extra``: header lines)."""
    return (b"POST " + path.encode() + b" HTTP/" + version + b"\r\nHost: presence.example\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n" % len(body) + extra
            + b"\r\n" + body)


def event_documents(data):
    """The JSON of every data event in ``data`` (comments and padding skipped)."""
    found = []
    for block in data.split(b"\n\n"):
        lines = [line for line in block.split(b"\n") if line.startswith(b"data: ")]
        if lines:
            found.append(json.loads(b"\n".join(line[6:] for line in lines)))
    return found
