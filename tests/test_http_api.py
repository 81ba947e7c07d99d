"""The HTTP API (web.api.PresenceAPI) on a real loopback port, over a real
Redis, asked by treq and by presence.client.PresenceClient; OAuth tokens
checked by a small RFC 7662 introspection server on another port."""

import base64
import json
import signal
import time

from twisted.internet import defer

from presence.app.oauth import Introspector
from presence.client import PresenceAPIError, PresenceClient, PresenceUnavailable
from presence.hub.channels import PUBLISH_ID_TTL
from presence.web.api import MAX_BODY
from presence.websocket.frames import OP_TEXT
from presence.wire.clientip import TrustedProxies

from .helpers.api import API_KEY, CLIENT_ID, APITestCase
from .helpers.framing import client_frame
from .helpers.hubs import HubTestCase, documents
from .helpers.redis import reconnected
from .helpers.waiting import run, until


class IssueTicketTests(APITestCase):
    @defer.inlineCallbacks
    def test_a_backend_gets_201_with_ticket_and_expires_in_and_the_ticket_redeems_to_the_request(
            self):
        status, headers, body = yield self.post_ticket({
            "account": "user-42", "attributes": {"name": "Ada", "tier": 3},
            "channels": ["room:lobby", "user:42"], "ip": "203.0.113.7"})

        self.assertEqual(status, 201)
        self.assertEqual(sorted(body), ["expires_in", "ticket"])
        self.assertEqual(body["expires_in"], 10)
        self.assertEqual(headers[b"content-type"], [b"application/json"])
        self.assertEqual(headers[b"cache-control"], [b"no-store"])
        ticket = yield self.tickets.redeem(body["ticket"])
        self.assertEqual((ticket.account, ticket.attributes, ticket.channels, ticket.ip),
                         ("user-42", {"name": "Ada", "tier": 3},
                          ("room:lobby", "user:42"), "203.0.113.7"))
        self.assertEqual(self.introspection.asked, [],
                         "the backends' key is recognised without asking the OAuth server")

    @defer.inlineCallbacks
    def test_a_backend_may_send_only_the_account(self):
        status, _, body = yield self.post_ticket({"account": "user-42"})
        self.assertEqual(status, 201)
        ticket = yield self.tickets.redeem(body["ticket"])
        self.assertEqual((ticket.account, ticket.attributes, ticket.channels, ticket.ip),
                         ("user-42", {}, (), None))

    @defer.inlineCallbacks
    def test_the_ip_is_stored_in_its_canonical_form(self):
        status, _, body = yield self.post_ticket({"account": "a", "ip": "2001:DB8:0:0::1"})
        self.assertEqual(status, 201)
        self.assertEqual((yield self.tickets.redeem(body["ticket"])).ip, "2001:db8::1")

    @defer.inlineCallbacks
    def test_a_body_of_exactly_max_body_bytes_is_read(self):
        head = b'{"account": "user-42", "attributes": {"pad": "'
        tail = b'"}}'
        body = head + b"x" * (MAX_BODY - len(head) - len(tail)) + tail
        self.assertEqual(len(body), MAX_BODY)
        status, _, answer = yield self.post_ticket(body)
        self.assertEqual(status, 201, answer)

    @defer.inlineCallbacks
    def test_every_ticket_is_new(self):
        first = yield self.post_ticket({"account": "user-42"})
        second = yield self.post_ticket({"account": "user-42"})
        self.assertNotEqual(first[2]["ticket"], second[2]["ticket"])


class BadRequestTests(APITestCase):
    """400 {"error": "bad_request", "message": ...}; no ticket is stored."""

    @defer.inlineCallbacks
    def assertBadRequest(self, body):
        _, headers, answer = yield self.assertStatus(
            400, "bad_request", self.post_ticket(body))
        self.assertEqual(headers[b"cache-control"], [b"no-store"])
        self.assertEqual((yield self.engine.execute("KEYS", "*")), [], body)
        self.assertEqual(self.tickets.issued, 0)
        return answer

    def test_a_body_that_is_not_json(self):
        return self.assertBadRequest(b"account=user-42")

    def test_a_body_that_is_not_utf8(self):
        return self.assertBadRequest(b'{"account": "\xff"}')

    def test_an_empty_body(self):
        return self.assertBadRequest(b"")

    @defer.inlineCallbacks
    def test_a_body_escaping_a_lone_surrogate(self):
        # "\ud800" alone is valid JSON but not Unicode text: it could not be
        # stored in Redis or sent to a client later.
        answer = yield self.assertBadRequest(b'{"account": "\\ud800"}')
        self.assertIn("lone surrogate", answer["message"])
        yield self.assertBadRequest(b'{"account": "a", "attributes": {"n": "x\\udfff"}}')

    @defer.inlineCallbacks
    def test_json_no_reader_agrees_on_is_refused(self):
        # L-2, L-6, L-14: NaN (a browser's JSON.parse refuses it), nesting
        # deeper than encoding can take again, a key given twice.
        for body, says in [(b'{"account": "a", "attributes": {"n": NaN}}', "NaN"),
                           (b'{"account": "a", "attributes": {"n": -Infinity}}', "NaN"),
                           (b'{"account": "a", "attributes": ' + b'[' * 949 + b']' * 949 + b'}',
                            "nested deeper than 64 levels"),
                           (b'{"account": "a", "account": "b"}', "a key is given twice")]:
            answer = yield self.assertBadRequest(body)
            self.assertIn(says, answer["message"])

    @defer.inlineCallbacks
    def test_a_surrogate_pair_is_text(self):
        status, _, _ = yield self.post_ticket(b'{"account": "\\ud83d\\ude00"}')
        self.assertEqual(status, 201)

    def test_a_body_that_is_a_list(self):
        return self.assertBadRequest([{"account": "user-42"}])

    def test_a_body_that_is_a_string(self):
        return self.assertBadRequest("user-42")

    def test_a_body_nested_deeper_than_the_parser_goes(self):
        depth = (MAX_BODY - 100) // 2
        return self.assertBadRequest(b"[" * depth + b"]" * depth)

    def test_no_account(self):
        return self.assertBadRequest({"channels": ["room:lobby"]})

    def test_an_empty_account(self):
        return self.assertBadRequest({"account": ""})

    def test_an_account_that_is_not_a_string(self):
        return self.assertBadRequest({"account": 42})

    def test_an_account_of_257_characters(self):
        return self.assertBadRequest({"account": "a" * 257})

    def test_attributes_that_are_not_an_object(self):
        return self.assertBadRequest({"account": "user-42", "attributes": ["name", "Ada"]})

    def test_channels_that_are_not_a_list(self):
        return self.assertBadRequest({"account": "user-42", "channels": "room:lobby"})

    def test_a_channel_that_is_not_a_string(self):
        return self.assertBadRequest({"account": "user-42", "channels": ["room:lobby", 7]})

    def test_an_empty_channel(self):
        return self.assertBadRequest({"account": "user-42", "channels": [""]})

    def test_an_ip_that_is_not_an_ip_address(self):
        return self.assertBadRequest({"account": "user-42", "ip": "my-laptop"})

    def test_an_ip_that_is_out_of_range(self):
        return self.assertBadRequest({"account": "user-42", "ip": "256.0.0.1"})

    def test_an_ip_that_is_a_json_number(self):
        return self.assertBadRequest({"account": "user-42", "ip": 3232235777})

    def test_an_ip_that_is_a_json_boolean(self):
        return self.assertBadRequest({"account": "user-42", "ip": True})

    @defer.inlineCallbacks
    def test_a_body_over_max_body_bytes_is_413(self):
        head = b'{"account": "user-42", "attributes": {"pad": "'
        tail = b'"}}'
        body = head + b"x" * (MAX_BODY + 1 - len(head) - len(tail)) + tail
        self.assertEqual(len(body), MAX_BODY + 1)
        yield self.assertStatus(413, "too_large", self.post_ticket(body))
        self.assertEqual((yield self.engine.execute("KEYS", "*")), [])


class CredentialTests(APITestCase):
    @defer.inlineCallbacks
    def test_no_authorization_header_is_401_with_www_authenticate(self):
        _, headers, _ = yield self.assertStatus(
            401, "unauthorized", self.post_ticket({"account": "user-42"}, token=None))
        self.assertEqual(headers[b"www-authenticate"], [b'Bearer realm="presence"'])

    @defer.inlineCallbacks
    def test_a_scheme_other_than_bearer_is_401(self):
        basic = b"Basic " + base64.b64encode(b"backend:" + API_KEY.encode("ascii"))
        _, headers, _ = yield self.assertStatus(401, "unauthorized", self.post_ticket(
            {"account": "user-42"}, token=None, headers={b"authorization": [basic]}))
        self.assertEqual(headers[b"www-authenticate"], [b'Bearer realm="presence"'])

    def test_bearer_without_a_token_is_401(self):
        return self.assertStatus(401, "unauthorized", self.post_ticket(
            {"account": "user-42"}, token=None, headers={b"authorization": [b"Bearer "]}))

    @defer.inlineCallbacks
    def test_a_wrong_key_is_401_invalid_token(self):
        _, headers, _ = yield self.assertStatus(
            401, "unauthorized", self.post_ticket({"account": "user-42"}, token="backend-kex"))
        self.assertEqual(headers[b"www-authenticate"],
                         [b'Bearer realm="presence", error="invalid_token"'])
        self.assertEqual(self.tickets.issued, 0)

    @defer.inlineCallbacks
    def test_a_wrong_key_is_401_without_an_introspector_too(self):
        url = self.serve_api(introspector=None)
        yield self.assertStatus(401, "unauthorized", self.post_ticket(
            {"account": "user-42"}, token="backend-kex", url=url))

    @defer.inlineCallbacks
    def test_the_scheme_is_case_insensitive(self):
        status, _, body = yield self.post_ticket(
            {"account": "user-42"}, token=None,
            headers={b"authorization": [b"bearer " + API_KEY.encode("ascii")]})
        self.assertEqual(status, 201, body)


class RoutingTests(APITestCase):
    @defer.inlineCallbacks
    def test_an_unknown_path_is_404_json(self):
        _, headers, _ = yield self.assertStatus(404, "not_found",
                                                self.request("GET", "/ticket"))
        self.assertEqual(headers[b"cache-control"], [b"no-store"])

    @defer.inlineCallbacks
    def test_get_tickets_is_405_json(self):
        _, headers, _ = yield self.assertStatus(405, "method_not_allowed",
                                                self.request("GET", "/tickets"))
        self.assertEqual(headers[b"cache-control"], [b"no-store"])

    def test_post_health_is_405_json(self):
        return self.assertStatus(405, "method_not_allowed",
                                 self.request("POST", "/health", {}, token=None))

    @defer.inlineCallbacks
    def test_a_405_names_the_allowed_methods_in_allow(self):
        # RFC 9110 section 15.5.6: "The origin server MUST generate an Allow
        # header field in a 405 response containing a list of the target
        # resource's currently supported methods."
        status, headers, _ = yield self.request("GET", "/tickets")
        self.assertEqual(status, 405)
        self.assertIsNotNone(headers[b"allow"], "no Allow header in the 405")
        allowed = {method.strip() for value in headers[b"allow"] for method in value.split(b",")}
        self.assertIn(b"POST", allowed)

    @defer.inlineCallbacks
    def test_health_is_200_when_redis_answers(self):
        status, headers, body = yield self.request("GET", "/health", token=None)
        self.assertEqual((status, body), (200, {"status": "ok", "redis": True}))
        self.assertEqual(headers[b"content-type"], [b"application/json"])
        self.assertEqual(headers[b"cache-control"], [b"no-store"])


class RedisDownTests(APITestCase):
    @defer.inlineCallbacks
    def test_with_redis_stopped_post_tickets_is_503_with_retry_after_within_the_timeout(self):
        yield self.stop_redis()
        started = time.monotonic()
        _, headers, _ = yield self.assertStatus(503, "unavailable",
                                                self.post_ticket({"account": "user-42"}))
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertEqual(headers[b"retry-after"], [b"1"])
        self.assertEqual(headers[b"cache-control"], [b"no-store"])

    @defer.inlineCallbacks
    def test_with_redis_stopped_health_is_503(self):
        yield self.stop_redis()
        started = time.monotonic()
        status, headers, body = yield self.request("GET", "/health", token=None)
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertEqual((status, body), (503, {"status": "unavailable", "redis": False}))
        self.assertEqual(headers[b"content-type"], [b"application/json"])

    @defer.inlineCallbacks
    def test_once_redis_is_back_tickets_are_issued_again(self):
        yield self.stop_redis()
        status, _, _ = yield self.post_ticket({"account": "user-42"})
        self.assertEqual(status, 503)

        yield self.embedded.started()

        @defer.inlineCallbacks
        def attempt():
            status, _, body = yield self.post_ticket({"account": "user-42"})
            if status == 503:
                raise PresenceUnavailable(status, body)
            return status, body

        status, body = yield reconnected(attempt, retry_on=(PresenceUnavailable,))
        self.assertEqual(status, 201)
        self.assertEqual((yield self.tickets.redeem(body["ticket"])).account, "user-42")
        health = yield self.request("GET", "/health", token=None)
        self.assertEqual(health[0], 200)


class OAuthTests(APITestCase):
    """A user holding an OAuth access token gets a ticket for its own
    account (the token's ``sub``), from its own IP, and nothing more."""

    @defer.inlineCallbacks
    def test_an_active_token_gets_a_ticket_for_its_subject_from_the_client_ip(self):
        status, headers, body = yield self.post_ticket({}, token="good")

        self.assertEqual(status, 201, body)
        self.assertEqual(sorted(body), ["expires_in", "ticket"])
        self.assertEqual(headers[b"cache-control"], [b"no-store"])
        self.assertEqual(self.introspection.asked, ["good"])
        ticket = yield self.tickets.redeem(body["ticket"])
        self.assertEqual((ticket.account, ticket.attributes, ticket.channels, ticket.ip),
                         ("user-7", {}, (), "127.0.0.1"))

    @defer.inlineCallbacks
    def test_a_user_may_name_its_own_account(self):
        status, _, body = yield self.post_ticket({"account": "user-7"}, token="good")
        self.assertEqual(status, 201, body)
        self.assertEqual((yield self.tickets.redeem(body["ticket"])).account, "user-7")

    @defer.inlineCallbacks
    def test_behind_a_trusted_proxy_the_ip_is_the_forwarded_one(self):
        status, _, body = yield self.post_ticket(
            {}, token="good", headers={b"x-forwarded-for": [b"198.51.100.23"]})
        self.assertEqual(status, 201, body)
        self.assertEqual((yield self.tickets.redeem(body["ticket"])).ip, "198.51.100.23")

    @defer.inlineCallbacks
    def test_from_an_untrusted_peer_x_forwarded_for_is_ignored(self):
        url = self.serve_api(trusted_proxies=TrustedProxies(["10.0.0.0/8"]))
        status, _, body = yield self.post_ticket(
            {}, token="good", headers={b"x-forwarded-for": [b"198.51.100.23"]}, url=url)
        self.assertEqual(status, 201, body)
        self.assertEqual((yield self.tickets.redeem(body["ticket"])).ip, "127.0.0.1")

    @defer.inlineCallbacks
    def test_an_inactive_token_is_401(self):
        _, headers, _ = yield self.assertStatus(401, "unauthorized",
                                                self.post_ticket({}, token="bad"))
        self.assertEqual(headers[b"www-authenticate"],
                         [b'Bearer realm="presence", error="invalid_token"'])
        self.assertEqual(self.introspection.asked, ["bad"])

    def test_an_active_token_without_a_subject_is_401(self):
        return self.assertStatus(401, "unauthorized", self.post_ticket({}, token="no-subject"))

    @defer.inlineCallbacks
    def test_a_user_asking_for_another_account_is_403(self):
        yield self.assertStatus(403, "forbidden",
                                self.post_ticket({"account": "someone-else"}, token="good"))
        self.assertEqual((yield self.engine.execute("KEYS", "*")), [])

    @defer.inlineCallbacks
    def test_a_user_setting_channels_attributes_or_ip_is_403(self):
        for field, value in [("channels", ["room:admin"]), ("attributes", {"role": "admin"}),
                             ("ip", "127.0.0.1"), ("channels", [])]:
            yield self.assertStatus(403, "forbidden",
                                    self.post_ticket({field: value}, token="good"))
        self.assertEqual((yield self.engine.execute("KEYS", "*")), [])

    @defer.inlineCallbacks
    def test_with_the_introspection_server_down_a_token_is_503_with_retry_after(self):
        yield self.introspection_port.stopListening()
        _, headers, _ = yield self.assertStatus(503, "unavailable",
                                                self.post_ticket({}, token="good"))
        self.assertEqual(headers[b"retry-after"], [b"1"])

    @defer.inlineCallbacks
    def test_when_the_introspection_server_refuses_presences_credentials_a_token_is_503(self):
        wrong = Introspector(self.introspector.url, CLIENT_ID, "not-the-secret",
                             timeout=2.0, pool=self.pool)
        url = self.serve_api(introspector=wrong)
        yield self.assertStatus(503, "unavailable", self.post_ticket({}, token="good", url=url))
        self.assertEqual(self.introspection.asked, [], "the server refused to answer")

    @defer.inlineCallbacks
    def test_the_backends_key_still_works_alongside_oauth(self):
        status, _, body = yield self.post_ticket(
            {"account": "user-42", "channels": ["room:lobby"]}, token=API_KEY)
        self.assertEqual(status, 201, body)
        ticket = yield self.tickets.redeem(body["ticket"])
        self.assertEqual((ticket.account, ticket.channels), ("user-42", ("room:lobby",)))
        self.assertEqual(self.introspection.asked, [])

    @defer.inlineCallbacks
    def test_a_backend_key_with_the_introspection_server_down_still_works(self):
        yield self.introspection_port.stopListening()
        status, _, body = yield self.post_ticket({"account": "user-42"})
        self.assertEqual(status, 201, body)


class ClientTests(APITestCase):
    @defer.inlineCallbacks
    def test_issue_ticket_returns_the_apis_answer(self):
        answer = yield self.client.issue_ticket("user-42", {"name": "Ada"}, ["room:lobby"],
                                                "192.0.2.10")
        self.assertEqual(sorted(answer), ["expires_in", "ticket"])
        self.assertEqual(answer["expires_in"], 10)
        ticket = yield self.tickets.redeem(answer["ticket"])
        self.assertEqual((ticket.account, ticket.attributes, ticket.channels, ticket.ip),
                         ("user-42", {"name": "Ada"}, ("room:lobby",), "192.0.2.10"))

    @defer.inlineCallbacks
    def test_a_wrong_key_raises_presence_api_error_401_unauthorized(self):
        client = PresenceClient(self.url, "not-the-key", timeout=5.0, pool=self.pool)
        with self.assertRaises(PresenceAPIError) as raised:
            yield client.issue_ticket("user-42")
        self.assertNotIsInstance(raised.exception, PresenceUnavailable)
        self.assertEqual((raised.exception.status, raised.exception.kind), (401, "unauthorized"))

    @defer.inlineCallbacks
    def test_a_bad_request_raises_presence_api_error_400(self):
        with self.assertRaises(PresenceAPIError) as raised:
            yield self.client.issue_ticket("")
        self.assertEqual((raised.exception.status, raised.exception.kind), (400, "bad_request"))

    @defer.inlineCallbacks
    def test_with_redis_stopped_issue_ticket_raises_presence_unavailable(self):
        yield self.stop_redis()
        with self.assertRaises(PresenceUnavailable) as raised:
            yield self.client.issue_ticket("user-42")
        self.assertIsInstance(raised.exception, PresenceAPIError)
        self.assertEqual((raised.exception.status, raised.exception.kind), (503, "unavailable"))


def freeze_redis(embedded):
    """Stop the test's redis-server where it stands (SIGSTOP: its sockets stay
    open, nothing is answered); the function returned lets it go on."""
    process = embedded._transport
    process.signalProcess(signal.SIGSTOP)
    return lambda: process.signalProcess(signal.SIGCONT)


class PublishTests(APITestCase, HubTestCase):
    """POST /publish on a node's hub, to a session subscribed on that node;
    with an id, a publish is made once however often it is retried."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.node = self.start_node()
        self.url = self.serve_api(hub=self.node.hub)
        yield run(until(lambda: self.node.hub.subscriber.connected, 10, "the subscription"))
        self.session, self.transport = self.open_session(self.node, "ann")
        self.session.dataReceived(client_frame(OP_TEXT, json.dumps(
            {"type": "subscribe", "channel": "room:1"})))
        yield run(until(self.subscribed_in_redis, 10, "the channel's subscription in Redis"))
        self.transport.clear()

    @defer.inlineCallbacks
    def subscribed_in_redis(self):
        numsub = yield self.engine.execute("PUBSUB", "NUMSUB", "presence:channel:room:1")
        return int(numsub[1]) >= 1

    def delivered(self):
        return [d["data"] for d in documents(self.transport) if d.get("type") == "message"]

    def publish(self, body):
        return self.request("POST", "/publish", body)

    @defer.inlineCallbacks
    def test_a_retry_with_the_same_id_after_a_503_is_not_delivered_again(self):
        # L-13: Redis stands still; the publish is answered 503 and is made
        # when Redis goes on. The backend retries it, with its id.
        thaw = freeze_redis(self.embedded)
        self.addCleanup(thaw)
        status, headers, body = yield self.publish(
            {"channel": "room:1", "data": "once", "id": "order-7"})
        self.assertEqual((status, body["error"]), (503, "unavailable"), body)
        thaw()
        yield run(until(self.delivered, 10, "the first publish, made once Redis went on"))

        retried = yield self.publish({"channel": "room:1", "data": "once", "id": "order-7"})
        # A marker after it: had the retry been published, it would come first.
        yield self.publish({"channel": "room:1", "data": "marker"})
        yield run(until(lambda: "marker" in self.delivered(), 10, "the marker"))
        self.assertEqual(self.delivered(), ["once", "marker"])
        self.assertEqual(retried[::2], (200, {"channels": 1, "nodes": 1, "duplicate": True}))

    @defer.inlineCallbacks
    def test_a_new_id_is_published_and_says_not_duplicate(self):
        status, _, body = yield self.publish(
            {"channel": "room:1", "data": "hello", "id": "a" * 128})
        self.assertEqual((status, body), (200, {"channels": 1, "nodes": 1, "duplicate": False}))
        yield run(until(self.delivered, 10, "the message"))
        self.assertEqual(self.delivered(), ["hello"])

    @defer.inlineCallbacks
    def test_the_id_is_kept_under_the_prefix_for_publish_id_ttl_seconds(self):
        yield self.publish({"channel": "room:1", "data": 1, "id": "order-8"})
        key = self.keys.publish_id("order-8")
        self.assertEqual(key, "presence:publish:order-8")
        ttl = int((yield self.engine.execute("TTL", key)))
        self.assertTrue(PUBLISH_ID_TTL - 5 <= ttl <= PUBLISH_ID_TTL, ttl)
        self.assertEqual((yield self.engine.execute("GET", key)), "1")  # the nodes reached

    @defer.inlineCallbacks
    def test_a_publish_to_several_channels_with_an_id_is_made_once_on_each(self):
        body = {"channels": ["room:1", "room:2"], "data": "both", "except": ["nobody"],
                "id": "order-9"}
        first = yield self.publish(body)
        again = yield self.publish(body)
        self.assertEqual(first[2], {"channels": 2, "nodes": 1, "duplicate": False})
        self.assertEqual(again[2], {"channels": 2, "nodes": 1, "duplicate": True})
        yield self.publish({"channel": "room:1", "data": "marker"})
        yield run(until(lambda: "marker" in self.delivered(), 10, "the marker"))
        self.assertEqual(self.delivered(), ["both", "marker"])

    @defer.inlineCallbacks
    def test_without_an_id_every_publish_is_made(self):
        for _ in range(2):
            status, _, body = yield self.publish({"channel": "room:1", "data": "twice"})
            self.assertEqual((status, body), (200, {"channels": 1, "nodes": 1}))
        yield run(until(lambda: len(self.delivered()) == 2, 10, "both messages"))

    @defer.inlineCallbacks
    def test_an_id_that_is_not_a_string_of_1_to_128_characters_is_400(self):
        for publish_id in ("", "a" * 129, 7, ["order-7"], {"id": 1}, True):
            yield self.assertStatus(400, "bad_request", self.publish(
                {"channel": "room:1", "data": 1, "id": publish_id}))
        self.assertEqual((yield self.engine.execute("KEYS", "presence:publish:*")), [])

    @defer.inlineCallbacks
    def test_the_clients_publish_retried_with_its_failures_id_is_delivered_once(self):
        client = PresenceClient(self.url, API_KEY, timeout=5.0, pool=self.pool)
        thaw = freeze_redis(self.embedded)
        self.addCleanup(thaw)
        with self.assertRaises(PresenceUnavailable) as raised:
            yield client.publish("room:1", "once")
        publish_id = raised.exception.publish_id
        self.assertRegex(publish_id or "", "^[0-9a-f]{32}$")
        thaw()
        yield run(until(self.delivered, 10, "the first publish, made once Redis went on"))

        answer = yield client.publish("room:1", "once", publish_id=publish_id)
        yield client.publish("room:1", "marker")
        yield run(until(lambda: "marker" in self.delivered(), 10, "the marker"))
        self.assertEqual(self.delivered(), ["once", "marker"])
        self.assertEqual(answer, {"channels": 1, "nodes": 1, "duplicate": True})

    @defer.inlineCallbacks
    def test_every_call_of_the_clients_publish_has_an_id_of_its_own(self):
        client = PresenceClient(self.url, API_KEY, timeout=5.0, pool=self.pool)
        for _ in range(2):
            self.assertEqual((yield client.publish("room:1", "twice")),
                             {"channels": 1, "nodes": 1, "duplicate": False})
        yield run(until(lambda: len(self.delivered()) == 2, 10, "both messages"))
        self.assertEqual(len((yield self.engine.execute("KEYS", "presence:publish:*"))), 2)
