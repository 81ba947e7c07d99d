"""SSE sessions on a node's client side (presence/net/sse.py), on
StringTransports and a Clock: the stream's opening and refusals, POSTs
finding their session by its secret, CORS, heartbeats, closing, a vanished
client, the slow-consumer rule and the limits, the same as for the other
protocols (docs/protocol.md, "SSE")."""

from twisted.internet import defer

from presence.hub.tickets import Ticket
from presence.net.sse import CLOSE_GRACE, SSERequests, SSESession
from presence.sse.handshake import PADDING
from presence.web.admin import prometheus
from presence.websocket.handshake import HandshakeConfig
from presence.wire.prepared import PreparedMessage

from .helpers.sse import event_documents, post_request
from .helpers.transports import Harness

STREAM = (b"GET /sse HTTP/1.1\r\nHost: presence.example\r\nAccept: text/event-stream\r\n"
          b"User-Agent: test\r\n\r\n")
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n")


class SSETestCase(Harness):
    def open_stream(self, request=STREAM):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(request)
        session = transport.protocol
        return session, transport

    def opened(self):
        session, transport = self.open_stream()
        welcome = event_documents(transport.value())[0]
        transport.clear()
        return session, transport, welcome

    def post(self, path, body, extra=b"", version=b"1.1"):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(post_request(path, body, extra, version))
        return transport


class OpeningTests(SSETestCase):
    def test_the_stream_is_answered_200_with_padding_then_a_welcome_naming_its_send_path(self):
        session, transport = self.open_stream()
        self.assertIsInstance(session, SSESession)
        data = transport.value()
        self.assertTrue(data.startswith(HEAD + PADDING), data[:200])
        welcome, = event_documents(data[len(HEAD) + len(PADDING):])
        self.assertEqual(welcome, {"type": "welcome", "session": session.id, "account": None,
                                   "send": "/sse/%s/%s" % (session.id, session.secret)})
        self.assertGreaterEqual(len(session.secret), 32)
        self.assertEqual((session.protocol_name, session.path, session.user_agent),
                         ("sse", "/sse", "test"))
        self.assertEqual(self.app.opened, [session])
        self.assertEqual(self.server.stats.sessions_opened["sse"], 1)

    def test_every_session_has_its_own_secret(self):
        secrets = {self.opened()[0].secret for _ in range(20)}
        self.assertEqual(len(secrets), 20)

    def test_without_accept_event_stream_the_answer_is_406_with_why(self):
        session, transport = self.open_stream(
            b"GET /sse HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 406 Not Acceptable\r\n"))
        self.assertTrue(transport.value().endswith(b"send Accept: text/event-stream\n"))
        self.assertEqual(self.server.stats.handshakes_refused["sse_accept"], 1)
        self.assertEqual(self.server.sessions, {})

    def test_a_request_for_nothing_names_sse_in_its_426(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertIn(b"this port speaks WebSocket, firepresence and SSE: ask for one with "
                      b"Upgrade, or GET /sse with Accept: text/event-stream", transport.value())


def ada(resume):
    """Ada's ticket, redeemed (the hub's Ticket), with the resume token its
    session gets."""
    ticket = Ticket("ada", channels=("room:*",))
    ticket.resume = resume
    return ticket


class FakeTickets:
    """An ITicketRedeemer: ``good`` is Ada's ticket, anything else unknown."""

    def redeem(self, ticket, client_ip=None):
        if ticket != "good":
            return defer.succeed(None)
        return defer.succeed(ada(resume="R2"))

    def resume(self, token, client_ip=None):
        if token != "R1":
            return defer.succeed(None)
        return defer.succeed(ada(resume="R3"))

    def ended(self, token):
        pass

    def forget(self, token):
        pass


class TicketTests(SSETestCase):
    def setUp(self):
        super().setUp()
        self.server.tickets = FakeTickets()

    def test_a_ticket_in_the_url_is_redeemed_and_welcomed_with_its_account(self):
        session, transport = self.open_stream(STREAM.replace(b"/sse", b"/sse?ticket=good"))
        welcome, = event_documents(transport.value())
        self.assertEqual((welcome["account"], welcome["resume"], welcome["send"]),
                         ("ada", "R2", "/sse/%s/%s" % (session.id, session.secret)))

    def test_a_resume_token_in_the_url_is_redeemed_through_the_same_check(self):
        session, transport = self.open_stream(STREAM.replace(b"/sse", b"/sse?resume=R1"))
        welcome, = event_documents(transport.value())
        self.assertEqual((welcome["account"], welcome["resume"]), ("ada", "R3"))
        session, transport = self.open_stream(STREAM.replace(b"/sse", b"/sse?resume=old"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401 Unauthorized\r\n"))

    def test_a_bad_ticket_is_401_with_why(self):
        session, transport = self.open_stream(STREAM.replace(b"/sse", b"/sse?ticket=bad"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401 Unauthorized\r\n"))
        self.assertIn(b"invalid", transport.value())
        self.assertEqual(self.server.sessions, {})

    def test_no_ticket_is_401_since_no_auth_message_could_come(self):
        session, transport = self.open_stream()
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401 Unauthorized\r\n"))
        self.assertTrue(transport.value().endswith(b"GET /sse needs ?ticket=TICKET\n"))


class UpstreamTests(SSETestCase):
    settings = dict(Harness.settings, max_message_size=64, max_bad_lines=3)

    def test_a_post_reaches_the_application_and_its_answers_travel_on_the_stream(self):
        session, stream, welcome = self.opened()
        answer = self.post(welcome["send"], b'[{"type":"hello","n":1},{"type":"hello","n":2}]')
        self.assertEqual(answer.value(), b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        # The recording application echoes text back: on the stream.
        self.assertEqual(event_documents(stream.value()),
                         [{"type": "hello", "n": 1}, {"type": "hello", "n": 2}])
        self.assertEqual(stream.value(), b'data: {"type":"hello","n":1}\n\n'
                                         b'data: {"type":"hello","n":2}\n\n')
        self.assertEqual((session.messages_in, session.messages_out), (2, 3))
        self.assertFalse(answer.disconnecting)  # keep-alive: the next POST may follow

    def test_posts_follow_one_another_on_one_connection(self):
        session, stream, welcome = self.opened()
        dispatcher, transport = self.connect()
        path = welcome["send"]
        both = post_request(path, b'{"type":"a"}') + post_request(path, b'{"type":"b"}')
        dispatcher.dataReceived(both[:-6])
        transport.protocol.dataReceived(both[-6:])
        self.assertEqual(transport.value().count(b"HTTP/1.1 202 Accepted"), 2)
        self.assertEqual(event_documents(stream.value()), [{"type": "a"}, {"type": "b"}])

    def test_a_wrong_secret_or_an_ended_session_is_404_and_reaches_nothing(self):
        session, stream, welcome = self.opened()
        wrong = welcome["send"][:-4] + "AAAA"
        answer = self.post(wrong, b'{"type":"a"}')
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 404 Not Found\r\n"))
        self.assertTrue(answer.disconnecting)
        other = self.opened()[0]
        answer = self.post("/sse/%s/%s" % (other.id, session.secret), b'{"type":"a"}')
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 404"))
        self.lose(session, stream)
        answer = self.post(welcome["send"], b'{"type":"a"}')
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 404"))
        self.assertEqual(session.messages_in, 0)
        self.assertEqual(self.server.stats.handshakes_refused["sse_unknown_session"], 3)

    def test_a_body_over_the_message_size_is_413_before_it_is_read(self):
        session, stream, welcome = self.opened()
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"POST " + welcome["send"].encode() + b" HTTP/1.1\r\nHost: h\r\n"
                                b"Content-Length: 65\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 Content Too Large\r\n"))
        self.assertEqual(self.server.stats.limits_hit["max-message-size"], 1)

    def test_bad_bodies_get_error_events_and_too_many_close_with_1007(self):
        session, stream, welcome = self.opened()
        for body in (b"nope", b"[1]", b"[]"):
            self.post(welcome["send"], body)
        documents = event_documents(stream.value())
        self.assertEqual(documents[0], {"type": "error", "reason": "body is not JSON"})
        self.assertEqual(documents[-1], {"type": "close", "code": 1007,
                                         "reason": "too many malformed messages"})
        self.assertTrue(stream.disconnecting)

    def test_the_message_rate_applies_to_posted_messages(self):
        self.server.settings.max_message_rate = 1
        self.server.settings.message_burst = 2
        session, stream, welcome = self.opened()
        self.post(welcome["send"], b'[{"type":"a"},{"type":"b"},{"type":"c"}]')
        self.assertEqual(event_documents(stream.value())[-1],
                         {"type": "close", "code": 1008, "reason": "message rate exceeded"})
        self.assertEqual(session.messages_in, 2)

    def test_posts_wait_while_the_session_is_not_read_as_a_socket_would(self):
        session, stream, welcome = self.opened()
        session.pause_reading()  # the handler cannot keep up (e.g. Redis is slow)
        answer = self.post(welcome["send"], b'{"type":"a"}')
        self.assertEqual((answer.value(), answer.producerState), (b"", "paused"))
        self.assertEqual(session.messages_in, 0)
        session.resume_reading()
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 202"))
        self.assertEqual(event_documents(stream.value()), [{"type": "a"}])
        # A stream that does not drain holds them too; its end answers 404.
        session.pauseProducing()
        answer = self.post(welcome["send"], b'{"type":"b"}')
        self.assertEqual(answer.value(), b"")
        self.lose(session, stream)
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 404"))

    def test_a_client_ping_is_answered_on_the_stream(self):
        session, stream, welcome = self.opened()
        self.post(welcome["send"], b'{"type":"ping","id":"abc"}')
        self.assertEqual(stream.value(), b'data: {"type":"pong","id":"abc"}\n\n')

    def test_bytes_on_the_streams_own_connection_are_dropped(self):
        session, stream, welcome = self.opened()
        session.dataReceived(b'{"type":"a"}\n')
        self.assertEqual((stream.value(), session.messages_in), (b"", 0))


class VisibilityTests(SSETestCase):
    def test_sse_sessions_are_counted_by_protocol_in_the_metrics(self):
        self.opened()
        self.open_session()
        metrics = prometheus(self.server)
        self.assertIn('presence_sessions{protocol="sse"} 1', metrics)
        self.assertIn('presence_sessions{protocol="websocket"} 1', metrics)


class CorsTests(SSETestCase):
    settings = dict(Harness.settings, handshake=HandshakeConfig(origins=["https://app.example"]))

    def test_an_allowed_origin_is_named_in_the_stream_and_the_posts_answers(self):
        session, stream = self.open_stream(STREAM.replace(
            b"\r\n\r\n", b"\r\nOrigin: https://app.example\r\n\r\n"))
        self.assertIn(b"Access-Control-Allow-Origin: https://app.example\r\n", stream.value())
        send = event_documents(stream.value())[0]["send"]
        answer = self.post(send, b'{"type":"a"}', b"Origin: https://app.example\r\n")
        self.assertTrue(answer.value().startswith(
            b"HTTP/1.1 202 Accepted\r\nAccess-Control-Allow-Origin: https://app.example\r\n"))

    def test_another_origin_is_403_on_the_stream_and_on_posts(self):
        session, stream = self.open_stream(STREAM.replace(
            b"\r\n\r\n", b"\r\nOrigin: https://evil.example\r\n\r\n"))
        self.assertTrue(stream.value().startswith(b"HTTP/1.1 403 Forbidden\r\n"))
        answer = self.post("/sse/a/b", b"{}", b"Origin: https://evil.example\r\n")
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 403 Forbidden\r\n"))

    def test_a_preflight_is_answered_and_the_connection_kept(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"OPTIONS /sse/a/b HTTP/1.1\r\nHost: h\r\n"
                                b"Origin: https://app.example\r\n"
                                b"Access-Control-Request-Method: POST\r\n\r\n")
        self.assertIsInstance(transport.protocol, SSERequests)
        self.assertTrue(transport.value().startswith(
            b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: https://app.example\r\n"))
        self.assertFalse(transport.disconnecting)

    def test_an_options_with_upgrade_firepresence_stays_firepresence(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"OPTIONS /sse HTTP/1.1\r\nHost: h\r\nUpgrade: firepresence\r\n"
                                b"Origin: https://app.example\r\n\r\n")
        self.assertEqual(transport.protocol.protocol_name, "firepresence")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))


class HeartbeatAndClosingTests(SSETestCase):
    def test_the_heartbeat_is_a_comment_and_a_ping_whose_posted_pong_gives_the_rtt(self):
        session, stream, welcome = self.opened()
        self.clock.advance(30)
        self.assertEqual(stream.value(),
                         b': heartbeat\n\nevent: ping\ndata: {"type":"ping","id":1}\n\n')
        self.clock.advance(0.25)
        self.post(welcome["send"], b'{"type":"pong","id":1}')
        self.assertEqual(session.rtt, 0.25)
        self.assertIsNone(session.ping_sent_at)

    def test_no_pong_closes_with_1011_heartbeat_timeout_and_records_it(self):
        session, stream, welcome = self.opened()
        self.clock.advance(30)
        self.clock.advance(10)
        self.assertTrue(stream.value().endswith(
            b'event: close\ndata: {"type":"close","code":1011,"reason":"heartbeat timeout"}\n\n'))
        self.assertTrue(stream.disconnecting)
        self.lose(session, stream)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by),
                         (1011, "heartbeat timeout", "server"))

    def test_the_server_close_is_a_close_event_then_the_end_of_the_response(self):
        session, stream, welcome = self.opened()
        session.close(4001, "kicked")
        self.assertEqual(stream.value(), b'event: close\ndata: {"type":"close","code":4001,'
                                         b'"reason":"kicked"}\n\n')
        self.assertTrue(stream.disconnecting)
        self.assertFalse(session.send_text('{"type":"too late"}'))

    def test_a_posted_close_is_answered_and_recorded_clean(self):
        session, stream, welcome = self.opened()
        self.clock.advance(2)
        self.post(welcome["send"], b'{"type":"close","code":4000,"reason":"bye"}')
        self.assertEqual(stream.value(),
                         b'event: close\ndata: {"type":"close","code":4000,"reason":""}\n\n')
        self.assertTrue(stream.disconnecting)
        self.lose(session, stream)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean,
                          record.duration), (4000, "bye", "client", True, 2))

    def test_a_vanished_client_is_recorded_1006_unclean(self):
        session, stream, welcome = self.opened()
        self.lose(session, stream)
        # Its close could still come by POST (a page's beacon) for a while.
        self.clock.advance(CLOSE_GRACE - 0.01)
        self.assertEqual(self.app.closed, [])
        self.clock.advance(0.01)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean),
                         (1006, "stream closed without a close event", "client", False))
        self.assertEqual(self.server.sessions, {})
        self.assertEqual(self.server.connections, 0)

    def test_a_close_posted_just_after_the_stream_ended_is_the_sessions_end(self):
        # A page being closed: the browser drops the stream and sends the
        # close by beacon; through a proxy the stream's end can come first.
        session, stream, welcome = self.opened()
        self.lose(session, stream)
        self.clock.advance(CLOSE_GRACE / 2)
        answer = self.post(welcome["send"], b'{"type":"close","code":1001,"reason":"page closed"}')
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 202"))
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean),
                         (1001, "page closed", "client", True))
        self.assertEqual(self.server.sessions, {})
        self.clock.advance(CLOSE_GRACE)
        self.assertEqual(len(self.app.closed), 1)

    def test_a_session_closed_while_its_stream_is_gone_ends_at_once(self):
        session, stream, welcome = self.opened()
        self.lose(session, stream)
        session.close(1001, "server shutting down")
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.initiated_by), (1001, "server"))
        self.assertEqual(self.server.sessions, {})
        self.clock.advance(CLOSE_GRACE)
        self.assertEqual(len(self.app.closed), 1)

    def test_after_the_stream_ended_only_a_close_is_taken(self):
        session, stream, welcome = self.opened()
        self.lose(session, stream)
        answer = self.post(welcome["send"], b'{"type":"a"}')
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 404"))
        self.assertEqual(session.messages_in, 0)
        self.clock.advance(CLOSE_GRACE)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.clean), (1006, False))


class FlowControlTests(SSETestCase):
    settings = dict(Harness.settings, max_outgoing_buffer=1000)

    def test_a_stream_that_does_not_drain_is_a_slow_consumer(self):
        session, stream, welcome = self.opened()
        session.pauseProducing()  # what the transport does when its buffer is full
        message = PreparedMessage.text('{"type":"message","data":"%s"}' % ("x" * 600))
        self.server.fan_out(message, [session])
        self.assertFalse(stream.disconnecting)
        self.server.fan_out(message, [session])
        self.server.fan_out(PreparedMessage.text('{"type":"small"}'), [session])
        self.assertTrue(stream.disconnecting)
        self.assertEqual(self.server.stats.slow_consumers, 1)
        self.lose(session, stream)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.clean),
                         (1006, "slow consumer: more than 1000 bytes queued", False))


class LimitTests(SSETestCase):
    settings = dict(Harness.settings, max_connections_per_ip=2)

    def test_streams_and_posts_count_against_the_connections_of_an_address(self):
        session, stream, welcome = self.opened()
        dispatcher, transport = self.connect()  # an idle POST connection holds a slot
        third, refused = self.connect()
        self.assertTrue(refused.value().startswith(b"HTTP/1.1 429 Too Many Requests\r\n"))
        self.lose(dispatcher, transport)
        answer = self.post(welcome["send"], b'{"type":"a"}')
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 202"))

    def test_a_post_connection_idle_past_the_handshake_timeout_is_dropped(self):
        session, stream, welcome = self.opened()
        answer = self.post(welcome["send"], b'{"type":"a"}')
        self.assertFalse(answer.disconnecting)
        self.clock.advance(11)
        self.assertTrue(answer.disconnected)

    def test_a_post_connection_is_uncounted_when_it_closes(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(post_request("/sse/a/b", b"{}"))
        self.lose(transport.protocol, transport)
        self.assertEqual((self.server.connections, self.server.connections_by_ip), (0, {}))

