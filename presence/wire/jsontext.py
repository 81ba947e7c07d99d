"""The JSON every session and every Redis message speaks: one encoder, and
what makes a document Unicode text.

Presence writes JSON compactly (no spaces) and keeps non-ASCII characters as
they are: a message in Japanese is not three times longer on the wire.

JSON lets a string escape a UTF-16 surrogate on its own (``"\\ud800"``);
decoded, that is a Python string with no UTF-8 form, which Redis, another
client or a log line cannot take. Presence refuses such documents where
they come in (a client's message, a backend's request body) with a clear
answer, rather than failing later far from the cause. What it echoes of
one (a pong's id) goes out with every non-ASCII character escaped, which
any JSON reader decodes to the same value.
"""

import json
import re

__all__ = ["encode_json", "encode_document", "escapes_lone_surrogate", "MAX_SHOWN",
           "shown"]

#: Characters of one text field a record keeps for showing (the dashboard,
#: the close records): an account name, a user agent, an address. What a
#: client or a backend sent may be longer; a record it is shown in is not.
MAX_SHOWN = 256

#: A document as compact JSON text (str).
encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":")).encode

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
