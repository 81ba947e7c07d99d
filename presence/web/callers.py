"""Who is calling the HTTP API (presence/web/api.py), and the error every
refusal is: a backend (the API key), the demo page (its demo-only key, with
``--demo``) or a user (an OAuth token, introspected: presence/app/oauth.py).
Invalid credentials count toward the node's failed-authentication throttle
(presence/wire/auththrottle.py), shared with the client port; an address
past it is answered 429 before its credentials are looked at.
"""

import hmac
import math

from ..app.oauth import (BadIntrospectionAnswer, IntrospectionBusy, IntrospectionUnavailable,
                         UnusableSubject)
from ..wire.clientip import counted_network

__all__ = ["APIError", "Callers"]


class APIError(Exception):
    def __init__(self, status, kind, message, headers=()):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers


class _Head:
    """The request's headers as presence.clientip expects them."""

    def __init__(self, request):
        self.request = request

    def get_all(self, name):
        values = self.request.requestHeaders.getRawHeaders(name.encode("ascii")) or []
        return [value.decode("latin-1") for value in values]


class Callers:
    """``api_key``: the backends' key (or None); ``demo``: the Demo with
    ``--demo`` (or None); ``introspector``: an OAuth Introspector (or None);
    ``trusted_proxies``: whose X-Forwarded-For names the caller's IP;
    ``throttle``: the node's AuthThrottle; ``clock``: what time it is for
    it; ``max_subject``: the longest account a user token may name."""

    def __init__(self, api_key, demo, introspector, trusted_proxies, throttle, clock,
                 max_subject):
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.demo = demo
        self.introspector = introspector
        self.trusted_proxies = trusted_proxies
        self.throttle = throttle
        self.clock = clock
        self.max_subject = max_subject

    def client_ip(self, request):
        peer = request.getClientAddress()
        host = getattr(peer, "host", None)
        if self.trusted_proxies:
            host, _ = self.trusted_proxies.client_ip(host, _Head(request))
        return host

    async def identify(self, request):
        """``("backend", None)``, ``("demo", None)`` (the demo page's key, only
        with --demo) or ``("user", introspection answer)``. An address that
        gave too many invalid credentials lately (presence/wire/auththrottle.py)
        is answered 429 without its credentials being looked at."""
        ip = self.client_ip(request)
        address = counted_network(ip) if ip else None
        if address is not None:
            wait = self.throttle.throttled(address, self.clock.seconds(), "api")
            if wait:
                seconds = max(1, math.ceil(wait))
                raise APIError(429, "throttled", "too many invalid credentials from %s: try "
                               "again in %d s" % (address, seconds),
                               [(b"retry-after", b"%d" % seconds)])
        header = request.getHeader(b"authorization")
        if header is None:
            raise APIError(401, "unauthorized", "no credentials: send Authorization: Bearer",
                           [(b"www-authenticate", b'Bearer realm="presence"')])
        scheme, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "unauthorized", "credentials must be a Bearer token",
                           [(b"www-authenticate", b'Bearer realm="presence"')])
        if self.api_key is not None and hmac.compare_digest(token.encode("utf-8"),
                                                            self.api_key):
            return "backend", None
        if self.demo is not None and hmac.compare_digest(token.encode("utf-8"),
                                                         self.demo.key.encode("utf-8")):
            return "demo", None
        if self.introspector is not None:
            # The introspector counts and logs its problems (at most once a
            # minute each); an answer here is all that is left to give.
            try:
                answer = await self.introspector.introspect(token, max_subject=self.max_subject)
            except IntrospectionBusy:
                raise APIError(503, "unavailable", "too many tokens are being checked now",
                               [(b"retry-after", b"1")]) from None
            except IntrospectionUnavailable:
                raise APIError(503, "unavailable", "the token could not be checked now",
                               [(b"retry-after", b"1")]) from None
            except BadIntrospectionAnswer as error:
                raise APIError(502, "bad_gateway", "the token could not be checked: the "
                               "authorization server's answer is unusable (%s)"
                               % error.reason) from None
            except UnusableSubject as error:
                raise APIError(403, "forbidden", str(error)) from None
            if answer is not None:
                return "user", answer
        if address is not None:
            self.throttle.failed(address, self.clock.seconds())
        raise APIError(401, "unauthorized", "invalid credentials",
                       [(b"www-authenticate", b'Bearer realm="presence", error="invalid_token"')])

    async def require_backend(self, request):
        """Only backends (the API key) may publish, read presence and
        disconnect."""
        caller, _ = await self.identify(request)
        if caller != "backend":
            raise APIError(403, "forbidden", "this endpoint needs the API key")
