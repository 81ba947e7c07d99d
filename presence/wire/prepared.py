"""Something written to many sessions, encoded once per protocol form.

A channel message fanned out to 10,000 sessions, or a heartbeat round's ping,
is the same bytes for every session that speaks the same protocol with the
same parameters: a plain WebSocket frame, the same frame compressed once per
permessage-deflate parameter set, a firepresence line. Each protocol core
encodes its own form the first time a session of its kind asks, and caches
it here under a key of its own; every other session of that kind reuses it.
"""

__all__ = ["Prepared", "PreparedMessage"]


class Prepared:
    """The cache of encoded forms: ``forms`` maps the key a protocol core
    chose to the form it made (a core looks its key up, and encodes only
    when it is missing: on the fan-out path that lookup is all it costs)."""

    __slots__ = ("forms",)

    def __init__(self):
        self.forms = {}


class PreparedMessage(Prepared):
    """A data message for many sessions (fan-out): ``payload`` is its bytes
    (UTF-8 text when ``is_text``, else binary data)."""

    __slots__ = ("payload", "is_text")

    def __init__(self, payload, is_text=True):
        super().__init__()
        self.payload = payload
        self.is_text = is_text

    @classmethod
    def text(cls, text):
        return cls(text.encode("utf-8"), True)

    @classmethod
    def binary(cls, data):
        return cls(data, False)
