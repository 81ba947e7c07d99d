"""Extension negotiation (RFC 6455 sections 9.1 and 4.2.2).

An extension is offered by the client in ``Sec-WebSocket-Extensions``; the
server accepts at most one offer per extension name, and answers with the
parameters that apply. The connection then routes the payload of every
message that carries the extension's RSV bits through it.

Two small interfaces make an extension pluggable: an :class:`ExtensionFactory`
(server configuration; decides on offers) and an :class:`Extension` (one per
connection; transforms message payloads). permessage-deflate (RFC 7692) is one
such pair; with no factory configured no offer is ever accepted and every RSV
bit is a protocol error.
"""

import re

__all__ = [
    "ExtensionError", "Extension", "ExtensionFactory",
    "parse_extension_offers", "format_extension", "negotiate_extensions",
]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
_PARAM = re.compile(r"[ \t]*(%s)[ \t]*(?:=[ \t]*(%s|%s))?[ \t]*" % (_TOKEN, _TOKEN, _QUOTED))
_NAME = re.compile(r"[ \t]*(%s)[ \t]*" % _TOKEN)
_IS_TOKEN = re.compile(r"%s\Z" % _TOKEN)


class ExtensionError(Exception):
    """Raised by an extension when a peer's message breaks its rules; the
    connection fails with ``code`` and ``reason``."""

    def __init__(self, code, reason):
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class Extension:
    """One negotiated extension on one connection."""

    #: A hashable key when this extension's encoding of a message does not
    #: depend on the connection (then one encoding serves every connection
    #: with the same key: see PreparedMessage); ``None`` otherwise.
    shared_encoding = None

    #: Extension name as it appears in ``Sec-WebSocket-Extensions``.
    name = ""
    #: RSV bits (``frames.RSV1`` ...) the extension may set on the first frame
    #: of a message.
    rsv = 0

    def response_params(self):
        """The ``(name, value-or-None)`` parameters of the server's answer."""
        return []

    def decode(self, data, end_of_message, limit):
        """Transform one piece of the payload of a message whose first frame
        carried this extension's RSV bits (after unmasking). ``limit`` is the
        number of bytes the message may still grow by; raise
        :class:`ExtensionError` rather than exceed it."""
        raise NotImplementedError

    def encode(self, payload):
        """Transform an outgoing message payload: return ``(rsv, payload)``."""
        raise NotImplementedError


class ExtensionFactory:
    """Server-side configuration of one extension."""

    name = ""

    def accept(self, params):
        """Given one offer's parameters (a list of ``(name, value-or-None)``),
        return an :class:`Extension` to use, or ``None`` to decline."""
        raise NotImplementedError


def _unquote(value):
    if value is None or not value.startswith('"'):
        return value
    inner = re.sub(r"\\(.)", r"\1", value[1:-1])
    # 9.1: a quoted value must, once unescaped, conform to the token ABNF.
    if not _IS_TOKEN.match(inner):
        raise ValueError("quoted parameter value is not a token: %r" % value)
    return inner


def parse_extension_offers(values):
    """Parse every ``Sec-WebSocket-Extensions`` header value (9.1 grammar)
    into a list of ``(name, [(param, value-or-None), ...])`` in the client's
    order. Raise ``ValueError`` on anything the grammar does not allow."""
    offers = []
    for value in values:
        pos = 0
        end = len(value)
        while pos < end:
            match = _NAME.match(value, pos)
            if match is None:
                raise ValueError("malformed extension name in %r" % value)
            name = match.group(1).lower()
            pos = match.end()
            params = []
            while pos < end and value[pos] == ";":
                match = _PARAM.match(value, pos + 1)
                if match is None:
                    raise ValueError("malformed extension parameter in %r" % value)
                params.append((match.group(1).lower(), _unquote(match.group(2))))
                pos = match.end()
            if pos < end:
                if value[pos] != ",":
                    raise ValueError("unexpected %r in extension list" % value[pos])
                pos += 1
                # tolerate empty list elements (RFC 9110 5.6.1)
                while pos < end and value[pos] in " \t,":
                    pos += 1
            offers.append((name, params))
    return offers


def format_extension(name, params):
    """One element of the server's ``Sec-WebSocket-Extensions`` answer."""
    parts = [name]
    for param, value in params:
        parts.append(param if value is None else "%s=%s" % (param, value))
    return "; ".join(parts)


def negotiate_extensions(values, factories):
    """Accept at most one offer per configured extension, in the client's
    order. Returns ``(header value or None, [Extension, ...])``.

    A header that does not parse is declined as a whole: the connection
    proceeds without extensions (an extension can only ever be enabled by
    the server's answer, so declining is always safe)."""
    if not factories or not values:
        return None, []
    try:
        offers = parse_extension_offers(values)
    except ValueError:
        return None, []
    by_name = {factory.name: factory for factory in factories}
    accepted = []
    used_rsv = 0
    for name, params in offers:
        factory = by_name.get(name)
        if factory is None or any(ext.name == name for ext in accepted):
            continue
        extension = factory.accept(params)
        if extension is None or extension.rsv & used_rsv:
            continue
        used_rsv |= extension.rsv
        accepted.append(extension)
    if not accepted:
        return None, []
    header = ", ".join(format_extension(ext.name, ext.response_params()) for ext in accepted)
    return header, accepted
