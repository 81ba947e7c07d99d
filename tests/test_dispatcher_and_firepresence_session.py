"""One port for every client, without sockets: the dispatcher routes by the
request head, and a firepresence session speaks JSON lines (Clock for the
timers, StringTransport for the wire)."""

import json

from presence.firepresence.connection import FirepresenceConnection
from presence.net.firepresence import FirepresenceSession
from presence.net.heartbeat import HeartbeatRound
from presence.net.websocket import WebSocketSession
from presence.websocket.connection import ServerConnection
from presence.websocket.frames import OP_TEXT, encode_frame, heartbeat_ping_payload
from presence.wire.prepared import PreparedMessage

from .helpers.framing import FIREPRESENCE, FIREPRESENCE_ACCEPTED, upgrade_request
from .helpers.transports import Harness


def lines(transport):
    return [json.loads(line) for line in transport.value().splitlines()]


class DispatchTests(Harness):
    def test_websocket_and_firepresence_requests_get_their_sessions(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(upgrade_request())
        self.assertIsInstance(transport.protocol, WebSocketSession)
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(FIREPRESENCE)
        self.assertIsInstance(transport.protocol, FirepresenceSession)
        self.assertEqual(transport.value(), FIREPRESENCE_ACCEPTED)
        self.assertEqual(dict(self.server.stats.sessions_opened),
                         {"websocket": 1, "firepresence": 1})

    def test_a_request_without_upgrade_gets_426_naming_both_protocols(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.value(), (
            b"HTTP/1.1 426 Upgrade Required\r\n"
            b"Upgrade: websocket, firepresence/1.0\r\nConnection: Upgrade\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 119\r\n"
            b"Connection: close\r\n\r\n"
            b"this port speaks WebSocket, firepresence and SSE: ask for one with Upgrade, "
            b"or GET /sse with Accept: text/event-stream\n"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.handshakes_refused["no_upgrade"], 1)

    def test_an_upgrade_to_something_else_gets_426_too(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 426 Upgrade Required\r\n"))

    def test_a_malformed_head_gets_400_with_a_body(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n"))
        self.assertTrue(transport.value().endswith(b"header field without a colon\n"))

    def test_the_handshake_timeout_applies_before_dispatch(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(b"OPTIONS / HTTP/1.1\r\n")
        self.clock.advance(10.5)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.handshakes_refused["handshake_timeout"], 1)

    def test_a_firepresence_refusal_is_answered_by_the_firepresence_session(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(FIREPRESENCE.replace(b"OPTIONS", b"POST"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n"))
        self.assertTrue(transport.value().endswith(
            b"a firepresence handshake must use OPTIONS, not POST\n"))
        self.assertEqual(self.server.sessions, {})


class TrustedProxyTests(Harness):
    settings = dict(Harness.settings, trusted_proxies=["192.0.2.0/24"])

    def test_a_trusted_peer_names_the_client(self):
        dispatcher, transport = self.connect()  # peer 192.0.2.7
        dispatcher.dataReceived(upgrade_request(extra=["X-Forwarded-For: 198.51.100.20"]))
        session = transport.protocol
        self.assertEqual((session.client_ip, session.proxy), ("198.51.100.20", "192.0.2.7"))


class UntrustedPeerTests(Harness):
    settings = dict(Harness.settings, trusted_proxies=["10.0.0.0/8"])

    def test_a_forged_header_from_an_untrusted_peer_is_ignored(self):
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(FIREPRESENCE.replace(
            b"\r\n\r\n", b"\r\nX-Forwarded-For: 198.51.100.20\r\n\r\n"))
        session = transport.protocol
        self.assertEqual((session.client_ip, session.proxy), ("192.0.2.7", None))


class FirepresenceTests(Harness):
    settings = dict(Harness.settings, max_message_size=64, max_bad_lines=3)

    def test_json_lines_reach_the_application_and_answers_are_lines(self):
        session, transport = self.open_firepresence()
        session.dataReceived(b'{"type":"hello","n":1}\n{"type":"hel')
        session.dataReceived(b'lo","n":2}\n')
        # The recording application echoes text back.
        self.assertEqual(lines(transport), [{"type": "hello", "n": 1}, {"type": "hello", "n": 2}])
        self.assertEqual((session.messages_in, session.messages_out), (2, 2))

    def test_bad_lines_get_error_lines_and_too_many_close_with_1007(self):
        session, transport = self.open_firepresence()
        session.dataReceived(b"nope\n[1]\n")
        self.assertEqual(lines(transport), [
            {"type": "error", "reason": "line is not JSON"},
            {"type": "error", "reason": "line is not a JSON object"}])
        transport.clear()
        session.dataReceived(b'{"a":"' + b"x" * 100 + b'"}\n')
        self.assertEqual(lines(transport), [
            {"type": "error", "reason": "line longer than 64 bytes"},
            {"type": "close", "code": 1007, "reason": "too many malformed lines"}])
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.server.stats.protocol_errors["line is not JSON"], 1)
        self.lose(session, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean),
                         (1007, "too many malformed lines", "server", True))

    def test_a_client_ping_is_answered_with_its_id(self):
        session, transport = self.open_firepresence()
        session.dataReceived(b'{"type":"ping","id":"abc"}\n')
        self.assertEqual(lines(transport), [{"type": "pong", "id": "abc"}])
        self.assertEqual(session.messages_in, 0)

    def test_heartbeat_pings_are_lines_and_the_pong_gives_the_rtt(self):
        session, transport = self.open_firepresence()
        self.clock.advance(30)
        self.assertEqual(lines(transport), [{"type": "ping", "id": 1}])
        self.clock.advance(0.5)
        session.dataReceived(b'{"type":"pong","id":1}\n')
        self.assertEqual(session.rtt, 0.5)

    def test_no_pong_closes_with_1011_heartbeat_timeout(self):
        session, transport = self.open_firepresence()
        self.clock.advance(30)
        self.clock.advance(10)
        self.assertEqual(lines(transport)[-1],
                         {"type": "close", "code": 1011, "reason": "heartbeat timeout"})

    def test_a_client_close_is_answered_and_recorded(self):
        session, transport = self.open_firepresence()
        self.clock.advance(3)
        session.dataReceived(b'{"type":"close","code":4000,"reason":"bye"}\n{"type":"late"}\n')
        self.assertEqual(lines(transport), [{"type": "close", "code": 4000, "reason": ""}])
        self.assertTrue(transport.disconnecting)
        self.lose(session, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.reason, record.initiated_by, record.clean,
                          record.duration), (4000, "bye", "client", True, 3))

    def test_the_server_close_is_a_final_line(self):
        session, transport = self.open_firepresence()
        session.close(4001, "kicked")
        self.assertEqual(lines(transport), [{"type": "close", "code": 4001, "reason": "kicked"}])
        self.assertTrue(transport.disconnecting)
        self.assertFalse(session.send_text('{"type":"too late"}'))

    def test_tcp_lost_without_a_close_line_is_1006(self):
        session, transport = self.open_firepresence()
        self.lose(session, transport)
        record = self.app.closed[0][1]
        self.assertEqual((record.code, record.initiated_by, record.clean), (1006, "client", False))

    def test_fan_out_reaches_websocket_and_firepresence_sessions_alike(self):
        firepresence, fp_transport = self.open_firepresence()
        websocket, ws_transport = self.open_session()
        message = PreparedMessage.text('{"type":"message","data":1}')
        self.assertEqual(self.server.fan_out(message, self.server.sessions.values()), 2)
        self.assertEqual(fp_transport.value(), b'{"type":"message","data":1}\n')
        self.assertEqual(ws_transport.value(), encode_frame(OP_TEXT, message.payload))
        self.assertFalse(firepresence.send_prepared(PreparedMessage.binary(b"\x00")))

    def test_a_newline_in_sent_text_is_refused(self):
        session, transport = self.open_firepresence()
        with self.assertRaises(ValueError):
            session.send_text('{"a":\n1}')


def test_heartbeat_round_has_every_protocols_ping_each_encoded_once():
    heartbeat_round = HeartbeatRound(7)
    line, pong_id = heartbeat_round.ping(FirepresenceConnection(100))
    assert (line, pong_id) == (b'{"type":"ping","id":7}\n', 7)
    frame, payload = heartbeat_round.ping(ServerConnection())
    assert frame == b"\x89\x0c" + payload and payload == heartbeat_ping_payload(7)
    assert heartbeat_round.ping(ServerConnection())[0] is frame
