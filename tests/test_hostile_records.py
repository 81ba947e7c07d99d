"""What a hostile client can make the server keep about it: close reasons are
held to 123 UTF-8 bytes on every path (a firepresence close line from the
client, a close by an operator or a backend, a reason with a lone
surrogate), and every record the dashboard renders is bounded."""

import json

from twisted.internet import defer

from presence.wire.close import MAX_REASON_BYTES, CloseRecord
from presence.wire.jsontext import MAX_SHOWN

from .helpers.hubs import HubTestCase
from .helpers.transports import Harness
from .helpers.waiting import lose, run, until

HUGE = "é" * (1024 * 1024 // 2)  # a 1 MiB reason


def close_line(reason, code=4000):
    return json.dumps({"type": "close", "code": code, "reason": reason},
                      ensure_ascii=False).encode() + b"\n"


class CloseReasonTests(Harness):
    settings = dict(Harness.settings, max_message_size=2 * 1024 * 1024)

    def test_a_client_close_line_with_a_huge_reason_keeps_123_bytes_of_it(self):
        session, transport = self.open_firepresence()
        session.dataReceived(close_line(HUGE))
        self.lose(session, transport)
        (_, record), = self.app.closed
        self.assertEqual(record.reason, "é" * (MAX_REASON_BYTES // 2))  # whole characters
        self.assertLessEqual(len(record.reason.encode("utf-8")), MAX_REASON_BYTES)

    def test_a_reason_with_a_lone_surrogate_keeps_its_record(self):
        session, transport = self.open_firepresence()
        session.dataReceived(b'{"type":"close","code":4000,"reason":"bad \\ud800 pair"}\n')
        self.lose(session, transport)
        (_, record), = self.app.closed
        self.assertEqual(record, CloseRecord(4000, "bad ? pair", "client", True, 0.0))
        record.reason.encode("utf-8")  # a record can always be written out

    def test_a_server_close_with_a_huge_reason_sends_and_keeps_123_bytes(self):
        for open_session in (self.open_firepresence, self.open_session):
            session, transport = open_session()
            session.close(4000, HUGE)
            self.assertLess(len(transport.value()), 200)
            self.lose(session, transport)
            record = self.app.closed[-1][1]
            self.assertLessEqual(len(record.reason.encode("utf-8")), MAX_REASON_BYTES)


class RecordsInRedisTests(HubTestCase):
    @defer.inlineCallbacks
    def test_the_records_the_dashboard_renders_are_bounded(self):
        node = self.start_node()
        session, transport = self.open_session(node, account="a" * 10000)
        session.user_agent = "u" * 10000
        yield defer.ensureDeferred(node.hub.answers.answer(
            {"reply": self.keys.reply("t"), "what": "session", "session": session.id}))
        answer = json.loads((yield self.store.replies(self.keys.reply("t")))[0])
        self.assertLessEqual(len(answer["row"]["account"]), MAX_SHOWN)
        self.assertLessEqual(len(answer["row"]["user_agent"]), MAX_SHOWN)
        session.close(4000, HUGE)
        lose(session, transport)
        entries = yield run(until(lambda: defer.ensureDeferred(node.hub.queries.closes()),
                                  10, "the close record"))
        entry, = entries
        self.assertLessEqual(len(entry["account"]), MAX_SHOWN)
        self.assertLessEqual(len(entry["reason"].encode("utf-8")), MAX_REASON_BYTES)
        raw, = yield self.store.recent_closes(10)
        self.assertLess(len(raw), 2048)
