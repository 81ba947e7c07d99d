"""The JSON every session and every Redis message speaks: one encoder, one
decoder, and what makes a document Unicode text.

Presence writes JSON compactly (no spaces) and keeps non-ASCII characters as
they are: a message in Japanese is not three times longer on the wire.

JSON lets a string escape a UTF-16 surrogate on its own (``"\\ud800"``);
decoded, that is a Python string with no UTF-8 form, which Redis, another
client or a log line cannot take. Presence refuses such documents where
they come in (a client's message, a backend's request body) with a clear
answer, rather than failing later far from the cause. What it echoes of
one (a pong's id) goes out with every non-ASCII character escaped, which
any JSON reader decodes to the same value.

What comes in is decoded by :func:`decode_json`, which takes only JSON
(RFC 8259): not ``NaN`` or ``Infinity``, which Python's reader accepts and a
browser's ``JSON.parse`` refuses (a message carrying one would be dropped
silently by every browser it reached), and nothing nested deeper than
:data:`MAX_DEPTH`, well below what Python's encoder and decoder can take, so
that no document accepted here fails later on its way out.
"""

import json
import re

__all__ = ["encode_json", "encode_document", "decode_json", "JSONError", "MAX_DEPTH",
           "escapes_lone_surrogate", "MAX_SHOWN", "shown"]

#: Levels of nesting a document may have. Presence's own documents have
#: three or four; a backend's data a few more. Python's decoder fails near
#: a thousand, its encoder earlier: 64 is far from both.
MAX_DEPTH = 64

#: Characters of one text field a record keeps for showing (the dashboard,
#: the close records): an account name, a user agent, an address. What a
#: client or a backend sent may be longer; a record it is shown in is not.
MAX_SHOWN = 256

#: A document as compact JSON text (str); NaN and Infinity are refused
#: (ValueError), never written.
encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                               allow_nan=False).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class JSONError(ValueError):
    """Text that is not a JSON document Presence takes; ``reason`` says why,
    in words a client or a backend can act on."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _refuse_constant(name):
    raise JSONError("NaN and Infinity are not JSON")


def _unique_keys(pairs):
    document = dict(pairs)
    if len(document) != len(pairs):
        raise JSONError("a key is given twice in one object")
    return document


_decode = json.JSONDecoder(parse_constant=_refuse_constant).decode
_decode_unique = json.JSONDecoder(parse_constant=_refuse_constant,
                                  object_pairs_hook=_unique_keys).decode


def _deeper_than(document, limit):
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False


def decode_json(text, unique_keys=False):
    """The document in the JSON ``text``; :class:`JSONError` when it is not
    JSON, holds NaN or Infinity, or is nested deeper than MAX_DEPTH (and,
    with ``unique_keys``, when an object gives a key twice: RFC 8259 4 leaves
    what that means to each reader, so a request that does is refused
    rather than read one way here and another elsewhere)."""
    try:
        document = (_decode_unique if unique_keys else _decode)(text)
    except JSONError:
        raise
    except RecursionError:
        raise JSONError("nested deeper than %d levels" % MAX_DEPTH) from None
    except ValueError:
        raise JSONError("not JSON") from None
    # Only a text with that many brackets can be that deep: the usual
    # message is not walked.
    if isinstance(document, (dict, list)) and \
            text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(document, MAX_DEPTH):
        raise JSONError("nested deeper than %d levels" % MAX_DEPTH)
    return document

# A JSON escape of a UTF-16 surrogate; a valid pair decodes to one
# character, so only a document holding a match needs the full check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def encode_document(document):
    """A document as compact JSON in UTF-8 (bytes). A string holding a lone
    surrogate has no UTF-8 form: such a document is written with every
    non-ASCII character escaped instead."""
    text = encode_json(document)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _encode_ascii(document).encode("ascii")


def shown(value):
    """``value`` as a record keeps it for showing: text cut to
    :data:`MAX_SHOWN` characters, anything else as it is."""
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return value[:MAX_SHOWN - 1] + "\u2026"
    return value


def escapes_lone_surrogate(text, document):
    """Whether ``document``, decoded from the JSON ``text``, holds a lone
    surrogate (cheap for the usual text, which escapes none)."""
    if "\\u" not in text or not _SURROGATE_ESCAPE.search(text):
        return False
    try:
        encode_json(document).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
