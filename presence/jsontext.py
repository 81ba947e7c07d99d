"""JSON that is Unicode text.

JSON lets a string escape a UTF-16 surrogate on its own (``"\\ud800"``);
decoded, that is a Python string with no UTF-8 form, which Redis, another
client or a log line cannot take. Presence refuses such documents where
they come in (a client's message, a backend's request body) with a clear
answer, rather than failing later far from the cause.
"""

import json
import re

__all__ = ["escapes_lone_surrogate"]

# A JSON escape of a UTF-16 surrogate; a valid pair decodes to one
# character, so only a document holding a match needs the full check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def escapes_lone_surrogate(text, document):
    """Whether ``document``, decoded from the JSON ``text``, holds a lone
    surrogate (cheap for the usual text, which escapes none)."""
    if "\\u" not in text or not _SURROGATE_ESCAPE.search(text):
        return False
    try:
        _encode(document).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
