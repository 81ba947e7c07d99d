"""The server side of an open WebSocket connection (RFC 6455 sections 5-7),
rule by rule: masked client frames go in, events and server frames come out.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presence.websocket import mask as mask_paths
from presence.websocket.connection import ServerConnection
from presence.websocket.extensions import Extension
from presence.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    RSV2,
    RSV3,
    encode_close_payload,
    frame_header,
)
from presence.websocket.mask import unmask, unmask_pure
from presence.wire.close import CloseRecord
from presence.wire.events import (
    CLOSED,
    CLOSING,
    OPEN,
    BinaryMessage,
    CloseReceived,
    InvalidState,
    Ping,
    Pong,
    ProtocolError,
    TextMessage,
)

from .helpers.framing import MASK, assert_failed, client_frame, receive, server_close_frame


def text(data, fin=True, mask=MASK):
    return client_frame(OP_TEXT, data.encode("utf-8") if isinstance(data, str) else data,
                        fin, mask=mask)


def continuation(data, fin=True, mask=MASK):
    return client_frame(OP_CONTINUATION,
                        data.encode("utf-8") if isinstance(data, str) else data, fin, mask=mask)


def close_frame(code=None, reason=b"", mask=MASK):
    payload = b"" if code is None else code.to_bytes(2, "big") + reason
    return client_frame(OP_CLOSE, payload, mask=mask)


# ------------------------------------------------------------------- the helper


def test_the_helper_builds_the_rfc_masked_hello_frame():
    # RFC 6455 5.7: a single-frame masked text message containing "Hello".
    assert text("Hello") == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"


# ------------------------------------------------------------------ messages


def test_a_masked_text_frame_is_a_text_message():
    conn = ServerConnection()

    events = receive(conn, b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")

    assert events == [TextMessage("Hello")]
    assert conn.data_to_send() == b""
    assert conn.state == OPEN


def test_a_masked_binary_frame_is_a_binary_message():
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_BINARY, b"\x00\x01\xfe\xff"))

    assert events == [BinaryMessage(b"\x00\x01\xfe\xff")]


def test_a_fragmented_text_message_is_delivered_whole():
    # RFC 6455 5.7: "Hel" then "lo", here masked.
    conn = ServerConnection()

    events = receive(conn, text("Hel", fin=False) + continuation("lo"))

    assert events == [TextMessage("Hello")]


def test_a_fragmented_binary_message_is_delivered_whole():
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_BINARY, b"\x01\x02", fin=False)
                     + continuation(b"", fin=False) + continuation(b"\x03"))

    assert events == [BinaryMessage(b"\x01\x02\x03")]


def test_empty_messages_are_delivered():
    conn = ServerConnection()

    events = receive(conn, text("") + client_frame(OP_BINARY, b"")
                     + text("", fin=False) + continuation(""))

    assert events == [TextMessage(""), BinaryMessage(b""), TextMessage("")]


def test_several_messages_in_one_read_are_delivered_in_order():
    conn = ServerConnection()

    events = receive(conn, text("one") + client_frame(OP_BINARY, b"two") + text("three"))

    assert events == [TextMessage("one"), BinaryMessage(b"two"), TextMessage("three")]


def test_a_frame_split_across_reads_is_delivered_when_complete():
    conn = ServerConnection()
    frame = text("Hello")

    assert receive(conn, frame[:1]) == []
    assert receive(conn, frame[1:4]) == []
    assert receive(conn, frame[4:8]) == []
    assert receive(conn, frame[8:]) == [TextMessage("Hello")]


def test_nothing_is_parsed_until_events_is_iterated():
    conn = ServerConnection()
    conn.receive_data(b"\x81\x05Hello")  # unmasked: a protocol error once parsed

    assert conn.state == OPEN
    assert conn.data_to_send() == b""
    assert_failed(conn, list(conn.events()), 1002)


# ------------------------------------------------------------ framing errors


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_a_reserved_opcode_fails_the_connection_with_1002(opcode):
    conn = ServerConnection()

    events = receive(conn, client_frame(opcode, b"x"))

    assert events == [ProtocolError(1002, "reserved opcode %d" % opcode)]
    assert conn.data_to_send() == server_close_frame(1002, b"reserved opcode %d" % opcode)
    assert conn.state == CLOSED


@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3])
def test_rsv_bits_without_a_negotiated_extension_fail_with_1002(rsv):
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_TEXT, b"x", rsv=rsv))

    assert_failed(conn, events, 1002)


@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3])
def test_rsv_bits_on_a_control_frame_fail_with_1002(rsv):
    conn = ServerConnection()

    assert_failed(conn, receive(conn, client_frame(OP_PING, b"x", rsv=rsv)), 1002)


@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3])
def test_rsv_bits_on_a_continuation_frame_fail_with_1002(rsv):
    conn = ServerConnection()

    events = receive(conn, text("a", fin=False) + client_frame(OP_CONTINUATION, b"b", rsv=rsv))

    assert_failed(conn, events, 1002)


def test_an_unmasked_client_frame_fails_with_1002():
    # RFC 6455 5.7's unmasked "Hello": a server MUST close on it (5.1).
    conn = ServerConnection()

    events = receive(conn, b"\x81\x05\x48\x65\x6c\x6c\x6f")

    assert events == [ProtocolError(1002, "client frame is not masked")]
    assert conn.data_to_send() == b"\x88\x1c\x03\xeaclient frame is not masked"


def test_an_unmasked_frame_is_refused_from_its_first_two_bytes():
    conn = ServerConnection()

    assert_failed(conn, receive(conn, b"\x82\x7e"), 1002)


def test_a_16_bit_length_under_126_fails_with_1002():
    conn = ServerConnection()
    # 100 written with the 16-bit form: "\x82" FIN+binary, "\xfe" MASK+126.
    header = b"\x82\xfe\x00\x64" + MASK

    events = receive(conn, header)  # refused before any payload arrives

    assert_failed(conn, events, 1002)


def test_a_64_bit_length_under_65536_fails_with_1002():
    conn = ServerConnection()
    header = b"\x82\xff" + (65535).to_bytes(8, "big") + MASK

    assert_failed(conn, receive(conn, header), 1002)


def test_a_small_length_in_64_bit_form_fails_with_1002():
    conn = ServerConnection()
    header = b"\x82\xff" + (100).to_bytes(8, "big") + MASK

    assert_failed(conn, receive(conn, header + unmask_pure(MASK, b"x" * 100)), 1002)


def test_a_64_bit_length_with_the_top_bit_set_fails_with_1002():
    conn = ServerConnection()
    header = b"\x82\xff" + ((1 << 63) | 65536).to_bytes(8, "big") + MASK

    assert_failed(conn, receive(conn, header), 1002)


def test_a_ping_without_fin_fails_with_1002():
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_PING, b"x", fin=False))

    assert events == [ProtocolError(1002, "fragmented control frame")]


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_a_control_frame_with_a_126_byte_payload_fails_with_1002(opcode):
    conn = ServerConnection()

    events = receive(conn, client_frame(opcode, b"\x03\xe8" + b"x" * 124))

    assert events == [ProtocolError(1002, "control frame payload over 125 bytes")]


def test_a_ping_with_a_125_byte_payload_is_answered():
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_PING, b"p" * 125))

    assert events == [Ping(b"p" * 125, b"\x8a\x7d" + b"p" * 125)]


def test_a_continuation_without_a_message_to_continue_fails_with_1002():
    conn = ServerConnection()

    events = receive(conn, continuation("orphan"))

    assert events == [ProtocolError(1002, "continuation frame without a message to continue")]


def test_a_continuation_after_a_complete_message_fails_with_1002():
    conn = ServerConnection()

    events = receive(conn, text("done") + continuation("more"))

    assert events[0] == TextMessage("done")
    assert_failed(conn, events, 1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_a_new_data_frame_inside_a_fragmented_message_fails_with_1002(opcode):
    conn = ServerConnection()

    events = receive(conn, text("Hel", fin=False) + client_frame(opcode, b"lo"))

    assert events == [ProtocolError(1002, "new data frame before the fragmented message ended")]


# ----------------------------------------------------------- control frames


def test_a_ping_carries_its_pong_and_nothing_is_queued():
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_PING, b"are you there"))

    assert events == [Ping(b"are you there", b"\x8a\x0dare you there")]
    assert conn.data_to_send() == b""


def test_an_empty_ping_is_answered_by_an_empty_pong():
    conn = ServerConnection()

    assert receive(conn, client_frame(OP_PING)) == [Ping(b"", b"\x8a\x00")]


def test_a_ping_between_fragments_is_answered_and_the_message_reassembles():
    conn = ServerConnection()

    events = receive(conn, text("Hel", fin=False) + client_frame(OP_PING, b"ping")
                     + continuation("lo"))

    assert events == [Ping(b"ping", b"\x8a\x04ping"), TextMessage("Hello")]
    assert events[0].pong == b"\x8a" + bytes([len(b"ping")]) + b"ping"


def test_an_unsolicited_pong_is_reported_and_not_answered():
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_PONG, b"heartbeat"))

    assert events == [Pong(b"heartbeat")]
    assert conn.data_to_send() == b""
    assert conn.state == OPEN


def test_a_control_frame_split_across_reads_waits_for_its_payload():
    conn = ServerConnection()
    frame = client_frame(OP_PING, b"split")

    assert receive(conn, frame[:7]) == []
    assert receive(conn, frame[7:]) == [Ping(b"split", b"\x8a\x05split")]


# ----------------------------------------------------------------- UTF-8


def test_invalid_utf_8_in_a_text_message_fails_with_1007():
    conn = ServerConnection()

    events = receive(conn, text(b"bad \xff byte"))

    assert events == [ProtocolError(1007, "invalid UTF-8 in text message")]
    assert conn.data_to_send() == server_close_frame(1007, b"invalid UTF-8 in text message")


@pytest.mark.parametrize("payload", [
    b"\xc0\xaf",              # overlong "/"
    b"\xed\xa0\x80",          # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",      # beyond U+10FFFF
    b"\x80",                  # a lone continuation byte
    b"\xe2\x82",              # a character cut short at the end of the message
])
def test_every_kind_of_invalid_utf_8_fails_with_1007(payload):
    conn = ServerConnection()

    assert_failed(conn, receive(conn, text(payload)), 1007)


def test_invalid_utf_8_fails_in_the_first_fragment_before_the_last_arrives():
    conn = ServerConnection()

    events = receive(conn, text(b"valid, then \xff", fin=False))

    assert_failed(conn, events, 1007)


def test_invalid_utf_8_fails_in_a_middle_fragment_before_the_last_arrives():
    conn = ServerConnection()

    events = receive(conn, text("fine", fin=False) + continuation(b"\xce\xba\xff", fin=False))

    assert_failed(conn, events, 1007)


def test_invalid_utf_8_fails_mid_frame_before_the_rest_of_the_payload_arrives():
    conn = ServerConnection()
    frame = text(b"abc\xffdef" + b"x" * 50)

    events = receive(conn, frame[:6 + 4])  # header, mask and the first 4 payload bytes

    assert_failed(conn, events, 1007)


@pytest.mark.parametrize("payload, bad_at", [
    (b"abc\xff", 3),             # never valid in UTF-8
    (b"\xc0\xaf", 0),            # 0xc0 only starts overlong forms
    (b"\xf4\x90\x80\x80", 1),    # 0xf4 0x90 is already beyond U+10FFFF
    (b"\xf0\x80\x80\x80", 1),    # 0xf0 0x80 is already overlong
    (b"\xe2\x82A", 2),           # a character interrupted by ASCII
])
def test_invalid_utf_8_fails_in_the_read_that_delivers_the_first_impossible_byte(payload, bad_at):
    conn = ServerConnection()
    frame = text(payload + b" and the rest of the message")

    for i in range(6 + bad_at):  # header, mask, payload up to the bad byte
        assert receive(conn, frame[i:i + 1]) == [], i
    assert_failed(conn, receive(conn, frame[6 + bad_at:6 + bad_at + 1]), 1007)


def test_invalid_utf_8_mid_frame_fails_in_a_fragment_split_across_reads():
    conn = ServerConnection()
    second = continuation(b"ok\xed\xa0\x80 and more", fin=False)

    assert receive(conn, text("start", fin=False) + second[:6 + 3]) == []
    assert_failed(conn, receive(conn, second[6 + 3:6 + 5]), 1007)


def test_a_character_cut_short_at_the_end_of_a_fragmented_message_fails_with_1007():
    conn = ServerConnection()

    events = receive(conn, text(b"\xe2\x82", fin=False) + continuation(b""))

    assert_failed(conn, events, 1007)


def test_a_character_split_across_fragments_is_accepted():
    conn = ServerConnection()
    euro = "\u20ac".encode("utf-8")  # e2 82 ac

    events = receive(conn, text(euro[:1], fin=False) + continuation(euro[1:2], fin=False)
                     + continuation(euro[2:] + b"!"))

    assert events == [TextMessage("\u20ac!")]


def test_a_character_split_across_reads_is_accepted():
    conn = ServerConnection()
    frame = text("\U0001f600 smile")  # a 4-byte character first

    assert receive(conn, frame[:6 + 1]) == []
    assert receive(conn, frame[6 + 1:6 + 3]) == []
    assert receive(conn, frame[6 + 3:]) == [TextMessage("\U0001f600 smile")]


# ---------------------------------------------------------- close: client


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999,
                 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_a_close_with_a_valid_code_is_answered_by_echoing_the_code(code):
    conn = ServerConnection()

    events = receive(conn, close_frame(code, b"bye"))

    assert events == [CloseReceived(code, "bye")]
    assert conn.data_to_send() == b"\x88\x02" + code.to_bytes(2, "big")
    assert conn.state == CLOSED
    assert conn.connection_lost() == CloseRecord(code, "bye", "client", True)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_a_close_with_an_invalid_code_fails_with_1002(code):
    conn = ServerConnection()

    events = receive(conn, close_frame(code))

    assert events == [ProtocolError(1002, "invalid close code %d" % code)]
    assert_failed(conn, events, 1002)


def test_a_close_without_payload_is_code_1005_and_answered_by_an_empty_close():
    conn = ServerConnection()

    events = receive(conn, close_frame())

    assert events == [CloseReceived(1005, "")]
    assert conn.data_to_send() == b"\x88\x00"
    assert conn.state == CLOSED
    assert conn.connection_lost() == CloseRecord(1005, "", "client", True)


def test_a_close_with_a_1_byte_payload_fails_with_1002():
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_CLOSE, b"\x03"))

    assert_failed(conn, events, 1002)


def test_a_close_reason_that_is_not_utf_8_fails_with_1007():
    conn = ServerConnection()

    events = receive(conn, close_frame(1000, b"bad \xff reason"))

    assert events == [ProtocolError(1007, "close reason is not valid UTF-8")]
    assert_failed(conn, events, 1007)


def test_a_close_reason_in_utf_8_is_decoded():
    conn = ServerConnection()

    events = receive(conn, close_frame(4000, "\u00e0 bient\u00f4t".encode("utf-8")))

    assert events == [CloseReceived(4000, "\u00e0 bient\u00f4t")]


def test_a_close_between_fragments_ends_the_connection():
    conn = ServerConnection()

    events = receive(conn, text("unfinished", fin=False) + close_frame(1001))

    assert events == [CloseReceived(1001, "")]
    assert conn.data_to_send() == b"\x88\x02\x03\xe9"


def test_nothing_after_a_close_is_parsed():
    conn = ServerConnection()

    events = receive(conn, close_frame(1000) + text("late") + b"\x81\x05Hello")

    assert events == [CloseReceived(1000, "")]
    assert receive(conn, text("later still")) == []
    assert conn.data_to_send() == b"\x88\x02\x03\xe8"


# ---------------------------------------------------------- close: server


def test_send_close_returns_the_close_frame_and_enters_closing():
    conn = ServerConnection()

    frame = conn.send_close(1001, "going away")

    assert frame == b"\x88\x0c\x03\xe9going away"
    assert conn.state == CLOSING
    assert conn.data_to_send() == b""


def test_send_close_without_arguments_sends_1000():
    assert ServerConnection().send_close() == b"\x88\x02\x03\xe8"


def test_messages_are_still_delivered_while_closing():
    conn = ServerConnection()
    conn.send_close(1001, "going away")

    events = receive(conn, text("in flight") + client_frame(OP_BINARY, b"\x01"))

    assert events == [TextMessage("in flight"), BinaryMessage(b"\x01")]
    assert conn.state == CLOSING


def test_a_ping_while_closing_is_reported_without_a_pong():
    conn = ServerConnection()
    conn.send_close()

    assert receive(conn, client_frame(OP_PING, b"x")) == [Ping(b"x", b"")]


def test_the_clients_close_completes_a_server_initiated_close_cleanly():
    conn = ServerConnection()
    conn.send_close(1001, "going away")

    events = receive(conn, close_frame(1001))

    assert events == [CloseReceived(1001, "")]
    assert conn.data_to_send() == b""  # our Close was already sent
    assert conn.state == CLOSED
    assert conn.connection_lost() == CloseRecord(1001, "going away", "server", True)


def test_a_protocol_error_while_closing_sends_no_second_close():
    conn = ServerConnection()
    conn.send_close(1001, "going away")

    events = receive(conn, b"\x81\x05Hello")

    assert events == [ProtocolError(1002, "client frame is not masked")]
    assert conn.data_to_send() == b""
    assert conn.state == CLOSED
    assert conn.connection_lost() == CloseRecord(1001, "going away", "server", False)


#: Every send of the core, for the tests of what may be sent when.
SENDS = [
    lambda conn: conn.send_text("x"),
    lambda conn: conn.send_binary(b"x"),
    lambda conn: conn.send_ping(b"x"),
]


@pytest.mark.parametrize("send", SENDS)
def test_sending_after_send_close_raises_invalid_state(send):
    conn = ServerConnection()
    conn.send_close()

    with pytest.raises(InvalidState):
        send(conn)


@pytest.mark.parametrize("send", SENDS)
def test_sending_after_the_client_closed_raises_invalid_state(send):
    conn = ServerConnection()
    receive(conn, close_frame(1000))

    with pytest.raises(InvalidState):
        send(conn)


def test_a_second_send_close_returns_nothing():
    conn = ServerConnection()
    conn.send_close()

    assert conn.send_close(1011) == b""
    assert conn.close_code == 1000


def test_send_text_binary_and_ping_return_unmasked_frames():
    conn = ServerConnection()

    assert conn.send_text("H\u00e9") == b"\x81\x03H\xc3\xa9"
    assert conn.send_binary(b"\x00") == b"\x82\x01\x00"
    assert conn.send_ping(b"p") == b"\x89\x01p"


def test_a_ping_payload_over_125_bytes_cannot_be_sent():
    with pytest.raises(ValueError):
        ServerConnection().send_ping(b"x" * 126)


def test_connection_lost_without_a_close_is_an_unclean_1006():
    conn = ServerConnection()
    receive(conn, text("hello"))

    record = conn.connection_lost()

    assert record.code == 1006
    assert record.clean is False
    assert record.initiated_by == "client"
    assert conn.state == CLOSED


def test_connection_lost_after_a_protocol_error_records_the_servers_code():
    conn = ServerConnection()
    receive(conn, client_frame(3, b""))

    assert conn.connection_lost() == CloseRecord(1002, "reserved opcode 3", "server", False)


def test_connection_lost_after_send_close_without_an_answer_is_unclean():
    conn = ServerConnection()
    conn.send_close(1001, "going away")

    assert conn.connection_lost() == CloseRecord(1001, "going away", "server", False)


def test_abort_records_the_servers_code_as_unclean():
    conn = ServerConnection()

    conn.abort(1011, "peer stopped reading")

    assert conn.state == CLOSED
    assert conn.connection_lost() == CloseRecord(1011, "peer stopped reading", "server", False)


def test_abort_during_a_close_keeps_the_close_already_under_way():
    conn = ServerConnection()
    conn.send_close(1001, "going away")

    conn.abort(1011, "timed out")

    assert conn.connection_lost() == CloseRecord(1001, "going away", "server", False)


def test_nothing_is_parsed_after_a_protocol_error():
    conn = ServerConnection()

    events = receive(conn, client_frame(OP_BINARY, b"x", rsv=RSV2) + text("same read"))

    assert len(events) == 1
    assert_failed(conn, events, 1002)
    assert receive(conn, text("next read") + client_frame(OP_PING, b"p")) == []
    assert conn.data_to_send() == b""


def test_parsing_is_lazy_so_an_answer_precedes_the_failure_it_arrived_with():
    conn = ServerConnection()
    conn.receive_data(text("question") + b"\x81\x05Hello")  # then an unmasked frame
    events = conn.events()

    assert next(events) == TextMessage("question")
    assert conn.state == OPEN
    answer = conn.send_text("answer")
    assert conn.data_to_send() == b""

    assert next(events) == ProtocolError(1002, "client frame is not masked")
    assert conn.state == CLOSED
    assert answer == b"\x81\x06answer"
    assert conn.data_to_send() == server_close_frame(1002, b"client frame is not masked")
    assert list(events) == []


def test_a_close_queued_while_events_are_out_follows_the_answers():
    conn = ServerConnection()
    conn.receive_data(text("last words") + close_frame(1000))
    events = conn.events()

    assert next(events) == TextMessage("last words")
    assert conn.send_text("reply") == b"\x81\x05reply"
    assert next(events) == CloseReceived(1000, "")
    assert conn.data_to_send() == b"\x88\x02\x03\xe8"


# ------------------------------------------------------------ message size


def test_a_frame_announcing_more_than_the_limit_fails_with_1009_from_its_header():
    conn = ServerConnection(max_message_size=100)
    header = b"\x82\xe5" + MASK  # MASK | 101: 101 bytes announced, none sent

    events = receive(conn, header)

    assert events == [ProtocolError(1009, "message larger than 100 bytes")]
    assert_failed(conn, events, 1009)


def test_a_16_bit_length_over_the_limit_fails_with_1009_from_its_header():
    conn = ServerConnection(max_message_size=1000)
    header = b"\x82\xfe\x03\xe9" + MASK  # 1001 bytes announced

    assert_failed(conn, receive(conn, header), 1009)


def test_a_huge_64_bit_length_fails_with_1009_from_its_header():
    conn = ServerConnection()
    header = b"\x82\xff" + (2 ** 40).to_bytes(8, "big") + MASK

    assert_failed(conn, receive(conn, header), 1009)


def test_a_fragmented_message_over_the_limit_fails_with_1009():
    conn = ServerConnection(max_message_size=100)

    events = receive(conn, client_frame(OP_BINARY, b"a" * 60, fin=False)
                     + continuation(b"b" * 40, fin=False))
    assert events == []
    header = b"\x80\x81" + MASK  # a final continuation of 1 byte: 101 in all

    assert_failed(conn, receive(conn, header), 1009)


def test_a_message_of_exactly_the_limit_is_accepted():
    conn = ServerConnection(max_message_size=100)

    events = receive(conn, client_frame(OP_BINARY, b"a" * 100))

    assert events == [BinaryMessage(b"a" * 100)]


def test_a_fragmented_message_of_exactly_the_limit_is_accepted():
    conn = ServerConnection(max_message_size=100)

    events = receive(conn, text("a" * 60, fin=False) + client_frame(OP_PING, b"p" * 50)
                     + continuation("b" * 40))

    assert events == [Ping(b"p" * 50, b"\x8a\x32" + b"p" * 50), TextMessage("a" * 60 + "b" * 40)]


def test_the_limit_applies_to_each_message_separately():
    conn = ServerConnection(max_message_size=100)

    events = receive(conn, client_frame(OP_BINARY, b"a" * 100) + text("b" * 100))

    assert events == [BinaryMessage(b"a" * 100), TextMessage("b" * 100)]


# ------------------------------------------------------------- extensions


class ReverseExtension(Extension):
    """A test extension on RSV1: its messages arrive reversed."""

    name = "x-reverse"
    rsv = RSV1

    def __init__(self):
        self.pieces = []

    def decode(self, data, end_of_message, limit):
        self.pieces.append(data)
        if not end_of_message:
            return b""
        whole = b"".join(self.pieces)
        self.pieces = []
        return whole[::-1]

    def encode(self, payload):
        return RSV1, payload[::-1]


def test_rsv1_is_allowed_once_an_extension_claims_it():
    conn = ServerConnection(extensions=[ReverseExtension()])

    events = receive(conn, client_frame(OP_TEXT, b"olleh", rsv=RSV1)
                     + client_frame(OP_TEXT, b"plain"))

    assert events == [TextMessage("hello"), TextMessage("plain")]


def test_rsv_bits_no_extension_claims_still_fail_with_1002():
    conn = ServerConnection(extensions=[ReverseExtension()])

    assert_failed(conn, receive(conn, client_frame(OP_TEXT, b"x", rsv=RSV2)), 1002)


def test_outgoing_messages_go_through_the_extension():
    conn = ServerConnection(extensions=[ReverseExtension()])

    assert conn.send_text("abc") == b"\xc1\x03cba"


# ------------------------------------------------------------- round trips


def stream_and_events():
    """A conversation of valid client frames, with a different mask on each,
    and the events it must produce."""
    masks = [bytes((i, 0x80 | i, 0x55 ^ i, 0xff - i)) for i in range(1, 40)]
    mask = iter(masks).__next__
    big = bytes(range(256)) * 256  # 65536 bytes: the 64-bit length form
    frames = [
        text("H\u00e9llo, ", fin=False, mask=mask()),
        client_frame(OP_PING, b"between", mask=mask()),
        continuation("w\u00f6rld ", fin=False, mask=mask()),
        continuation(b"", fin=False, mask=mask()),
        continuation("\u20ac\U0001f600", mask=mask()),
        client_frame(OP_BINARY, b"\x00\xff" * 3, mask=mask()),
        text("", mask=mask()),
        client_frame(OP_BINARY, b"", mask=mask()),
        text("", fin=False, mask=mask()),
        continuation("", mask=mask()),
        client_frame(OP_PONG, b"pong", mask=mask()),
        text("a" * 126, mask=mask()),  # the 16-bit length form
        client_frame(OP_BINARY, big[:200], fin=False, mask=mask()),
        client_frame(OP_PING, b"", mask=mask()),
        continuation(big[200:300], mask=mask()),
        client_frame(OP_BINARY, big, mask=mask()),
        text("\u00e9" * 70, mask=mask()),
        close_frame(1000, b"done", mask=mask()),
    ]
    events = [
        Ping(b"between", b"\x8a\x07between"),
        TextMessage("H\u00e9llo, w\u00f6rld \u20ac\U0001f600"),
        BinaryMessage(b"\x00\xff" * 3),
        TextMessage(""),
        BinaryMessage(b""),
        TextMessage(""),
        Pong(b"pong"),
        TextMessage("a" * 126),
        Ping(b"", b"\x8a\x00"),
        BinaryMessage(big[:300]),
        BinaryMessage(big),
        TextMessage("\u00e9" * 70),
        CloseReceived(1000, "done"),
    ]
    return b"".join(frames), events


STREAM, STREAM_EVENTS = stream_and_events()


def events_when_fed(chunks, **options):
    conn = ServerConnection(**options)
    events = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events.extend(conn.events())
    assert conn.data_to_send() == b"\x88\x02\x03\xe8"
    assert conn.state == CLOSED
    return events


def test_the_conversation_fed_whole_produces_its_events():
    assert events_when_fed([STREAM]) == STREAM_EVENTS


def test_the_conversation_split_at_every_byte_boundary_produces_the_same_events():
    for split in range(len(STREAM) + 1):
        events = events_when_fed([STREAM[:split], STREAM[split:]])
        assert events == STREAM_EVENTS, "split at %d" % split


def test_the_conversation_fed_one_byte_at_a_time_produces_the_same_events():
    chunks = [STREAM[i:i + 1] for i in range(len(STREAM))]

    assert events_when_fed(chunks) == STREAM_EVENTS


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_the_conversation_split_anywhere_produces_the_same_events(points):
    points = sorted(points)
    chunks = [STREAM[a:b] for a, b in zip([0] + points, points + [len(STREAM)])]

    assert events_when_fed(chunks) == STREAM_EVENTS


messages = st.lists(
    st.one_of(
        st.tuples(st.just(OP_TEXT), st.text(max_size=40).map(lambda s: s.encode("utf-8"))),
        st.tuples(st.just(OP_BINARY), st.binary(max_size=300)),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(messages, st.data())
def test_any_messages_fragmented_masked_and_split_anyhow_arrive_intact(messages, data):
    frames = []
    expected = []
    for opcode, payload in messages:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        pieces = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
        for i, piece in enumerate(pieces):
            mask = data.draw(st.binary(min_size=4, max_size=4))
            frames.append(client_frame(opcode if i == 0 else OP_CONTINUATION, piece,
                                       fin=i == len(pieces) - 1, mask=mask))
            if i < len(pieces) - 1 and data.draw(st.booleans()):
                frames.append(client_frame(OP_PING, b"%d" % i, mask=mask))
                expected.append(Ping(b"%d" % i, b"\x8a\x01%d" % i))
        expected.append(TextMessage(payload.decode("utf-8")) if opcode == OP_TEXT
                        else BinaryMessage(payload))
    frames.append(close_frame(1000))
    expected.append(CloseReceived(1000, ""))
    stream = b"".join(frames)
    points = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)])]

    assert events_when_fed(chunks) == expected


BAD_TAILS = {
    "unmasked": b"\x81\x05Hello",
    "reserved opcode": client_frame(5, b"x"),
    "rsv": client_frame(OP_BINARY, b"x", rsv=RSV3),
    "16-bit length not minimal": b"\x82\xfe\x00\x64" + MASK + b"x" * 100,
    "control frame over 125": client_frame(OP_PING, b"p" * 126),
    "invalid UTF-8 mid-message": text(b"ok", fin=False) + continuation(b"\xce\xba\xff" * 40),
    "over the size limit": client_frame(OP_BINARY, b"b" * 2001),
    "close code 1005": close_frame(1005),
    "continuation alone": continuation(b"x"),
}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(BAD_TAILS)), st.data())
def test_a_failure_does_not_depend_on_how_the_bytes_arrive(tail, data):
    stream = text("before", mask=b"\x01\x02\x03\x04") + client_frame(OP_PING, b"p") \
        + BAD_TAILS[tail] + text("after")
    whole = ServerConnection(max_message_size=2000)
    expected = receive(whole, stream)
    expected_bytes = whole.data_to_send()
    assert isinstance(expected[-1], ProtocolError)

    points = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    conn = ServerConnection(max_message_size=2000)
    events = []
    for a, b in zip([0] + points, points + [len(stream)]):
        events.extend(receive(conn, stream[a:b]))

    assert events == expected
    assert conn.data_to_send() == expected_bytes


# ------------------------------------------------------------- encoding


@pytest.mark.parametrize("length, header", [
    (0, b"\x82\x00"),
    (125, b"\x82\x7d"),
    (126, b"\x82\x7e\x00\x7e"),
    (65535, b"\x82\x7e\xff\xff"),
    (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
])
def test_frame_header_uses_the_shortest_length_encoding(length, header):
    assert frame_header(0x80 | OP_BINARY, length) == header


def test_a_long_close_reason_is_cut_to_123_bytes():
    payload = encode_close_payload(1000, "x" * 200)

    assert payload == b"\x03\xe8" + b"x" * 123


@pytest.mark.parametrize("char", ["\u00e9", "\u20ac", "\U0001f600"])
def test_a_long_close_reason_is_cut_on_a_character_boundary(char):
    reason = char * 100
    payload = encode_close_payload(1000, reason)

    data = payload[2:]
    width = len(char.encode("utf-8"))
    assert len(data) == 123 // width * width
    assert data.decode("utf-8") == char * (123 // width)


def test_a_close_payload_for_1005_is_empty():
    assert encode_close_payload(1005, "ignored") == b""



# ------------------------------------------------------------- unmasking


def _unmask_by_definition(mask, data, offset):
    return bytes(b ^ mask[(i + offset) % 4] for i, b in enumerate(data))


# Lengths on both sides of the pure path's switch from the big-integer XOR
# to the strided translations, and not multiples of 4.
_UNMASK_LENGTHS = list(range(13)) + [125, 126, 2047, 2048, 2049, 2050, 65535, 65537]


@pytest.mark.parametrize("path", sorted(mask_paths.AVAILABLE))
def test_every_unmasking_path_xors_each_byte_with_the_mask_byte_at_its_offset(path):
    unmask_with = mask_paths.AVAILABLE[path]
    mask = b"\xa5\x0f\xf0\x5a"
    for length in _UNMASK_LENGTHS:
        data = bytes((i * 37 + length) & 0xFF for i in range(length))
        for offset in range(8):
            assert bytes(unmask_with(mask, data, offset)) == \
                _unmask_by_definition(mask, data, offset), (offset, length)


@pytest.mark.parametrize("path", sorted(mask_paths.AVAILABLE))
def test_every_unmasking_path_takes_a_memoryview(path):
    data = bytes(range(256)) * 20
    unmask_with = mask_paths.AVAILABLE[path]

    assert bytes(unmask_with(MASK, memoryview(data)[3:], 3)) == \
        _unmask_by_definition(MASK, data[3:], 3)


def test_the_test_environment_has_both_c_accelerators():
    # [speedups] and [test] install them, so that CI checks every path.
    assert list(mask_paths.AVAILABLE) == ["websockets", "wsaccel", "pure"]


def test_unmasking_twice_gives_back_the_data():
    data = b"round trip through the mask"

    assert unmask(MASK, unmask(MASK, data)) == data
