"""Redis failover through Sentinel (docs/configuration.md, "Redis
Sentinel"): the ``sentinel://`` URL, the connection that asks Sentinel
where the master is and keeps only a master, and a twistd node whose
master is SIGKILLed while clients listen, with Debian's redis-server,
a replica and redis-sentinel as separate processes."""

import json
import signal
import subprocess
import tempfile
import time

import pytest
import treq
import websockets
from twisted.internet import defer, reactor
from twisted.python.usage import UsageError
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from presence.app.options import Options
from presence.client import PresenceClient
from presence.redis.connection import SENTINEL_DEFAULT_PORT, parse_redis_url
from presence.redis.engine import RedisEngine, RedisUnavailable
from presence.redis.sentinel import (
    MasterEndpoint,
    MasterNotFound,
    MasterPoolFactory,
    SentinelMaster,
)
from presence.redis.subscriber import RedisSubscriber

from .helpers.cluster import KEY, Client
from .helpers.processes import TWISTD, free_port, outside_env, start_node_process
from .helpers.real_redis import start_redis_server, start_sentinel
from .helpers.waiting import pause, run, until, wait

MASTER = "presence"

#: The issue's bound: clients receive again within this many seconds of
#: the promotion.
DELIVERY_AFTER_PROMOTION = 15.0


# ------------------------------------------------------------- the URL

def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database():
    assert parse_redis_url("sentinel://:s%40cret@10.0.0.1:26379,[::1]:26380,sentinel-c/main"
                           "?db=2") == {
        "sentinels": [("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", SENTINEL_DEFAULT_PORT)],
        "master": "main", "db": 2, "password": "s@cret"}


def test_a_sentinel_url_without_password_or_database_has_their_defaults():
    assert parse_redis_url("sentinel://127.0.0.1:26379/mymaster") == {
        "sentinels": [("127.0.0.1", 26379)], "master": "mymaster", "db": 0, "password": None}


@pytest.mark.parametrize("url, reason", [
    ("sentinel://", "no Sentinel address"),
    ("sentinel:///mymaster", "no Sentinel address"),
    ("sentinel://127.0.0.1:26379", "no master name"),
    ("sentinel://127.0.0.1:26379/", "no master name"),
    ("sentinel://127.0.0.1:26379/a/b", "the master name 'a/b' has a '/'"),
    ("sentinel://127.0.0.1:port/mymaster", "bad Sentinel port 'port'"),
    ("sentinel://127.0.0.1:0/mymaster", "bad Sentinel port '0'"),
    ("sentinel://127.0.0.1:70000/mymaster", "bad Sentinel port '70000'"),
    ("sentinel://a:1,/mymaster", "a Sentinel address without a host"),
    ("sentinel://[::1/mymaster", r"Invalid IPv6 URL .*: give \[IPV6\]:PORT"),
    ("sentinel://[::1]x/mymaster", r"bad Sentinel address .*: give \[IPV6\]:PORT"),
    ("sentinel://a:1/mymaster?db=one", "the database must be a number, not 'one'"),
    ("sentinel://a:1/mymaster?timeout=3", "unknown parameter timeout"),
    ("redis://localhost/zero", "the database must be a number, not 'zero'"),
    ("sentinels://a:1/mymaster", "must start with redis://, unix:// or sentinel://"),
])
def test_a_bad_sentinel_url_is_refused_saying_what_is_wrong(url, reason):
    with pytest.raises(ValueError, match=reason):
        parse_redis_url(url)


def test_a_refused_url_does_not_show_its_password():
    with pytest.raises(ValueError) as refused:
        parse_redis_url("sentinel://:hunter2@127.0.0.1:x/mymaster")
    assert "hunter2" not in str(refused.value)
    assert ":***@" in str(refused.value)


def test_twistd_presence_refuses_a_sentinel_url_without_a_master_as_a_usage_error():
    with pytest.raises(UsageError, match=r"--redis: no master name .* give sentinel://"):
        Options().parseOptions(["--redis", "sentinel://127.0.0.1:26379"])
    with pytest.raises(UsageError, match="--redis: no Sentinel address"):
        Options().parseOptions(["--redis", "sentinel://"])


def test_the_twistd_command_line_answers_a_sentinel_url_without_a_master_and_exits():
    finished = subprocess.run([TWISTD, "-n", "presence", "--redis", "sentinel://127.0.0.1:26379"],
                              env=outside_env(), cwd=tempfile.gettempdir(), capture_output=True,
                              text=True, timeout=60)
    assert finished.returncode != 0
    assert "--redis: no master name in 'sentinel://127.0.0.1:26379'" in finished.stdout


def test_twistd_presence_takes_a_sentinel_url():
    url = "sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster"
    options = Options()
    options.parseOptions(["--redis", url])
    assert options["redis"] == url


# ------------------------------------------- real Redis, replica, Sentinel

async def _sentinel_knows_its_replica(sentinel_engine, replica_engine):
    """Sentinel can fail over only to a replica it has seen, in sync."""
    info = await wait(replica_engine.execute("INFO", "replication"))
    if "master_link_status:up" not in info:
        return False
    replicas = await wait(sentinel_engine.execute("SENTINEL", "replicas", MASTER))
    return any("flags" in entry and entry[entry.index("flags") + 1] == "slave"
               for entry in replicas)


async def _master_port(sentinel_engine):
    address = await wait(sentinel_engine.execute("SENTINEL", "get-master-addr-by-name", MASTER))
    return int(address[1])


class SentinelProcesses:
    """A master, its replica and one Sentinel (quorum 1) for a test."""

    async def start(self, test):
        self.master = await start_redis_server(test)
        self.replica = await start_redis_server(test, replica_of=self.master)
        self.sentinel = await start_sentinel(test, MASTER, self.master)
        self.url = "sentinel://%s/%s" % (self.sentinel.address, MASTER)
        self.sentinel_engine = self._engine(test, self.sentinel.url)
        self.replica_engine = self._engine(test, self.replica.url)
        await until(lambda: _sentinel_knows_its_replica(self.sentinel_engine,
                                                        self.replica_engine),
                    20, "Sentinel seeing the replica in sync", 0.1, retry_on=(RedisUnavailable,))
        return self

    @staticmethod
    def _engine(test, url):
        engine = RedisEngine(url, reactor, timeout=2)
        test.addCleanup(engine.disconnect)
        return engine

    async def fail_over(self, hang=False):
        """SIGKILL the master (SIGSTOP with ``hang``: its connections stay
        open, unanswered); returns once Sentinel names the replica, with
        the monotonic time of that moment."""
        if hang:
            self.master.pause()
        else:
            self.master.kill(signal.SIGKILL)
        await until(lambda: self._promoted(), 30, "Sentinel promoting the replica", 0.05,
                    retry_on=(RedisUnavailable,))
        return time.monotonic()

    async def _promoted(self):
        return await _master_port(self.sentinel_engine) == self.replica.port


class SentinelConnectionTests(TestCase):
    """The engine and the subscriber on a sentinel:// URL."""

    def test_the_engine_finds_the_master_through_sentinel_and_follows_its_failover(self):
        async def scenario():
            redis = await SentinelProcesses().start(self)
            engine = RedisEngine(redis.url, reactor, timeout=1)
            self.addCleanup(engine.disconnect)
            self.assertEqual(await wait(engine.execute("SET", "k", "before")), "OK")
            self.assertEqual(engine.sentinel.address, ("127.0.0.1", redis.master.port))
            await redis.fail_over()
            # Writable again, on the replica Sentinel promoted; meanwhile
            # every command was answered (RedisUnavailable) within the
            # engine's timeout, none hung.
            took = []

            async def write():
                started = time.monotonic()
                try:
                    return await wait(engine.execute("SET", "k", "after"))
                finally:
                    took.append(time.monotonic() - started)
            await until(write, 15, "a write on the new master", 0.1,
                        retry_on=(RedisUnavailable,))
            self.assertLess(max(took), 1.5)
            self.assertEqual(engine.sentinel.address, ("127.0.0.1", redis.replica.port))
            self.assertEqual(await wait(redis.replica_engine.execute("GET", "k")), "after")
        return run(scenario())

    def test_the_engine_leaves_a_hung_master_when_sentinel_announces_the_switch(self):
        """SIGSTOP: no connection is lost, none would ever be; the
        Sentinels' +switch-master is the only word of the failover."""
        async def scenario():
            redis = await SentinelProcesses().start(self)
            engine = RedisEngine(redis.url, reactor, timeout=1)
            self.addCleanup(engine.disconnect)
            self.assertEqual(await wait(engine.execute("SET", "k", "before")), "OK")
            await redis.fail_over(hang=True)
            await until(lambda: engine.execute("SET", "k", "after"), 15,
                        "a write on the new master", 0.1, retry_on=(RedisUnavailable,))
            self.assertEqual(await wait(redis.replica_engine.execute("GET", "k")), "after")
        return run(scenario())

    def test_the_subscriber_resubscribes_on_the_new_master(self):
        return run(self._resubscribes(hang=False))

    def test_the_subscriber_leaves_a_hung_master_and_resubscribes_on_the_new_one(self):
        return run(self._resubscribes(hang=True))

    async def _resubscribes(self, hang):
        redis = await SentinelProcesses().start(self)
        received, connected = [], []
        subscriber = RedisSubscriber(redis.url, lambda channel, message: received.append(
            message), on_connected=lambda: connected.append(True), reactor=reactor)
        self.addCleanup(subscriber.close)
        subscriber.subscribe("news")
        await wait(subscriber.ready("news"))
        await redis.fail_over(hang=hang)
        await until(lambda: len(connected) == 2, 15, "the subscriber reconnected")
        await wait(subscriber.ready("news"))
        self.assertEqual(subscriber.sentinel.address, ("127.0.0.1", redis.replica.port))
        await wait(redis.replica_engine.execute("PUBLISH", "news", "on the new master"))
        await until(lambda: received == ["on the new master"], 5, "the message")

    def test_a_connection_to_a_replica_is_never_used(self):
        """A Sentinel's answer can be stale during a failover: the pool
        checks ROLE and keeps only a master (without the check, the SET
        below goes to the replica and fails READONLY)."""
        async def scenario():
            master = await start_redis_server(self)
            replica = await start_redis_server(self, replica_of=master)

            class Pointed(SentinelMaster):
                """A Sentinel whose answer the test chooses."""
                port = replica.port

                async def locate(self):
                    return ("127.0.0.1", self.port)
            pointed = Pointed([], MASTER, reactor, 1)
            factory = MasterPoolFactory("test", None, 1, isLazy=True, convertNumbers=False,
                                        clock=reactor, handshake_timeout=1)
            factory.initialDelay, factory.maxDelay = 0.05, 0.2
            factory.startConnecting(MasterEndpoint(pointed, reactor, 1))
            self.addCleanup(factory.disconnect)
            setting = factory.handler.execute_command("SET", "k", "v")
            setting.addTimeout(1.0, reactor)
            with self.assertRaises(defer.TimeoutError):
                await wait(setting)
            pointed.port = master.port
            self.assertEqual(await wait(factory.handler.execute_command("SET", "k", "v")), "OK")
        return run(scenario())

    def test_the_master_s_password_is_given_to_the_master_and_not_to_sentinel(self):
        async def scenario():
            secret = ["--requirepass", "s3cret", "--masterauth", "s3cret"]
            master = await start_redis_server(self, arguments=secret)
            await start_redis_server(self, replica_of=master, arguments=secret)
            sentinel = await start_sentinel(self, MASTER, master, master_password="s3cret")
            url = "sentinel://:s3cret@%s/%s" % (sentinel.address, MASTER)
            engine = RedisEngine(url, reactor, timeout=2)
            self.addCleanup(engine.disconnect)
            self.assertEqual(await wait(engine.execute("SET", "k", "v")), "OK")
            received = []
            subscriber = RedisSubscriber(url, lambda channel, message: received.append(message),
                                         reactor=reactor)
            self.addCleanup(subscriber.close)
            subscriber.subscribe("news")
            await wait(subscriber.ready("news"))
            await wait(engine.publish("news", "hello"))
            await until(lambda: received == ["hello"], 5, "the message")
        return run(scenario())

    def test_the_sentinels_are_asked_in_turn_and_the_one_that_answered_goes_first(self):
        async def scenario():
            master = await start_redis_server(self)
            sentinel = await start_sentinel(self, MASTER, master)
            down = ("127.0.0.1", free_port())
            located = SentinelMaster([down, ("127.0.0.1", sentinel.port)], MASTER, reactor, 1)
            self.assertEqual(await wait(defer.ensureDeferred(located.locate())),
                             ("127.0.0.1", master.port))
            self.assertEqual(located.sentinels, [("127.0.0.1", sentinel.port), down])

            unknown = SentinelMaster([down, ("127.0.0.1", sentinel.port)], "other", reactor, 1)
            with self.assertRaises(MasterNotFound) as refused:
                await wait(defer.ensureDeferred(unknown.locate()))
            self.assertIn("no Sentinel told where the master 'other' is (127.0.0.1:%d: " % down[1],
                          str(refused.exception))
            self.assertIn("127.0.0.1:%d knows no master named 'other'" % sentinel.port,
                          str(refused.exception))
        return run(scenario())

    def test_no_sentinel_answering_makes_commands_unavailable_not_hung(self):
        async def scenario():
            url = "sentinel://127.0.0.1:%d/%s" % (free_port(), MASTER)
            engine = RedisEngine(url, reactor, timeout=0.5)
            self.addCleanup(engine.disconnect)
            started = time.monotonic()
            with self.assertRaises(RedisUnavailable):
                await wait(engine.ping())
            self.assertLess(time.monotonic() - started, 2)
        return run(scenario())


# ----------------------------------------------- a node through a failover

class NodeThroughFailoverTests(TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.redis = yield run(SentinelProcesses().start(self))
        self.client_port, api_port = free_port(), free_port()
        self.api_url = "http://127.0.0.1:%d" % api_port
        yield run(start_node_process(
            self, self.redis.url, self.client_port, api_port,
            ["--node-heartbeat", "0.5", "--close-timeout", "2"], {"PRESENCE_API_KEY": KEY}))
        self.api = PresenceClient(self.api_url, KEY, pool=self.pool)
        self.clients = []

    async def connect(self, account):
        issued = await wait(self.api.issue_ticket(account, channels=["room:*"]))
        client = Client(await websockets.connect(
            "ws://127.0.0.1:%d/?ticket=%s" % (self.client_port, issued["ticket"])))
        self.clients.append(client)
        await client.next_of("welcome")
        await client.send({"type": "subscribe", "channel": "room:lobby", "presence": True})
        await until(lambda: client.of("subscribed"), 10, "subscribed")
        return client

    async def members(self):
        response = await wait(treq.get(self.api_url + "/channels/room:lobby/members",
                                       headers={"Authorization": "Bearer " + KEY},
                                       pool=self.pool))
        body = json.loads(await wait(response.text()))
        return sorted(member["account"] for member in body.get("members", ()))

    async def delivered(self, clients, text):
        """Publish ``text`` (again while the node answers 503) until every
        client got it."""
        async def everyone_got_it():
            try:
                await wait(self.api.publish("room:lobby", text))
            except Exception:
                return False
            await pause(0.2)
            return all(any(m.get("data") == text for m in c.of("message")) for c in clients)
        await until(everyone_got_it, DELIVERY_AFTER_PROMOTION + 5, "delivery of " + text, 0.1)

    def tearDown(self):
        return run(self._close_clients())

    async def _close_clients(self):
        for client in self.clients:
            await client.close()

    def test_clients_stay_connected_and_receive_again_after_the_master_is_killed(self):
        return run(self._through_a_failover(hang=False))

    def test_clients_stay_connected_and_receive_again_after_the_master_hangs(self):
        return run(self._through_a_failover(hang=True))

    async def _through_a_failover(self, hang):
        ann, bob = await self.connect("ann"), await self.connect("bob")
        await self.delivered([ann, bob], "before")
        self.assertEqual(await self.members(), ["ann", "bob"])
        # The worst of asynchronous replication: the replica lost
        # everything the master had (a writable replica, flushed). Only
        # the node's re-assertion can put presence back.
        replica = self.redis.replica_engine
        await wait(replica.execute("CONFIG", "SET", "replica-read-only", "no"))
        await wait(replica.execute("FLUSHALL"))
        promoted_at = await self.redis.fail_over(hang=hang)
        await self.delivered([ann, bob], "after")
        took = time.monotonic() - promoted_at
        self.assertLess(took, DELIVERY_AFTER_PROMOTION)
        # Nobody was closed: the same connections, open.
        for client in (ann, bob):
            self.assertFalse(client.reader.done())
            self.assertEqual(client.of("close"), [])
        await until(lambda: self._presence_is(["ann", "bob"]), 10, "presence re-asserted",
                    0.1)
        await until(lambda: self._members_are(["ann", "bob"]), 10, "members re-asserted",
                    0.1)

    async def _presence_is(self, accounts):
        try:
            return sorted(await wait(self.api.presence())) == accounts
        except Exception:
            return False

    async def _members_are(self, accounts):
        try:
            return await self.members() == accounts
        except Exception:
            return False
