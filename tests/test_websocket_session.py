"""The Twisted adapter, without sockets: StringTransport for the wire and
Clock for every timer (handshake, close and heartbeat timeouts)."""

from unittest.mock import patch

from presence.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_text,
    heartbeat_ping_payload,
)
from presence.wire.prepared import PreparedMessage

from .helpers.framing import (
    client_frame,
    close_payload,
    server_close_frame,
    server_frames,
    upgrade_request,
)
from .helpers.transports import Harness


class HandshakeTests(Harness):
    def test_upgrade_opens_a_session_with_its_details(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(upgrade_request(path="/live?x=1", extra=[
            "Origin: https://example.com", "User-Agent: test-agent/1"]))
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", transport.value())
        session = transport.protocol
        self.assertEqual(self.app.opened, [session])
        self.assertIs(self.server.sessions[session.id], session)
        self.assertEqual((session.path, session.origin, session.user_agent, session.client_ip,
                          session.protocol_name),
                         ("/live?x=1", "https://example.com", "test-agent/1", "192.0.2.7",
                          "websocket"))
        self.assertEqual(self.server.stats.handshakes_accepted, 1)

    def test_frames_sent_right_after_the_head_are_processed(self):
        protocol, transport = self.connect()
        protocol.dataReceived(upgrade_request() + client_frame(OP_TEXT, "early"))
        self.assertTrue(transport.value().endswith(encode_text("early")))

    def test_refused_handshake_answers_with_status_and_body_then_closes(self):
        protocol, transport = self.connect()
        protocol.dataReceived(upgrade_request(extra=["Sec-WebSocket-Version: 8"]).replace(
            b"Sec-WebSocket-Version: 13\r\n", b""))
        response = transport.value()
        self.assertTrue(response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"), response)
        self.assertIn(b"Sec-WebSocket-Version: 13\r\n", response)
        self.assertTrue(response.endswith(b"this server speaks 13\n"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.handshakes_refused["unsupported_version"], 1)
        self.assertEqual(self.app.opened, [])

    def test_head_over_the_size_limit_gets_431(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nCookie: " + b"x" * 9000)
        self.assertTrue(transport.value().startswith(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.handshakes_refused["head_too_large"], 1)

    def test_client_that_never_finishes_its_head_is_dropped_after_the_timeout(self):
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n")
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.6)  # deadlines are swept every 0.5 s
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.handshakes_refused["handshake_timeout"], 1)

    def test_completed_handshake_cancels_the_handshake_timeout(self):
        protocol, transport = self.open_session()
        self.clock.advance(11)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(self.server.deadlines), 0)


class MessageTests(Harness):
    def test_text_and_binary_are_delivered_and_counted(self):
        protocol, transport = self.open_session()
        protocol.dataReceived(client_frame(OP_TEXT, "hé") + client_frame(OP_BINARY, b"\x00\xff"))
        self.assertEqual(transport.value(), encode_text("hé") + b"\x82\x02\x00\xff")
        self.assertEqual((protocol.messages_in, protocol.messages_out), (2, 2))
        self.assertEqual(protocol.bytes_out, len(transport.value()))

    def test_answers_leave_in_the_order_their_causes_arrived(self):
        # Autobahn 5.6: a ping between two fragments is answered before the
        # echo of the message it interrupted; answers of one read are batched.
        protocol, transport = self.open_session()
        protocol.dataReceived(
            client_frame(OP_TEXT, "frag1", fin=False) + client_frame(OP_PING, b"p1")
            + client_frame(0, "frag2") + client_frame(OP_PING, b"p2"))
        self.assertEqual(transport.value(),
                         b"\x8a\x02p1" + encode_text("frag1frag2") + b"\x8a\x02p2")

    def test_echo_of_a_message_precedes_the_close_of_a_later_protocol_error(self):
        protocol, transport = self.open_session()
        protocol.dataReceived(client_frame(OP_TEXT, "Hello") + client_frame(OP_TEXT, "x", rsv=0x20))
        self.assertEqual(
            transport.value(),
            encode_text("Hello")
            + server_close_frame(1002, b"RSV bits set without a negotiated extension"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.protocol_errors[
            "RSV bits set without a negotiated extension"], 1)

    def test_application_error_closes_only_that_session_with_1011(self):
        good, good_transport = self.open_session()
        bad, bad_transport = self.open_session()
        self.app.fail_on = "boom"
        bad.dataReceived(client_frame(OP_TEXT, "boom"))
        self.assertEqual(bad_transport.value(), server_close_frame(1011, b"internal error"))
        good.dataReceived(client_frame(OP_TEXT, "still here"))
        self.assertEqual(good_transport.value(), encode_text("still here"))
        self.assertFalse(good_transport.disconnecting)
        self.flushLoggedErrors(RuntimeError)

    def test_fan_out_writes_one_frame_to_every_open_session(self):
        sessions = [self.open_session() for _ in range(3)]
        closing, closing_transport = sessions[2]
        closing.close()
        closing_transport.clear()
        message = PreparedMessage.text("to all")
        frame = encode_text("to all")
        sent = self.server.fan_out(message, self.server.sessions.values())
        self.assertEqual(sent, 2)
        self.assertEqual([t.value() for _, t in sessions], [frame, frame, b""])


class ClosingTests(Harness):
    def test_client_close_is_answered_then_the_server_closes_tcp(self):
        protocol, transport = self.open_session()
        self.clock.advance(2.5)
        protocol.dataReceived(client_frame(OP_CLOSE, close_payload(1000, "bye")))
        self.assertEqual(transport.value(), server_close_frame(1000))
        self.assertTrue(transport.disconnecting)
        self.lose(protocol, transport)
        (session, record), = self.app.closed
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean,
                          record.duration), (1000, "bye", "client", True, 2.5))
        self.assertNotIn(protocol.id, self.server.sessions)
        self.assertEqual(self.server.stats.closes[1000], 1)

    def test_server_close_waits_for_the_client_answer(self):
        protocol, transport = self.open_session()
        protocol.close(4000, "kicked")
        self.assertEqual(transport.value(), server_close_frame(4000, b"kicked"))
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(client_frame(OP_CLOSE, close_payload(4000)))
        self.assertTrue(transport.disconnecting)
        self.lose(protocol, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean),
                         (4000, "kicked", "server", True))

    def test_client_that_does_not_answer_a_close_is_dropped_after_the_close_timeout(self):
        protocol, transport = self.open_session()
        protocol.close(1001, "going away")
        self.clock.advance(5.5)
        self.assertTrue(transport.disconnecting)  # StringTransport's abortConnection
        self.lose(protocol, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.initiated_by, record.clean),
                         (1001, "server", False))

    def test_tcp_lost_without_close_frames_is_recorded_as_1006(self):
        protocol, transport = self.open_session()
        self.lose(protocol, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.initiated_by, record.clean), (1006, "client", False))

    def test_protocol_error_is_recorded_with_its_code_and_reason(self):
        protocol, transport = self.open_session()
        protocol.dataReceived(b"\x81\x05hello")  # unmasked
        self.assertEqual(transport.value(), server_close_frame(1002, b"client frame is not masked"))
        self.lose(protocol, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean),
                         (1002, "client frame is not masked", "server", False))

    def test_bytes_after_the_close_are_read_and_discarded(self):
        protocol, transport = self.open_session()
        protocol.dataReceived(client_frame(OP_CLOSE))
        transport.clear()
        protocol.dataReceived(client_frame(OP_TEXT, "late"))
        self.assertEqual(transport.value(), b"")


class HeartbeatTests(Harness):
    def test_every_open_session_is_pinged_each_interval_and_the_pong_gives_the_rtt(self):
        protocol, transport = self.open_session()
        self.clock.advance(30)
        payload = heartbeat_ping_payload(1)
        self.assertEqual(transport.value(), bytes([0x80 | OP_PING, len(payload)]) + payload)
        self.clock.advance(0.25)
        protocol.dataReceived(client_frame(OP_PONG, payload))
        self.assertEqual(protocol.rtt, 0.25)
        self.assertEqual(protocol.last_heartbeat, 30.25)
        self.assertIsNone(protocol.ping_sent_at)
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        self.assertTrue(transport.value().endswith(heartbeat_ping_payload(2)))

    def test_an_unsolicited_or_stale_pong_does_not_count(self):
        protocol, transport = self.open_session()
        self.clock.advance(30)
        protocol.dataReceived(client_frame(OP_PONG, b"something else"))
        self.assertIsNone(protocol.rtt)
        self.assertIsNotNone(protocol.ping_sent_at)

    def test_no_pong_within_the_timeout_closes_with_1011(self):
        protocol, transport = self.open_session()
        self.clock.advance(30)
        transport.clear()
        self.clock.advance(9.9)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.1)
        self.assertEqual(transport.value(), server_close_frame(1011, b"heartbeat timeout"))
        self.assertEqual(self.server.stats.heartbeat_timeouts, 1)
        self.clock.advance(5.5)  # and the dead peer does not answer the close either
        self.assertTrue(transport.disconnecting)
        self.lose(protocol, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean),
                         (1011, "heartbeat timeout", "server", False))

    def test_one_round_encodes_one_ping_for_all_sessions(self):
        sessions = [self.open_session() for _ in range(3)]
        self.clock.advance(30)
        values = {transport.value() for _, transport in sessions}
        self.assertEqual(len(values), 1)


class SpreadHeartbeatTests(Harness):
    """A round over more than SPREAD_CHUNK sessions is pinged in chunks,
    one every interval / SPREAD_STEPS seconds, each with its own timeout."""

    def setUp(self):
        patcher = patch("presence.net.heartbeat.SPREAD_CHUNK", 2)
        patcher.start()
        self.addCleanup(patcher.stop)
        super().setUp()

    def pinged(self, sessions):
        return [transport.value().endswith(heartbeat_ping_payload(1)) for _, transport in sessions]

    def test_a_large_round_is_spread_over_the_interval(self):
        sessions = [self.open_session() for _ in range(5)]
        self.clock.advance(30)
        self.assertEqual(self.pinged(sessions), [True, True, False, False, False])
        self.clock.advance(3)
        self.assertEqual(self.pinged(sessions), [True, True, True, True, False])
        self.clock.advance(3)
        self.assertEqual(self.pinged(sessions), [True] * 5)

    def test_each_chunk_times_out_a_timeout_after_its_own_ping(self):
        for _ in range(3):
            self.open_session()
        self.clock.advance(30)
        self.clock.advance(3)  # the second chunk (the Clock runs a call at the time it is
        self.clock.advance(6.5)  # advanced to, so the steps are taken one by one)
        self.assertEqual(self.server.stats.heartbeat_timeouts, 0)
        self.clock.advance(0.5)  # 10 s after the first chunk's ping
        self.assertEqual(self.server.stats.heartbeat_timeouts, 2)
        self.clock.advance(2.5)
        self.assertEqual(self.server.stats.heartbeat_timeouts, 2)
        self.clock.advance(0.5)  # 10 s after the second chunk's, 3 s later
        self.assertEqual(self.server.stats.heartbeat_timeouts, 3)

    def test_a_session_that_closed_before_its_chunk_is_skipped(self):
        sessions = [self.open_session() for _ in range(3)]
        self.clock.advance(30)
        protocol, transport = sessions[2]
        transport.clear()
        self.lose(protocol, transport)
        self.clock.advance(3)
        self.assertEqual(transport.value(), b"")


class LongTimeoutHeartbeatTests(Harness):
    settings = dict(Harness.settings, heartbeat_interval=10.0, heartbeat_timeout=25.0)

    def test_an_outstanding_ping_is_not_repeated_and_expires_at_a_later_round(self):
        protocol, transport = self.open_session()
        self.clock.advance(10)
        transport.clear()
        self.clock.advance(10)
        self.assertEqual(transport.value(), b"")  # still waiting: no second ping
        self.clock.advance(10)  # 20 s after the ping, not yet 25
        self.assertEqual(transport.value(), b"")
        self.clock.advance(10)
        self.assertEqual(transport.value(), server_close_frame(1011, b"heartbeat timeout"))


class FlowControlTests(Harness):
    settings = dict(Harness.settings, max_outgoing_buffer=1000)

    def test_a_client_that_stops_reading_pauses_reading_and_is_dropped_past_the_bound(self):
        protocol, transport = self.open_session()
        protocol.pauseProducing()  # what the transport does when its buffer is full
        self.assertEqual(transport.producerState, "paused")  # we stop reading from it too
        protocol.send_binary(b"x" * 600)
        self.assertFalse(transport.disconnecting)
        protocol.send_binary(b"x" * 600)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.slow_consumers, 1)
        self.lose(protocol, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.initiated_by, record.clean), (1006, "server", False))
        self.assertEqual(record.reason, "slow consumer: more than 1000 bytes queued")

    def test_reading_resumes_when_the_client_catches_up(self):
        protocol, transport = self.open_session()
        protocol.pauseProducing()
        protocol.send_binary(b"x" * 600)
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        protocol.pauseProducing()
        protocol.send_binary(b"x" * 600)  # the count starts again at each pause
        self.assertFalse(transport.disconnecting)

    def test_the_application_can_pause_reading(self):
        protocol, transport = self.open_session()
        protocol.pause_reading()
        self.assertEqual(transport.producerState, "paused")
        protocol.pauseProducing()
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "paused")  # still paused by the app
        protocol.resume_reading()
        self.assertEqual(transport.producerState, "producing")


class ShutdownTests(Harness):
    def test_close_all_sends_going_away_to_every_session(self):
        sessions = [self.open_session() for _ in range(2)]
        self.server.close_all()
        for _, transport in sessions:
            self.assertEqual(transport.value(), server_close_frame(1001, b"server shutting down"))


class TakingTurnsTests(Harness):
    """A session with a burst of messages handles as many as a reactor
    turn's budget allows, then waits (not read from) for its turn while the
    others are served; it loses nothing, and keeps its order."""

    def setUp(self):
        super().setUp()
        clock, text_received = self.clock, self.app.text_received

        def slow(session, text):
            # Every message costs 1 ms of the reactor's time (time passes;
            # no other reactor turn runs meanwhile, as in a real handler).
            clock.rightNow += 0.001
            text_received(session, text)
        self.app.text_received = slow

    def test_a_burst_waits_its_turn_and_another_session_is_served_meanwhile(self):
        busy, busy_transport = self.open_session()
        other, other_transport = self.open_session()
        busy.dataReceived(b"".join(client_frame(OP_TEXT, "m%d" % n) for n in range(100)))
        handled = len(server_frames(busy_transport.value()))
        self.assertLess(handled, 40)  # about TURN_BUDGET's worth, then it waits
        self.assertEqual(busy_transport.producerState, "paused")
        other.dataReceived(client_frame(OP_PING, b"are you there"))
        self.assertEqual(other_transport.value(), b"\x8a\x0dare you there")  # at once
        for _ in range(100):
            if busy_transport.producerState != "paused":
                break
            self.clock.advance(0)  # the next reactor turns give the turns
        self.assertEqual([payload for _, payload in server_frames(busy_transport.value())],
                         [b"m%d" % n for n in range(100)])
        self.assertEqual(busy_transport.producerState, "producing")

    def test_turns_are_given_by_one_call_at_a_time_however_many_wait_again(self):
        server, clock = self.server, self.clock
        give_turns, calls = server._give_turns, []

        def counted():
            calls.append(len(server._turns))
            give_turns()
        server._give_turns = counted

        class Waiting:
            turns = 0

            def take_turn(self):
                self.turns += 1
                clock.rightNow += 0.05  # a turn that spends the budget
                if self.turns < 3:
                    server.wait_turn(self)

        waiting = [Waiting() for _ in range(3)]
        for session in waiting:
            server.wait_turn(session)
        clock.advance(0)
        self.assertEqual([session.turns for session in waiting], [3, 3, 3])
        # One call a reactor turn, each with a turn to give (they once
        # multiplied: two more calls for every turn given).
        self.assertNotIn(0, calls)
        self.assertEqual(len(calls), 9)
