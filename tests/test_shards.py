"""Several Redis servers as shards (``--redis`` given more than once,
presence/redis/shards.py): the choice of shard, and a cluster of twistd
nodes on three real redis-servers (Debian's, tests/helpers/real_redis.py):
channels spread over the three and delivered on each, presence and
listings merged, a node's death swept on every shard, one shard stopped
while the others go on, and nodes with another shard list refused."""

import collections
import json
import re
import signal
import subprocess
import sys
import tempfile
import unittest

import websockets
from twisted.internet import defer, reactor
from twisted.python.usage import UsageError
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from presence.app.config import node_settings_from_options
from presence.app.options import Options
from presence.client import PresenceClient, PresenceUnavailable
from presence.redis.engine import RedisEngine
from presence.redis.keys import PresenceKeys
from presence.redis.shards import canonical_url, jump_hash, shard_of, stable_hash

from .helpers.cluster import Client, ClusterTestCase
from .helpers.processes import TWISTD, free_port, outside_env, start_node_process
from .helpers.real_redis import start_redis_server
from .helpers.receiver import start_receiver
from .helpers.waiting import run, until, wait

KEY = "shard-test-key"


class ShardChoiceTests(unittest.TestCase):
    """The jump consistent hash over a stable hash: the same everywhere,
    even, and moving little when a shard is added."""

    names = ["room:%d" % i for i in range(20000)]

    def test_the_hash_is_stable_across_processes(self):
        # Python's hash() (salted per process) would fail this in another
        # process; the value pins the function (changing it moves every key).
        here = [shard_of(name, 5) for name in self.names[:50]]
        there = subprocess.run(
            [sys.executable, "-c",
             "from presence.redis.shards import shard_of; print([shard_of('room:%d' % i, 5) "
             "for i in range(50)])"], capture_output=True, text=True, check=True,
            env=dict(outside_env(), PYTHONHASHSEED="random"))
        self.assertEqual(str(here), there.stdout.strip())
        self.assertEqual(stable_hash(""), 0xe4a6a0577479b2b4)

    def test_names_spread_evenly(self):
        for count in (2, 3, 5):
            spread = collections.Counter(shard_of(name, count) for name in self.names)
            self.assertEqual(sorted(spread), list(range(count)))
            for shard in spread.values():
                self.assertLess(abs(shard - len(self.names) / count), len(self.names) * 0.03)

    def test_adding_a_shard_moves_a_fair_part_all_to_the_new_shard(self):
        for count in (1, 2, 3, 7):
            moved = [name for name in self.names
                     if shard_of(name, count) != shard_of(name, count + 1)]
            self.assertTrue(all(shard_of(name, count + 1) == count for name in moved))
            self.assertAlmostEqual(len(moved) / len(self.names), 1 / (count + 1), delta=0.02)

    def test_one_shard_is_shard_zero_and_no_bucket_is_past_the_count(self):
        self.assertEqual({shard_of(name, 1) for name in self.names[:100]}, {0})
        self.assertEqual(jump_hash(2 ** 64 - 1, 1), 0)
        self.assertTrue(all(0 <= jump_hash(k * 7919, 10) < 10 for k in range(1000)))

    def test_the_shard_list_never_shows_a_password(self):
        self.assertEqual(canonical_url("redis://:secret@10.0.0.1"), "redis://10.0.0.1:6379/0")
        self.assertEqual(canonical_url("redis://h:7000/3"), "redis://h:7000/3")
        self.assertEqual(canonical_url("unix:///run/redis.sock?db=2"),
                         "unix:///run/redis.sock?db=2")
        self.assertEqual(canonical_url("sentinel://:secret@s1:26379,s2:26379/main?db=1"),
                         "sentinel://s1:26379,s2:26379/main?db=1")


class ShardOptionTests(unittest.TestCase):
    def parse(self, *argv):
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_redis_is_repeatable_shard_zero_first(self):
        options = self.parse("--redis", "redis://a", "--redis", "redis://b:7000/1")
        self.assertEqual(options["redis"], "redis://a")
        settings = node_settings_from_options(options)
        self.assertEqual(settings.redis_urls, ("redis://a", "redis://b:7000/1"))
        self.assertEqual(node_settings_from_options(self.parse()).redis_urls, ())

    def test_a_bad_or_repeated_shard_is_refused(self):
        with self.assertRaisesRegex(UsageError, "--redis: "):
            self.parse("--redis", "redis://a", "--redis", "http://b")
        with self.assertRaisesRegex(UsageError, "given twice"):
            self.parse("--redis", "redis://a", "--redis", "redis://a")


def channels_on(count, prefix="room:"):
    """One channel name a shard, in shard order."""
    found = {}
    i = 0
    while len(found) < count:
        found.setdefault(shard_of("%s%d" % (prefix, i), count), "%s%d" % (prefix, i))
        i += 1
    return [found[shard] for shard in range(count)]


class ShardedClusterTests(ClusterTestCase):
    """Two twistd nodes on the same three redis-servers (ClusterTestCase's
    clients, without its one Redis)."""

    timeout = 180

    @defer.inlineCallbacks
    def setUp(self):
        # Not ClusterTestCase's: no embedded Redis, no events subscriber.
        self.servers = []
        for _ in range(3):
            self.servers.append((yield run(start_redis_server(self))))
        self.engines = [RedisEngine(server.url, reactor, timeout=2) for server in self.servers]
        for engine in self.engines:
            self.addCleanup(engine.disconnect)
        self.keys = PresenceKeys()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.clients = []
        self.addCleanup(lambda: run(self.close_clients()))
        self.nodes = []
        for _ in range(2):
            self.nodes.append((yield run(self.start_node())))

    def redis_arguments(self, servers=None):
        arguments = []
        for server in (servers or self.servers)[1:]:
            arguments += ["--redis", server.url]
        return arguments

    async def start_node(self, *more):
        client_port, api_port, admin_port = free_port(), free_port(), free_port()
        process = await start_node_process(
            self, self.servers[0].url, client_port, api_port,
            self.redis_arguments() + ["--node-heartbeat", "1", "--close-timeout", "2",
                                      "--redis-timeout", "1", *more],
            {"PRESENCE_API_KEY": KEY}, admin_port=admin_port)
        return {"client": client_port, "process": process, "admin": admin_port,
                "api": PresenceClient("http://127.0.0.1:%d" % api_port, KEY, pool=self.pool)}

    async def member_of_each(self, node, account, channels):
        """A client of ``account`` on ``node`` subscribed to ``channels``
        (one a shard), once each is a member on its shard."""
        client = await self.connect(node, account, ["room:*", "kept:*"])
        for channel in channels:
            await self.subscribe(client, channel)
        for shard, channel in enumerate(channels):
            await until(lambda: self._equal(self.members_on(channel, (shard,)), [1]), 10,
                        "%s's member on shard %d" % (channel, shard))
        return client

    async def members_on(self, channel, shards=(0, 1, 2)):
        """``[HLEN members:CHANNEL]`` on each of ``shards``, read directly."""
        return [int(await wait(self.engines[shard].execute("HLEN", self.keys.members(channel))))
                for shard in shards]

    def test_channels_live_on_their_shards_and_deliver_on_each(self):
        a, b = self.nodes
        channels = channels_on(3)

        async def scenario():
            ann = await self.connect(a, "ann")
            for channel in channels:
                await self.subscribe(ann, channel)
            # Members on the channel's shard only, written there by node A.
            for shard, channel in enumerate(channels):
                expected = [1 if i == shard else 0 for i in range(3)]
                await until(lambda: self._equal(self.members_on(channel), expected), 10,
                            "%s's members on shard %d only" % (channel, shard))
            # POST /publish on node B, then a PUBLISH on the channel's own
            # Redis: both reach ann on node A.
            for n, channel in enumerate(channels):
                answer = await wait(b["api"].publish(channel, {"n": n}))
                self.assertEqual(answer["nodes"], 1)
                await wait(self.engines[n].publish(self.keys.channel(channel), json.dumps(
                    {"type": "message", "channel": channel, "data": {"direct": n}})))
            await until(lambda: len(ann.of("message")) >= 6, 10, "six messages")
            self.assertEqual(sorted(json.dumps(m["data"]) for m in ann.of("message")),
                             sorted(json.dumps(d) for n in range(3)
                                    for d in ({"n": n}, {"direct": n})))
            # A PUBLISH on another shard than the channel's reaches nobody:
            # the node listens to each channel on its own shard.
            reached = await wait(self.engines[2].publish(self.keys.channel(channels[1]),
                                                             json.dumps({"data": "x"})))
            self.assertEqual(int(reached), 0)

        return run(scenario())

    def test_one_publish_to_channels_of_every_shard_is_made_once_with_their_offsets(self):
        a = self.nodes[0]
        plain = channels_on(3)
        kept = channels_on(3, "kept:")

        async def scenario():
            recording = await self.start_node("--history", "kept:*=100,300")
            ann = await self.connect(a, "ann", ["room:*", "kept:*"])
            for channel in plain + kept:
                await self.subscribe(ann, channel)
            body = {"channels": plain + kept, "data": {"n": 1}, "id": "every-shard-1"}
            first = await wait(recording["api"]._request("POST", "/publish", body))
            self.assertEqual((first["nodes"], first["duplicate"]), (6, False))
            self.assertEqual({c: o["offset"] for c, o in first["offsets"].items()},
                             {channel: 1 for channel in kept})
            await until(lambda: len(ann.of("message")) >= 6, 10, "six messages")
            # The same id again: nothing published on any shard, and the
            # first publish's offsets answered.
            again = await wait(recording["api"]._request("POST", "/publish", body))
            self.assertEqual((again["nodes"], again["duplicate"]), (6, True))
            self.assertEqual(again["offsets"], first["offsets"])
            # Each history on its channel's shard, read through the API.
            for shard, channel in enumerate(kept):
                self.assertTrue(await wait(self.engines[shard].execute(
                    "EXISTS", self.keys.history(channel))))
                read = await wait(recording["api"]._request("GET", "/history/" + channel))
                self.assertEqual([m["data"] for m in read["messages"]], [{"n": 1}])
            await wait(a["api"].publish(plain[0], {"n": "marker"}))
            await until(lambda: len(ann.of("message")) >= 7, 10, "the marker")
            self.assertEqual(len(ann.of("message")), 7)

        return run(scenario())

    async def _equal(self, value, expected):
        return await value == expected

    def test_presence_and_listings_are_the_clusters_from_either_node(self):
        a, b = self.nodes
        channels = channels_on(3)

        async def scenario():
            ann = await self.connect(a, "ann")
            bob = await self.connect(b, "bob")
            for channel in channels:
                await self.subscribe(ann, channel)
            await self.subscribe(bob, channels[2])
            await until(lambda: self._online(b, {"ann", "bob"}), 10, "both online, from B")
            await until(lambda: self._online(a, {"ann", "bob"}), 10, "both online, from A")
            seen = await wait(b["api"].account_presence("ann"))
            self.assertEqual([s["session"] for s in seen["sessions"]], [ann.welcome["session"]])
            listed = await self._get(b, "/channels?limit=1")
            self.assertEqual({c["channel"]: c["sessions"] for c in listed}, {
                channels[0]: 1, channels[1]: 1, channels[2]: 2})
            members = await self._get(b, "/channels/%s/members" % channels[2], "members")
            self.assertEqual(sorted(m["account"] for m in members), ["ann", "bob"])
            self.assertEqual([s["session"] for m in members if m["account"] == "ann"
                              for s in m["sessions"]], [ann.welcome["session"]])
            counts = await self._get(b, "/channels/%s" % channels[1], None)
            self.assertEqual((counts["sessions"], counts["accounts"]), (1, 1))
            # Ann's resume token is redeemed on node B, from its own shard.
            token = ann.welcome["resume"]
            await ann.close()
            self.clients.remove(ann)
            ws = await websockets.connect("ws://127.0.0.1:%d/?resume=%s" % (b["client"], token))
            again = Client(ws)
            self.clients.append(again)
            welcome = await again.next_of("welcome")
            self.assertEqual(welcome["account"], "ann")
            self.assertNotIn(welcome.get("resume"), (None, token))

        return run(scenario())

    async def _online(self, node, accounts):
        return set(await wait(node["api"].presence())) == accounts

    async def _get(self, node, path, field="channels"):
        """Every page of a listing (``field``: its list; None: the answer)."""
        found = []
        while True:
            answer = await wait(node["api"]._request("GET", path))
            if field is None:
                return answer
            found.extend(answer[field])
            if answer.get("cursor") is None:
                return found
            path = path.split("?")[0] + "?limit=1&cursor=%s" % answer["cursor"]

    def test_a_webhook_hears_every_shards_events_once(self):
        receiver, _, url = start_receiver(self, "whsec-shards")
        a = self.nodes[0]
        channels = channels_on(3)

        async def scenario():
            hooked = await self.start_node("--webhook", url, "--webhook-secret", "whsec-shards",
                                           "--leave-delay", "0")
            for engine in self.engines:
                await until(lambda: self._has_group(engine), 15, "the group on every shard")
            ann = await self.connect(a, "ann")
            for channel in channels:
                await self.subscribe(ann, channel)
            await until(lambda: len([e for e in receiver.events
                                     if e["name"] == "member_added"]) == 3, 15, "three joins")
            added = sorted((e["channel"], e["id"].rpartition("@")[2]) for e in receiver.events
                           if e["name"] == "member_added")
            self.assertEqual(added, sorted((channel, str(shard))
                                           for shard, channel in enumerate(channels)))
            # Each shard's log delivered once: the ids, unique across shards,
            # came once each (the receiver keeps every arrival).
            self.assertEqual(len([e for e in receiver.arrived if e["name"] == "member_added"]), 3)
            await until(lambda: [e for e in receiver.events if e["name"] == "online"], 15,
                        "ann's online")
            # Counted once each request was answered: ann's online, and a
            # member_added and a channel_occupied on each shard.
            await until(lambda: self._metric_is(
                hooked, r'presence_webhook_events_total\{[^}]*outcome="delivered"\}', 7), 10,
                "the seven events counted, the three shards added up")

        return run(scenario())

    async def _has_group(self, engine):
        try:
            return bool(await wait(engine.execute("XINFO", "GROUPS", self.keys.event_log)))
        except Exception:
            return False

    def test_a_dead_nodes_sessions_are_swept_from_every_shard(self):
        a, b = self.nodes
        channels = channels_on(3)

        async def scenario():
            await self.member_of_each(a, "ann", channels)
            a["process"].send_signal(signal.SIGKILL)
            a["process"].wait(timeout=10)
            for channel in channels:
                await until(lambda: self._equal(self.members_on(channel), [0, 0, 0]), 20,
                            "%s swept by node B" % channel)
            await until(lambda: self._online(b, set()), 10, "ann offline")
            leftovers = []
            for engine in self.engines:
                leftovers += await wait(engine.execute("KEYS", "presence:node:*:channels*"))
            self.assertEqual(leftovers, [])

        return run(scenario())

    def test_a_dead_nodes_sweep_goes_on_without_a_stopped_shard_and_ends_when_it_is_back(self):
        a, b = self.nodes
        channels = channels_on(3)
        stopped = 2

        async def scenario():
            await self.member_of_each(a, "ann", channels)
            self.servers[stopped].process.send_signal(signal.SIGSTOP)
            self.addCleanup(self.servers[stopped].process.send_signal, signal.SIGCONT)
            a["process"].send_signal(signal.SIGKILL)
            a["process"].wait(timeout=10)
            # Node B sweeps node A from the shards that answer...
            for shard in (0, 1):
                await until(lambda: self._equal(self.members_on(channels[shard], (shard,)),
                                                [0]), 20, "%s swept" % channels[shard])
            # ... and from the stopped one once it is back.
            self.servers[stopped].process.send_signal(signal.SIGCONT)
            await until(lambda: self._equal(self.members_on(channels[stopped], (stopped,)),
                                            [0]), 20, "%s swept" % channels[stopped])
            await until(lambda: self._equal(wait(self.engines[0].execute(
                "HLEN", self.keys.reaping)), 0), 10, "the sweep ended")

        return run(scenario())

    def test_one_shard_stopped_stops_only_its_channels(self):
        a, b = self.nodes
        channels = channels_on(3)
        stopped = 1

        # An account whose keys are on the shard that stops.
        account = next("ann%d" % i for i in range(100) if shard_of("ann%d" % i, 3) == stopped)

        async def scenario():
            ann = await self.member_of_each(a, account, channels)
            self.servers[stopped].process.send_signal(signal.SIGSTOP)
            self.addCleanup(self.servers[stopped].process.send_signal, signal.SIGCONT)
            # The stopped shard's channel: a clear 503, counted by shard.
            with self.assertRaises(PresenceUnavailable):
                await wait(b["api"].publish(channels[stopped], {"lost": True}))
            metrics = await self._metrics(b)
            self.assertRegex(metrics, r'presence_redis_shard_errors_total\{shard="1"\} [1-9]')
            self.assertIn('presence_redis_shard_errors_total{shard="0"} 0', metrics)
            # The dashboard's Redis card shows them, from the nodes' reports.
            await until(lambda: self._dashboard_shows(b, r"failed commands by shard: 0: 0 "
                                                         r"\S 1: [1-9]"), 10, "the dashboard")
            # The other shards' channels: delivered, and their presence
            # written (a new member, from node B, whose ticket is drawn on a
            # shard that answers).
            cid = await self.connect(b, "cid")
            for shard in (0, 2):
                await wait(b["api"].publish(channels[shard], {"still": shard}))
                await self.subscribe(cid, channels[shard])
                await until(lambda: self._equal(self.members_on(channels[shard], (shard,)),
                                                [2]), 10, "cid a member of %s" % channels[shard])
            await until(lambda: len(ann.of("message")) >= 2, 10, "the others' messages")
            self.assertEqual(sorted(m["data"]["still"] for m in ann.of("message")), [0, 2])
            # A channel that answers lists its members; one whose account's
            # shard does not is listed without its sessions.
            members = await self._get(b, "/channels/%s/members" % channels[0], "members")
            self.assertEqual(sorted((m["account"], len(m["sessions"])) for m in members),
                             [(account, 0), ("cid", 1)])
            # Back: its channel delivers again.
            self.servers[stopped].process.send_signal(signal.SIGCONT)
            await until(lambda: self._published(b, channels[stopped]), 15, "shard 1 back")
            await until(lambda: any(m["data"].get("back") for m in ann.of("message")), 10,
                        "a message on shard 1's channel")

        return run(scenario())

    async def _published(self, node, channel):
        try:
            await wait(node["api"].publish(channel, {"back": True}))
        except PresenceUnavailable:
            return False
        return True

    async def _metrics(self, node, path=b"/metrics"):
        response = await wait(Agent(reactor, pool=self.pool).request(
            b"GET", b"http://127.0.0.1:%d%s" % (node["admin"], path)).addTimeout(10, reactor))
        return (await wait(readBody(response).addTimeout(10, reactor))).decode()

    async def _dashboard_shows(self, node, pattern):
        return re.search(pattern, await self._metrics(node, b"/"))

    def test_each_shards_outage_is_its_own_and_presence_is_asserted_again(self):
        a = self.nodes[0]
        channels = channels_on(3)

        async def scenario():
            ann = await self.member_of_each(a, "ann", channels)
            # Shards 1 and 2 lose everything and drop the nodes' pub/sub
            # connections, at once (a restart, as the nodes see it).
            for shard in (1, 2):
                await wait(self.engines[shard].execute("FLUSHALL"))
                await wait(self.engines[shard].execute("CLIENT", "KILL", "TYPE", "pubsub"))
            await until(lambda: self._metric_is(a, "presence_redis_reconnects_total", "[2-9]"), 15,
                        "two reconnections counted")
            for shard in (1, 2):
                await until(lambda: self._equal(self.members_on(channels[shard], (shard,)),
                                                [1]), 10, "the member back on shard %d" % shard)
            await wait(a["api"].publish(channels[2], {"after": True}))
            await until(lambda: ann.of("message"), 10, "shard 2's channel delivering again")

        return run(scenario())

    async def _metric_is(self, node, name, value):
        """Whether the metric (a pattern) has ``value`` in ``node``'s /metrics."""
        return re.search(r"^%s %s$" % (name, value), await self._metrics(node), re.M)

    def test_a_node_with_another_shard_list_refuses_to_start(self):
        first, second, third = self.servers

        async def refused(servers):
            arguments = [TWISTD, "-n", "--pidfile=", "presence", "--admin", "none",
                         "--listen", "tcp:%d:interface=127.0.0.1" % free_port(),
                         "--api", "tcp:%d:interface=127.0.0.1" % free_port()]
            for server in servers:
                arguments += ["--redis", server.url]
            process = subprocess.Popen(arguments, cwd=tempfile.mkdtemp(prefix="presence-node-"),
                                       env=outside_env(), stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            self.addCleanup(lambda: process.poll() is None and process.kill())
            await until(lambda: process.poll() is not None, 30, "the node's exit")
            self.assertNotEqual(process.returncode, 0)
            return process.stdout.read()

        async def scenario():
            swapped = await refused([first, third, second])
            self.assertIn("shard 1 is %s here, but the cluster's shard 1 is %s" % (
                canonical_url(third.url), canonical_url(second.url)), swapped)
            fewer = await refused([first, second])
            self.assertIn("this node has 2 Redis shards", fewer)
            self.assertIn("the cluster has 3", fewer)
            alone = await refused([second])
            self.assertIn("that Redis is the cluster's shard 1 of 3", alone)
            # Shard 0 restarted empty (its list and marker gone): a node
            # with the list swapped is refused by the markers, and writes
            # no list of its own that would refuse the right ones.
            await wait(self.engines[0].execute("FLUSHALL"))
            await refused([first, third, second])
            self.assertIsNone(await wait(self.engines[0].execute("GET", self.keys.shard_list)))
            await self.start_node()
            # The cluster itself is untouched, and goes on.
            self.assertEqual(json.loads(await wait(self.engines[0].execute(
                "GET", self.keys.shard_list))), [canonical_url(s.url) for s in self.servers])
            await self.connect(self.nodes[0], "ann")

        return run(scenario())
