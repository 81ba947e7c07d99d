"""firepresence's lines: one JSON object per line, each ended by LF, in both
directions. JSON escapes a newline inside a string, so a reader can split on
LF and give each line to a plain JSON parser (docs/protocol.md)."""

from ..wire.jsontext import JSONError, decode_json, encode_document

__all__ = ["LineReader", "Document", "BadLine", "encode_line"]


class Document:
    """A line that is a JSON object: ``document`` parsed, ``text`` as sent."""

    __slots__ = ("document", "text")

    def __init__(self, document, text):
        self.document = document
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Document) and (self.document, self.text) == (
            other.document, other.text)

    def __repr__(self):
        return "Document(%r)" % (self.text,)


class BadLine:
    """A line that cannot be accepted; ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason):
        self.reason = reason

    def __eq__(self, other):
        return isinstance(other, BadLine) and self.reason == other.reason

    def __repr__(self):
        return "BadLine(%r)" % (self.reason,)


class LineReader:
    """Splits a byte stream on LF into JSON objects, holding at most
    ``max_line`` bytes of an unfinished line: a longer line is reported once
    as a :class:`BadLine` and the rest of it is skipped up to its LF.

    Empty lines (and lines of only whitespace) are ignored: a client may send
    them to keep a connection alive. A CR before the LF is ignored too."""

    __slots__ = ("max_line", "_buffer", "_skipping")

    def __init__(self, max_line):
        self.max_line = max_line
        self._buffer = b""
        self._skipping = False

    def receive_data(self, data):
        """Return the events the bytes complete, in order."""
        return list(self.lines(data))

    def lines(self, data):
        """The events the bytes complete, in order, one at a time: a line is
        decoded only when it is asked for (a read of a hundred lines held
        back for its session's next turn costs nothing yet). The events of
        one read are taken to the end before the next read's are asked for."""
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line_start, start = start, end + 1
            if self._skipping:
                self._skipping = False
            elif end - line_start > self.max_line:
                yield BadLine("line longer than %d bytes" % self.max_line)
            else:
                event = self._line(data[line_start:end])
                if event is not None:
                    yield event
        rest = len(data) - start
        if rest:
            if self._skipping:
                pass
            elif rest > self.max_line:
                self._skipping = True
                yield BadLine("line longer than %d bytes" % self.max_line)
            else:
                self._buffer = data[start:] if start else data

    @staticmethod
    def _line(line):
        if not line.strip():
            return None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return BadLine("line is not valid UTF-8")
        try:
            document = decode_json(text)
        except JSONError as error:
            return BadLine("line is not JSON" if error.reason == "not JSON"
                           else "line is not JSON Presence takes: %s" % error.reason)
        if not isinstance(document, dict):
            return BadLine("line is not a JSON object")
        return Document(document, text.rstrip("\r"))


def encode_line(document):
    """One JSON object as a line: compact, UTF-8, ended by LF. JSON never
    emits a raw newline outside whitespace, and the encoder adds none (a
    lone surrogate is escaped: presence/wire/jsontext.py)."""
    return encode_document(document) + b"\n"
