"""The ticket store against a real Redis (the embedded redis-server).

A ticket is issued once, redeemed once, on any node, within its TTL; Redis
holds a SHA-256 of it, never the ticket itself."""

import base64
import hashlib
import json
import re
import time

from twisted.internet import defer, reactor

from presence.hub.tickets import Ticket, TicketStore, fingerprint
from presence.net.interfaces import TicketStoreUnavailable
from presence.redis.engine import RedisUnavailable
from presence.redis.keys import PresenceKeys
from presence.redis.store import PresenceStore

from .helpers.redis import ENGINE_TIMEOUT, RedisTestCase, reconnected
from .helpers.waiting import run, until

URL_SAFE = re.compile(r"\A[A-Za-z0-9_-]+\Z")


def sha256_hex(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class IssueAndRedeemTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_redeeming_an_issued_ticket_gives_back_what_was_issued(self):
        before = reactor.seconds()
        ticket, ttl = yield self.tickets.issue(
            "user-42", {"name": "Ada", "plan": "pro"}, ["room:lobby", "user:42"], "203.0.113.7")
        after = reactor.seconds()
        self.assertEqual(ttl, 10)

        redeemed = yield self.tickets.redeem(ticket)

        self.assertIsInstance(redeemed, Ticket)
        self.assertEqual(redeemed.account, "user-42")
        self.assertEqual(redeemed.attributes, {"name": "Ada", "plan": "pro"})
        self.assertEqual(redeemed.channels, ("room:lobby", "user:42"))
        self.assertEqual(redeemed.ip, "203.0.113.7")
        self.assertTrue(before <= redeemed.issued_at <= after,
                        (before, redeemed.issued_at, after))
        self.assertEqual((self.tickets.issued, self.tickets.redeemed), (1, 1))

    @defer.inlineCallbacks
    def test_a_ticket_without_attributes_channels_or_ip_redeems_to_empty_ones(self):
        ticket, _ = yield self.tickets.issue("user-1")
        redeemed = yield self.tickets.redeem(ticket)
        self.assertEqual(redeemed.as_dict()["account"], "user-1")
        self.assertEqual((redeemed.attributes, redeemed.channels, redeemed.ip), ({}, (), None))

    @defer.inlineCallbacks
    def test_a_ticket_is_at_least_128_random_bits_url_safe_and_never_repeats(self):
        issued = []
        for _ in range(20):
            ticket, _ = yield self.tickets.issue("user-42")
            issued.append(ticket)
        for ticket in issued:
            self.assertRegex(ticket, URL_SAFE)
            self.assertGreaterEqual(len(ticket), 22)  # 22 base64 characters: 132 bits
            raw = base64.urlsafe_b64decode(ticket + "=" * (-len(ticket) % 4))
            self.assertGreaterEqual(len(raw) * 8, 128)
        self.assertEqual(len(set(issued)), len(issued))

    @defer.inlineCallbacks
    def test_redis_holds_the_sha256_of_the_ticket_under_the_prefix_never_the_ticket(self):
        ticket, _ = yield self.tickets.issue("user-42", {"k": "v"}, ["room:a"], "192.0.2.1")

        keys = yield self.engine.execute("KEYS", "*")

        self.assertEqual(keys, ["presence:ticket:" + sha256_hex(ticket)])
        self.assertEqual(self.keys.ticket(ticket), keys[0])
        self.assertNotIn(ticket, keys[0])
        value = yield self.engine.execute("GET", keys[0])
        self.assertNotIn(ticket, value)
        self.assertEqual(json.loads(value)["account"], "user-42")
        # What logs show cannot be looked up either.
        self.assertEqual(fingerprint(ticket), sha256_hex(ticket)[:10])
        self.assertNotIn(fingerprint(ticket), ticket)

    @defer.inlineCallbacks
    def test_another_prefix_gives_another_key(self):
        store = TicketStore(PresenceStore(self.engine, PresenceKeys("app7:")), reactor)
        ticket, _ = yield store.issue("user-42")
        keys = yield self.engine.execute("KEYS", "*")
        self.assertEqual(keys, ["app7:ticket:" + sha256_hex(ticket)])
        # Another prefix is another namespace: the default store knows nothing of it.
        self.assertIsNone((yield self.tickets.redeem(ticket)))
        self.assertEqual((yield store.redeem(ticket)).account, "user-42")


class SingleUseTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_a_second_redemption_gives_none(self):
        ticket, _ = yield self.tickets.issue("user-42")
        first = yield self.tickets.redeem(ticket)
        second = yield self.tickets.redeem(ticket)
        self.assertEqual(first.account, "user-42")
        self.assertIsNone(second)
        self.assertEqual((yield self.engine.execute("EXISTS", self.keys.ticket(ticket))), 0)
        self.assertEqual((self.tickets.redeemed, self.tickets.refused), (1, 1))

    @defer.inlineCallbacks
    def test_an_unknown_ticket_gives_none(self):
        yield self.tickets.issue("user-42")
        self.assertIsNone((yield self.tickets.redeem("A" * 32)))
        self.assertEqual(self.tickets.refused, 1)

    @defer.inlineCallbacks
    def test_of_100_concurrent_redemptions_on_10_connection_pools_exactly_one_succeeds(self):
        engines = [self.make_engine() for _ in range(10)]
        yield defer.gatherResults([engine.ping() for engine in engines])  # all connected
        stores = [TicketStore(PresenceStore(engine, self.keys), reactor) for engine in engines]
        ticket, _ = yield self.tickets.issue("user-42", {}, ["room:lobby"])

        attempts = [stores[i % 10].redeem(ticket) for i in range(100)]
        self.assertFalse(any(attempt.called for attempt in attempts),
                         "every redemption is sent before any answer arrives")
        results = yield defer.gatherResults(attempts, consumeErrors=True)

        won = [result for result in results if result is not None]
        self.assertEqual(len(won), 1)
        self.assertEqual((won[0].account, won[0].channels), ("user-42", ("room:lobby",)))
        self.assertEqual(results.count(None), 99)
        self.assertEqual(sum(store.redeemed for store in stores), 1)
        self.assertEqual(sum(store.refused for store in stores), 99)


class MalformedTicketTests(RedisTestCase):
    """A ticket that cannot be one is refused without asking Redis: even a key
    planted under its hash stays where it is."""

    @defer.inlineCallbacks
    def plant(self, ticket):
        """Store a valid ticket value under ``ticket``'s key, behind the
        store's back; fires with the key."""
        key = self.keys.ticket(ticket)
        value = json.dumps(Ticket("planted").as_dict())
        yield self.engine.execute("SET", key, value, "EX", 60)
        return key

    @defer.inlineCallbacks
    def getdel_calls(self):
        info = yield self.engine.execute("INFO", "commandstats")
        match = re.search(r"cmdstat_getdel:calls=(\d+)", info)
        return int(match.group(1)) if match else 0

    @defer.inlineCallbacks
    def test_a_ticket_of_257_characters_gives_none_without_touching_redis(self):
        ticket = "A" * 257
        key = yield self.plant(ticket)
        yield self.engine.execute("CONFIG", "RESETSTAT")

        self.assertIsNone((yield self.tickets.redeem(ticket)))

        self.assertEqual((yield self.getdel_calls()), 0)
        self.assertEqual((yield self.engine.execute("EXISTS", key)), 1)
        self.assertEqual(self.tickets.refused, 1)

    @defer.inlineCallbacks
    def test_an_empty_ticket_gives_none_without_touching_redis(self):
        key = yield self.plant("")
        yield self.engine.execute("CONFIG", "RESETSTAT")

        self.assertIsNone((yield self.tickets.redeem("")))

        self.assertEqual((yield self.getdel_calls()), 0)
        self.assertEqual((yield self.engine.execute("EXISTS", key)), 1)

    @defer.inlineCallbacks
    def test_a_ticket_of_256_characters_is_still_looked_up(self):
        ticket = "A" * 256
        key = yield self.plant(ticket)
        yield self.engine.execute("CONFIG", "RESETSTAT")

        redeemed = yield self.tickets.redeem(ticket)

        self.assertEqual(redeemed.account, "planted")
        self.assertEqual((yield self.getdel_calls()), 1)
        self.assertEqual((yield self.engine.execute("EXISTS", key)), 0)


class ExpiryTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_a_ticket_key_expires_after_the_ttl(self):
        ticket, ttl = yield self.tickets.issue("user-42")
        pttl = yield self.engine.execute("PTTL", self.keys.ticket(ticket))
        self.assertEqual(ttl, 10)
        self.assertTrue(ttl * 1000 - 2000 <= pttl <= ttl * 1000, pttl)

    @defer.inlineCallbacks
    def test_the_ttl_is_the_stores(self):
        store = TicketStore(self.store, reactor, ttl=3)
        ticket, ttl = yield store.issue("user-42")
        pttl = yield self.engine.execute("PTTL", self.keys.ticket(ticket))
        self.assertEqual(ttl, 3)
        self.assertTrue(1000 <= pttl <= 3000, pttl)

    @defer.inlineCallbacks
    def test_an_expired_ticket_gives_none(self):
        ticket, _ = yield self.tickets.issue("user-42")
        key = self.keys.ticket(ticket)
        self.assertEqual((yield self.engine.execute("PEXPIRE", key, 1)), 1)
        yield run(until(lambda: self.engine.execute("EXISTS", key).addCallback(
            lambda exists: not exists), 5, "the key's expiry", 0.005))

        self.assertIsNone((yield self.tickets.redeem(ticket)))


class RedisDownTests(RedisTestCase):
    @defer.inlineCallbacks
    def assertUnavailableWithinTimeout(self, call, error=RedisUnavailable):
        started = time.monotonic()
        with self.assertRaises(error):
            yield call()
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 3.0, "the engine's timeout is %s s" % ENGINE_TIMEOUT)
        return elapsed

    @defer.inlineCallbacks
    def test_with_redis_stopped_issue_and_redeem_fail_within_the_timeout(self):
        ticket, _ = yield self.tickets.issue("user-42")
        yield self.stop_redis()

        yield self.assertUnavailableWithinTimeout(lambda: self.tickets.issue("user-43"))
        # A session is told the store is unavailable, not that its ticket is bad.
        yield self.assertUnavailableWithinTimeout(lambda: self.tickets.redeem(ticket),
                                                  TicketStoreUnavailable)
        self.assertEqual((self.tickets.issued, self.tickets.redeemed), (1, 0))

    @defer.inlineCallbacks
    def test_once_redis_is_back_issue_and_redeem_work_again(self):
        yield self.stop_redis()
        with self.assertRaises(RedisUnavailable):
            yield self.tickets.issue("user-42")

        yield self.embedded.started()

        ticket, _ = yield reconnected(lambda: self.tickets.issue("user-42", channels=["c"]))
        redeemed = yield self.tickets.redeem(ticket)
        self.assertEqual((redeemed.account, redeemed.channels), ("user-42", ("c",)))
