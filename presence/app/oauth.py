"""OAuth 2.0 token introspection (RFC 7662), for users who ask for their own
ticket with the access token the web service gave them.

Presence does not implement OAuth: it asks the authorization server whether
a token is active and whom it belongs to (``sub``), with the client
credentials it was given (HTTP Basic, RFC 7662 section 2.1), through treq.

Whoever can reach the API can send any token, so what this costs is
bounded:

- the server's answer is read within ``timeout`` seconds (the connection,
  the answer and its body together) and only up to :data:`MAX_ANSWER`
  bytes, and decoded by the one JSON decoder (presence/wire/jsontext.py);
  an answer Presence cannot use is :class:`BadIntrospectionAnswer`, never
  an exception of the decoder's;
- a token the server called inactive is not asked about again for
  :data:`NEGATIVE_TTL` seconds: a client retrying a wrong token costs the
  server one question, not one per retry;
- at most :data:`MAX_IN_FLIGHT` questions are under way at once and
  :data:`MAX_PER_SECOND` are asked a second (in bursts of as many); past
  either the token is not asked about (:class:`IntrospectionBusy`), so a
  flood of made-up tokens reaches the server at a known rate.

Every outcome is counted (:attr:`Introspector.outcomes`); every problem is
logged in words, each kind at most once a minute (presence/wire/throttle.py).
"""

import collections
import hashlib

import treq
from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from ..wire.jsontext import JSONError, decode_json
from ..wire.throttle import LogThrottle

__all__ = ["Introspector", "IntrospectionUnavailable", "IntrospectionBusy",
           "BadIntrospectionAnswer", "UnusableSubject", "MAX_ANSWER", "NEGATIVE_TTL",
           "NEGATIVE_CACHE_SIZE", "MAX_IN_FLIGHT", "MAX_PER_SECOND"]

log = Logger()

#: Bytes of an introspection answer read at most. An RFC 7662 answer is a
#: few hundred bytes (a few kilobytes with many scopes or claims); more is
#: not an answer Presence can use, and is not kept in memory.
MAX_ANSWER = 64 * 1024
#: Seconds a token the server called inactive is answered 401 without
#: asking again. A revoked or expired token stays so; a token issued since
#: is another token, so this delays nobody legitimate.
NEGATIVE_TTL = 30.0
#: Inactive tokens remembered at most (each as its SHA-256, 32 bytes, and an
#: expiry: about 150 bytes an entry, 1.5 MB in all). Past it the oldest is
#: forgotten first, and costs one question more if it comes again.
NEGATIVE_CACHE_SIZE = 10_000
#: Questions to the server under way at once: a slow server holds at most
#: this many connections of the node (and of the server) open.
MAX_IN_FLIGHT = 32
#: Questions to the server a second, on average (a token bucket of as many):
#: far above users asking for their own tickets, well below a flood.
MAX_PER_SECOND = 50


class IntrospectionUnavailable(Exception):
    """The introspection endpoint could not be asked: down, refusing
    Presence's credentials, an HTTP error, or no answer in time."""


class IntrospectionBusy(IntrospectionUnavailable):
    """Too many introspections under way or this second: the token was not
    asked about."""


class BadIntrospectionAnswer(Exception):
    """The endpoint answered, but not with an RFC 7662 answer Presence can
    use; ``reason`` says why."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class UnusableSubject(Exception):
    """The token is active, but its subject (``sub``) cannot be an account:
    longer than the API's limit."""


class _BoundedBody(Protocol):
    """A response body of at most ``limit`` bytes: ``done`` fires with it,
    or fails with BadIntrospectionAnswer as soon as more comes (and the
    connection is dropped: nothing more is read)."""

    def __init__(self, limit):
        self.limit = limit
        self.size = 0
        self.parts = []
        self.done = defer.Deferred(self._cancelled)

    def dataReceived(self, data):
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.parts = []
            self.transport.stopProducing()
            self.done.errback(BadIntrospectionAnswer("larger than %d bytes" % self.limit))
            return
        self.parts.append(data)

    def connectionLost(self, reason):
        if self.done.called:
            return
        # PotentialDataLoss: a body without a length, ended by the close.
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)

    def _cancelled(self, _):
        # The timeout: a body still coming holds the connection otherwise.
        self.transport.stopProducing()


def _token_key(token):
    """What the inactive tokens are remembered by: not the token (whoever
    reads the node's memory learns nothing usable), and 32 bytes however
    long the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Introspector:
    """``clock`` (the reactor by default) times the answers, the inactive
    tokens and the rate of questions; the bounds default to the module's."""

    def __init__(self, url, client_id=None, client_secret=None, timeout=5.0, pool=None,
                 reactor=None, clock=None, negative_ttl=NEGATIVE_TTL,
                 negative_cache_size=NEGATIVE_CACHE_SIZE, max_in_flight=MAX_IN_FLIGHT,
                 max_per_second=MAX_PER_SECOND):
        if reactor is None:
            from twisted.internet import reactor
        self.url = url
        self.auth = (client_id, client_secret or "") if client_id else None
        self.timeout = timeout
        self.pool = pool
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.negative_ttl = negative_ttl
        self.negative_cache_size = negative_cache_size
        self.max_in_flight = max_in_flight
        self.max_per_second = max_per_second
        #: Inactive tokens, by _token_key: when each is forgotten. In order
        #: of that time (one TTL for all), so the expired are at the front.
        self.inactive = collections.OrderedDict()
        #: Questions under way.
        self.in_flight = 0
        self._allowance = float(max_per_second)
        self._allowance_at = self.clock.seconds()
        #: Every outcome, by kind: active, inactive, inactive_cached,
        #: no_subject, subject_too_long, busy, timeout, unreachable,
        #: http_error, bad_answer.
        self.outcomes = collections.Counter()
        self._throttles = {}

    def introspect(self, token, max_subject=None):
        """Fires with the introspection answer (a dict) when the token is
        active and names a subject, ``None`` when it is inactive or names
        none. Fails with IntrospectionBusy, IntrospectionUnavailable,
        BadIntrospectionAnswer, or UnusableSubject when the subject is
        longer than ``max_subject`` characters."""
        return defer.ensureDeferred(self._introspect(token, max_subject))

    async def _introspect(self, token, max_subject):
        key = _token_key(token)
        now = self.clock.seconds()
        forgotten_at = self.inactive.get(key)
        if forgotten_at is not None and forgotten_at > now:
            self.outcomes["inactive_cached"] += 1
            return None
        self._take_a_turn(now)
        self.in_flight += 1
        try:
            answer = await self._answer(token)
        finally:
            self.in_flight -= 1
        if not answer["active"]:
            self._remember_inactive(key)
            self.outcomes["inactive"] += 1
            return None
        subject = answer.get("sub")
        if subject is None or subject == "":
            self.outcomes["no_subject"] += 1
            return None
        if max_subject is not None and len(subject) > max_subject:
            why = ("the token's subject is %d characters long, longer than an account "
                   "may be (%d)" % (len(subject), max_subject))
            self._problem("subject_too_long", "presence: an active OAuth token was refused: "
                          "{why}", why=why)
            raise UnusableSubject(why)
        self.outcomes["active"] += 1
        return answer

    # --------------------------------------------------------- the bounds

    def _take_a_turn(self, now):
        """Count a question against the bounds, or refuse it (busy)."""
        if self.in_flight >= self.max_in_flight:
            self._problem("busy", "presence: OAuth introspection busy: {count} questions "
                          "under way, the most at once; tokens answered 503",
                          count=self.in_flight)
            raise IntrospectionBusy("%d introspections under way" % self.in_flight)
        elapsed = max(0.0, now - self._allowance_at)  # the wall clock may step back
        self._allowance = min(float(self.max_per_second),
                              self._allowance + elapsed * self.max_per_second)
        self._allowance_at = now
        if self._allowance < 1:
            self._problem("busy", "presence: OAuth introspection busy: more than {rate} "
                          "questions a second; tokens answered 503", rate=self.max_per_second)
            raise IntrospectionBusy("more than %d introspections a second"
                                    % self.max_per_second)
        self._allowance -= 1

    def _remember_inactive(self, key):
        now = self.clock.seconds()
        inactive = self.inactive
        inactive.pop(key, None)  # to the back, with its new time
        while inactive:
            oldest = next(iter(inactive))
            if inactive[oldest] > now and len(inactive) < self.negative_cache_size:
                break
            del inactive[oldest]
        inactive[key] = now + self.negative_ttl

    # --------------------------------------------------------- the question

    async def _answer(self, token):
        """The server's RFC 7662 answer (a dict with a boolean ``active``),
        within ``timeout`` seconds."""
        asking = defer.ensureDeferred(self._ask(token))
        # Not addTimeout: a request cancelled while it waits for its answer
        # fails with treq's ResponseNeverReceived, not CancelledError, and
        # was logged as a bare "[<Failure CancelledError>]".
        late = []

        def give_up():
            late.append(True)
            asking.cancel()

        timer = self.clock.callLater(self.timeout, give_up)
        try:
            code, body = await asking
        except BadIntrospectionAnswer as error:
            raise self._bad_answer(error.reason) from None
        except Exception as error:
            if late:
                self._problem("timeout", "presence: OAuth introspection did not answer within "
                              "{timeout:g} s", timeout=self.timeout)
                raise IntrospectionUnavailable("no answer within %g s" % self.timeout) from None
            self._problem("unreachable", "presence: OAuth introspection could not be asked: "
                          "{error}", error=_in_words(error))
            raise IntrospectionUnavailable(_in_words(error)) from None
        finally:
            if timer.active():
                timer.cancel()
        if code != 200:
            self._problem("http_error", "presence: OAuth introspection answered HTTP {code}",
                          code=code)
            raise IntrospectionUnavailable("introspection answered %d" % code)
        try:
            answer = decode_json(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise self._bad_answer("not UTF-8") from None
        except JSONError as error:
            raise self._bad_answer("not JSON Presence takes: %s" % error.reason) from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise self._bad_answer("not an object with a boolean 'active'")
        if answer["active"] and not isinstance(answer.get("sub", ""), str):
            raise self._bad_answer("'sub' is not a string")
        return answer

    async def _ask(self, token):
        """``(HTTP status, body)`` of the server's answer."""
        response = await treq.post(
            self.url, data={"token": token, "token_type_hint": "access_token"},
            auth=self.auth, pool=self.pool, headers={b"Accept": [b"application/json"]})
        # Read (bounded) whatever the status, so that the connection is
        # done with either way.
        body = _BoundedBody(MAX_ANSWER)
        response.deliverBody(body)
        return response.code, await body.done

    # ------------------------------------------------------------ reporting

    def _bad_answer(self, reason):
        """Count and report an unusable answer: the exception to raise."""
        self._problem("bad_answer", "presence: OAuth introspection's answer is unusable: "
                      "{reason}", reason=reason)
        return BadIntrospectionAnswer(reason)

    def _problem(self, outcome, text, **fields):
        """Count ``outcome``; log ``text`` at most once a minute per outcome."""
        self.outcomes[outcome] += 1
        throttle = self._throttles.setdefault(outcome, LogThrottle())
        if not throttle.due(self.clock.seconds()):
            return
        more = (" (and %d more since the last report)" % throttle.suppressed
                if throttle.suppressed else "")
        log.warn(text + "{more}", more=more, **fields)


def _in_words(error):
    """A failure to connect, in words: treq's are lists of Failures (a
    ResponseNeverReceived) whose own text is a repr."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(reason.getErrorMessage() for reason in reasons)
    return str(error) or type(error).__name__
