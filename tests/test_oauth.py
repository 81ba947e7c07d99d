"""OAuth token introspection (presence/app/oauth.py) as the HTTP API uses
it: whatever the authorization server answers, and however many tokens
clients send, the API answers with a status and a body, counts it, and
logs each kind of problem in words at most once a minute.

A real identity provider in-process (twisted.web on a loopback port) whose
answer to each token the test writes, the API on a real port over a real
Redis; the introspector's time (its timeout, the inactive tokens it
remembers, its questions a second) on a Clock the test advances."""

import hashlib
import json

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.web import resource, server

from presence.app.oauth import MAX_ANSWER, Introspector

from .helpers.api import CLIENT_ID, CLIENT_SECRET, APITestCase
from .helpers.logs import LoggedLines
from .helpers.waiting import run, until

DEEP = "[" * 100000 + "]" * 100000
#: Deeper than Python's decoder can go, and within MAX_ANSWER.
DEEP_WITHIN_SIZE = "[" * 30000 + "]" * 30000

#: The longest account a ticket may have (docs/api.md, POST /tickets).
LONGEST_ACCOUNT = 256

#: (token, the identity provider's answer, what the API's 502 says of it).
NOT_RFC_7662 = [
    ("not-json", b"<html>", "not JSON"),
    ("deep", ('{"active": true, "sub": ' + DEEP_WITHIN_SIZE + "}").encode(),
     "not JSON Presence takes: nested deeper than 64 levels"),
    ("not-utf-8", b'{"active": true, "sub": "\xff"}', "not UTF-8"),
    ("nan", b'{"active": true, "sub": "user-7", "exp": NaN}', "NaN"),
    ("a-list", b"[true]", "boolean 'active'"),
    ("no-active", b'{"sub": "user-7"}', "boolean 'active'"),
    ("text-active", b'{"active": "true", "sub": "user-7"}', "boolean 'active'"),
    ("number-sub", b'{"active": true, "sub": 7}', "'sub' is not a string"),
]


def answer_of_size(size):
    """An active token's answer for ``user-7``, padded to ``size`` bytes."""
    empty = json.dumps({"active": True, "sub": "user-7", "pad": ""}).encode("utf-8")
    return json.dumps({"active": True, "sub": "user-7",
                       "pad": "x" * (size - len(empty))}).encode("utf-8")


class IdentityProvider(resource.Resource):
    """An RFC 7662 endpoint: ``answers[token]`` is the body of its 200, or a
    callable given the request (returning the body, or NOT_DONE_YET); other
    tokens are inactive. ``asked``: the tokens asked about, in order;
    ``held``: the requests :meth:`hold` left unanswered; ``dropped``: those
    of them whose connection Presence closed."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.answers = {}
        self.asked = []
        self.held = []
        self.dropped = []

    def render_POST(self, request):
        token = request.args.get(b"token", [b""])[0].decode("utf-8")
        self.asked.append(token)
        request.setHeader(b"content-type", b"application/json")
        answer = self.answers.get(token, b'{"active": false}')
        return answer(request) if callable(answer) else answer

    def hold(self, request):
        self.held.append(request)
        request.notifyFinish().addErrback(lambda _: self.dropped.append(request))
        return server.NOT_DONE_YET

    def trickle(self, request):
        """Announce 100 bytes, send 11, and send no more."""
        request.setHeader(b"content-length", b"100")
        request.write(b'{"active": ')
        return self.hold(request)


class OAuthTestCase(APITestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.idp = IdentityProvider()
        _, base = self.serve(self.idp)
        self.idp_url = base + "/introspect"
        self.logged = LoggedLines().attach(self)
        self.addCleanup(self.assertNoTraceback)

    def assertNoTraceback(self):
        self.assertEqual(self.logged.failures, [])

    def api_with(self, **options):
        """A PresenceAPI asking this test's identity provider: ``(its URL,
        its Introspector)``; ``options`` for the Introspector."""
        options.setdefault("timeout", 2.0)
        introspector = Introspector(self.idp_url, CLIENT_ID, CLIENT_SECRET, pool=self.pool,
                                    **options)
        return self.serve_api(introspector=introspector), introspector

    @defer.inlineCallbacks
    def assertNoTicketsIssued(self):
        self.assertEqual((yield self.engine.execute("KEYS", "*")), [])


class BadAnswerTests(OAuthTestCase):
    @defer.inlineCallbacks
    def test_an_answer_nested_100000_deep_is_502_counted_and_logged_once(self):
        self.idp.answers["deep"] = ('{"active": true, "sub": ' + DEEP + "}").encode("utf-8")
        url, introspector = self.api_with()

        for _ in range(2):
            yield self.assertStatus(502, "bad_gateway",
                                    self.post_ticket({}, token="deep", url=url))

        self.assertEqual(introspector.outcomes["bad_answer"], 2)
        self.assertEqual(len(self.logged.containing(
            "OAuth introspection's answer is unusable: larger than %d bytes" % MAX_ANSWER)), 1)
        yield self.assertNoTicketsIssued()

    @defer.inlineCallbacks
    def test_an_answer_over_max_answer_bytes_is_502_and_one_of_max_answer_bytes_is_read(self):
        self.idp.answers["huge"] = answer_of_size(MAX_ANSWER + 1)
        self.idp.answers["largest"] = answer_of_size(MAX_ANSWER)
        url, _ = self.api_with()

        _, _, body = yield self.assertStatus(502, "bad_gateway",
                                             self.post_ticket({}, token="huge", url=url))
        self.assertIn("larger than %d bytes" % MAX_ANSWER, body["message"])
        status, _, body = yield self.post_ticket({}, token="largest", url=url)
        self.assertEqual(status, 201, body)

    @defer.inlineCallbacks
    def test_an_answer_that_is_not_rfc_7662_is_502(self):
        for token, answer, _ in NOT_RFC_7662:
            self.idp.answers[token] = answer
        url, introspector = self.api_with()

        for token, _, reason in NOT_RFC_7662:
            _, _, body = yield self.assertStatus(502, "bad_gateway",
                                                 self.post_ticket({}, token=token, url=url))
            self.assertIn(reason, body["message"])
        self.assertEqual(introspector.outcomes["bad_answer"], len(NOT_RFC_7662))
        self.assertEqual(len(self.logged.containing("answer is unusable")), 1)
        yield self.assertNoTicketsIssued()


class SubjectTests(OAuthTestCase):
    @defer.inlineCallbacks
    def test_a_subject_longer_than_an_account_is_403_and_gets_no_ticket(self):
        for length in (LONGEST_ACCOUNT + 1, 60000):
            self.idp.answers["long-%d" % length] = json.dumps(
                {"active": True, "sub": "u" * length}).encode()
        url, introspector = self.api_with()

        for length in (LONGEST_ACCOUNT + 1, 60000):
            _, _, body = yield self.assertStatus(
                403, "forbidden", self.post_ticket({}, token="long-%d" % length, url=url))
            self.assertEqual(body["message"], "the token's subject is %d characters long, "
                             "longer than an account may be (%d)" % (length, LONGEST_ACCOUNT))
        yield self.assertNoTicketsIssued()
        self.assertEqual(introspector.outcomes["subject_too_long"], 2)
        self.assertEqual(len(self.logged.containing("an active OAuth token was refused")), 1)

    @defer.inlineCallbacks
    def test_a_subject_of_100000_characters_gets_no_ticket(self):
        self.idp.answers["longer"] = json.dumps({"active": True, "sub": "u" * 100000}).encode()
        url, _ = self.api_with()

        yield self.assertStatus(502, "bad_gateway",  # an answer over MAX_ANSWER bytes
                                self.post_ticket({}, token="longer", url=url))
        yield self.assertNoTicketsIssued()

    @defer.inlineCallbacks
    def test_a_subject_as_long_as_the_longest_account_gets_its_ticket(self):
        subject = "u" * LONGEST_ACCOUNT
        self.idp.answers["longest"] = json.dumps({"active": True, "sub": subject}).encode()
        url, _ = self.api_with()

        status, _, body = yield self.post_ticket({}, token="longest", url=url)
        self.assertEqual(status, 201, body)
        self.assertEqual((yield self.tickets.redeem(body["ticket"])).account, subject)


class TimeoutTests(OAuthTestCase):
    @defer.inlineCallbacks
    def check_a_late_answer_is_503_and_logged_in_words(self, answer):
        self.idp.answers["slow"] = answer
        clock = Clock()
        url, introspector = self.api_with(clock=clock, timeout=2.0)

        answered = self.post_ticket({}, token="slow", url=url)
        yield run(until(lambda: self.idp.held, 10, "the question at the identity provider"))
        clock.advance(1.9)
        self.assertFalse(answered.called)
        clock.advance(0.1)
        _, headers, _ = yield self.assertStatus(503, "unavailable", answered)

        self.assertEqual(headers[b"retry-after"], [b"1"])
        self.assertEqual(introspector.outcomes["timeout"], 1)
        self.assertEqual(len(self.logged.containing(
            "OAuth introspection did not answer within 2 s")), 1)
        self.assertEqual(self.logged.containing("CancelledError"), [])
        # The question is given up, its connection closed.
        yield run(until(lambda: self.idp.dropped, 10, "the question's connection closed"))
        self.assertEqual(introspector.in_flight, 0)

    def test_no_answer_within_the_timeout_is_503_and_logged_in_words(self):
        return self.check_a_late_answer_is_503_and_logged_in_words(self.idp.hold)

    def test_an_answer_whose_body_stops_coming_is_a_timeout_too(self):
        return self.check_a_late_answer_is_503_and_logged_in_words(self.idp.trickle)


class InactiveTokenTests(OAuthTestCase):
    @defer.inlineCallbacks
    def test_a_wrong_token_sent_again_is_not_asked_about_again(self):
        url, _ = self.api_with()
        for _ in range(3):
            yield self.assertStatus(401, "unauthorized",
                                    self.post_ticket({}, token="wrong", url=url))
        self.assertEqual(self.idp.asked, ["wrong"])

    @defer.inlineCallbacks
    def test_a_wrong_token_is_asked_about_again_after_thirty_seconds(self):
        clock = Clock()
        url, introspector = self.api_with(clock=clock)

        yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token="wrong", url=url))
        clock.advance(29.9)
        yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token="wrong", url=url))
        self.assertEqual(self.idp.asked, ["wrong"])
        clock.advance(0.1)
        yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token="wrong", url=url))
        self.assertEqual(self.idp.asked, ["wrong", "wrong"])
        self.assertEqual((introspector.outcomes["inactive"],
                          introspector.outcomes["inactive_cached"]), (2, 1))

    @defer.inlineCallbacks
    def test_the_wrong_tokens_are_remembered_by_their_hash_and_at_most_the_tables_size(self):
        url, introspector = self.api_with(negative_cache_size=3)
        tokens = ["wrong-%d" % number for number in range(5)]
        for token in tokens:
            yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token=token, url=url))

        self.assertEqual(list(introspector.inactive),
                         [hashlib.sha256(token.encode()).digest() for token in tokens[2:]])
        # The oldest were forgotten first: asked about again; the newest not.
        for token in (tokens[0], tokens[4]):
            yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token=token, url=url))
        self.assertEqual(self.idp.asked, tokens + [tokens[0]])

    @defer.inlineCallbacks
    def test_forgotten_tokens_leave_the_table_as_the_clock_passes(self):
        clock = Clock()
        url, introspector = self.api_with(clock=clock)
        for token in ("wrong-1", "wrong-2", "wrong-3"):
            yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token=token, url=url))
        clock.advance(30)
        yield self.assertStatus(401, "unauthorized",
                                self.post_ticket({}, token="wrong-4", url=url))
        self.assertEqual(list(introspector.inactive),
                         [hashlib.sha256(b"wrong-4").digest()])

    @defer.inlineCallbacks
    def test_an_active_token_is_asked_about_every_time(self):
        self.idp.answers["good"] = b'{"active": true, "sub": "user-7"}'
        url, _ = self.api_with()
        for _ in range(2):
            status, _, body = yield self.post_ticket({}, token="good", url=url)
            self.assertEqual(status, 201, body)
        self.assertEqual(self.idp.asked, ["good", "good"])


class RateTests(OAuthTestCase):
    @defer.inlineCallbacks
    def test_past_the_questions_under_way_a_token_is_503_with_retry_after(self):
        self.idp.answers["slow"] = self.idp.hold
        url, introspector = self.api_with(max_in_flight=1)

        first = self.post_ticket({}, token="slow", url=url)
        yield run(until(lambda: self.idp.held, 10, "the first question at the identity provider"))
        _, headers, body = yield self.assertStatus(
            503, "unavailable", self.post_ticket({}, token="another", url=url))
        self.assertEqual(headers[b"retry-after"], [b"1"])
        self.assertEqual(body["message"], "too many tokens are being checked now")
        self.assertEqual(self.idp.asked, ["slow"])

        request = self.idp.held[0]
        request.write(b'{"active": false}')
        request.finish()
        yield self.assertStatus(401, "unauthorized", first)
        yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token="another",
                                                                      url=url))
        self.assertEqual(introspector.outcomes["busy"], 1)
        self.assertEqual(len(self.logged.containing("OAuth introspection busy")), 1)

    @defer.inlineCallbacks
    def test_past_the_questions_a_second_a_token_is_503_until_the_allowance_is_back(self):
        clock = Clock()
        url, introspector = self.api_with(clock=clock, max_per_second=2)

        for token in ("wrong-1", "wrong-2"):
            yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token=token, url=url))
        for _ in range(3):
            _, headers, _ = yield self.assertStatus(
                503, "unavailable", self.post_ticket({}, token="wrong-3", url=url))
            self.assertEqual(headers[b"retry-after"], [b"1"])
        # A token already known to be wrong costs no question.
        yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token="wrong-1",
                                                                      url=url))
        self.assertEqual(self.idp.asked, ["wrong-1", "wrong-2"])

        clock.advance(0.5)  # one question's worth at two a second
        yield self.assertStatus(401, "unauthorized", self.post_ticket({}, token="wrong-3",
                                                                      url=url))
        self.assertEqual(self.idp.asked, ["wrong-1", "wrong-2", "wrong-3"])
        self.assertEqual(introspector.outcomes["busy"], 3)

        # Logged once a minute, with how many went unreported.
        self.assertEqual(len(self.logged.containing("OAuth introspection busy")), 1)
        clock.advance(60)
        for token in ("wrong-4", "wrong-5", "wrong-6"):
            yield self.post_ticket({}, token=token, url=url)
        self.assertEqual(len(self.logged.containing(
            "more than 2 questions a second; tokens answered 503 (and 2 more since the last "
            "report)")), 1)
