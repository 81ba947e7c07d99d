"""``twistd presence --workers N``: one command, N node processes sharing
every port, supervised by their parent (presence/app/workers.py,
docs/configuration.md, Workers).

The pure parts (the restart delays, ``auto``, the supervision's decisions)
run on an injected clock with a stand-in for spawning; the rest runs real
twistd processes on loopback and waits for conditions (bounded), never for
a fixed time."""

import asyncio
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import websockets
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from presence.app.options import Options, worker_count
from presence.app.workers import Backoff, Workers, describe_exit, listening_descriptions
from presence.client import PresenceAPIError, PresenceClient
from presence.net import listening
from presence.net.listening import SharedPort

from .helpers.cluster import KEY, Client
from .helpers.framing import upgrade_request
from .helpers.processes import TWISTD, NodeProcessesTestCase, free_port, outside_env
from .helpers.servers import self_signed_certificate
from .helpers.waiting import run, until, wait

PASSWORD = b"workers-dashboard-password"


class BackoffTests(SynchronousTestCase):
    def test_the_delay_doubles_while_a_worker_keeps_dying_up_to_thirty_seconds(self):
        backoff = Backoff()
        self.assertEqual([backoff.delay(ran_for=0.5) for _ in range(7)],
                         [1, 2, 4, 8, 16, 30, 30])

    def test_a_worker_that_ran_for_a_minute_starts_again_after_one_second(self):
        backoff = Backoff()
        for _ in range(4):
            backoff.delay(ran_for=1)
        self.assertEqual(backoff.delay(ran_for=59), 16)
        self.assertEqual(backoff.delay(ran_for=60), 1)
        self.assertEqual(backoff.delay(ran_for=1), 2)


class WorkerCountTests(SynchronousTestCase):
    def test_auto_is_one_worker_per_core_this_process_may_use(self):
        self.assertEqual(worker_count("auto", cpus=lambda: 6), 6)
        self.assertEqual(worker_count("AUTO", cpus=lambda: 0), 1)
        self.assertEqual(worker_count("3", cpus=lambda: 6), 3)

    def test_the_default_is_one_and_a_count_below_one_is_refused(self):
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["workers"], 1)
        for bad in ("0", "-2", "many"):
            with self.assertRaises(usage.UsageError) as caught:
                Options().parseOptions(["--workers", bad])
            self.assertIn("--workers must be a number of at least 1, or auto",
                          str(caught.exception))

    def test_the_options_are_kept_to_give_each_worker(self):
        options = Options()
        given = ["--workers", "auto", "--listen", "tcp:9000", "--admin", "none"]
        options.parseOptions(given)
        self.assertEqual(options.argv, given)
        self.assertGreaterEqual(options["workers"], 1)
        self.assertEqual(listening_descriptions(options),
                         ["tcp:9000", "tcp:8081:interface=127.0.0.1"])


class SharedPortTests(SynchronousTestCase):
    """The parent's listening sockets (presence/net/listening.py)."""

    def test_a_tcp_port_is_a_socket_per_worker_on_one_concrete_port(self):
        port = SharedPort("haproxy:tcp:0:interface=127.0.0.1:backlog=77", 3, reuse_port=True)
        self.addCleanup(port.close)
        self.assertEqual(len(port.sockets), 3)
        self.assertEqual(len({sock.getsockname() for sock in port.sockets}), 1)
        self.assertNotEqual(port.sockets[0].getsockname()[1], 0)
        for sock in port.sockets:
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
        self.assertEqual(len({port.fileno_for(slot) for slot in range(3)}), 3)

    def test_without_reuse_port_every_worker_shares_one_socket(self):
        port = SharedPort("tcp:0:interface=127.0.0.1", 3, reuse_port=False)
        self.addCleanup(port.close)
        self.assertEqual({port.fileno_for(slot) for slot in range(3)},
                         {port.sockets[0].fileno()})

    def test_a_unix_port_is_one_socket_with_its_mode_removed_at_close(self):
        path = os.path.join(tempfile.mkdtemp(prefix="presence-shared-"), "s.sock")
        port = SharedPort("unix:%s:mode=600" % path, 2)
        self.assertEqual(len(port.sockets), 1)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        port.close()
        self.assertFalse(os.path.exists(path))

    def test_an_endpoint_binding_no_socket_of_its_own_is_refused_by_name(self):
        # Adopting a descriptor (systemd: in a socket-activated service)
        # binds nothing the workers could share.
        self.patch(listening, "listened_on", _adopting_recorder)
        with self.assertRaises(ValueError) as refused:
            SharedPort("tcp:0", 2)
        self.assertEqual(str(refused.exception), "tcp:0: workers share tcp:, tcp6:, ssl:, "
                         "unix: and haproxy: ports only")

    def test_an_endpoint_twisted_cannot_parse_is_refused_by_name(self):
        with self.assertRaises(ValueError) as refused:
            SharedPort("tcp:eighty", 2)
        self.assertTrue(str(refused.exception).startswith(
            "tcp:eighty: not an endpoint Twisted can listen on"), refused.exception)


def _adopting_recorder(description):
    recorder = MemoryReactor()
    recorder.adoptStreamPort(3, socket.AF_INET, None)
    return recorder


class _Transport:
    """A spawned worker, as far as its parent touches it."""

    def __init__(self, pid):
        self.pid = pid
        self.signals = []

    def closeStdin(self):
        pass

    def signalProcess(self, name):
        self.signals.append(name)


class SupervisionTests(SynchronousTestCase):
    """The parent's decisions on a Clock, with workers that are stand-ins."""

    def setUp(self):
        self.clock = Clock()
        self.spawned = []
        self.workers = Workers(2, ["--listen", "tcp:0:interface=127.0.0.1"],
                               ["tcp:0:interface=127.0.0.1"], embedded_redis=False,
                               reactor=self.clock, drain_timeout=10, spawn=self._spawn)
        self.workers.startService()
        self.addCleanup(lambda: [port.close() for port in self.workers.ports])

    def _spawn(self, worker, argv, env, fds):
        self.spawned.append((worker, argv, env, fds))
        worker.makeConnection(_Transport(1000 + len(self.spawned)))

    def test_every_worker_gets_its_own_socket_of_the_shared_port(self):
        self.assertEqual(len(self.spawned), 2)
        (_, _, env0, fds0), (_, _, env1, fds1) = self.spawned
        self.assertEqual((env0["PRESENCE_WORKER"], env1["PRESENCE_WORKER"]), ("0", "1"))
        self.assertEqual(env0["PRESENCE_WORKER_FDS"], "3")
        self.assertNotEqual(fds0, fds1)  # SO_REUSEPORT: a socket each
        port = self.workers.ports[0]
        self.assertEqual({sock.getsockname() for sock in port.sockets},
                         {port.sockets[0].getsockname()})  # one port, not 0

    def test_a_dead_worker_is_started_again_after_its_backoff(self):
        worker = self.spawned[0][0]
        self.clock.advance(5)
        worker.processEnded(_failure(ProcessTerminated(signal=signal.SIGKILL)))
        self.clock.advance(0.99)
        self.assertEqual(len(self.spawned), 2)
        self.clock.advance(0.01)
        self.assertEqual(len(self.spawned), 3)
        again = self.spawned[2][0]
        self.assertEqual(again.slot, 0)
        self.assertIs(self.workers.workers[0], again)
        # Dying again at once: twice the delay.
        again.processEnded(_failure(ProcessTerminated(exitCode=1)))
        self.clock.advance(1.99)
        self.assertEqual(len(self.spawned), 3)
        self.clock.advance(0.01)
        self.assertEqual(len(self.spawned), 4)
        self.assertEqual(self.workers.restarted, 2)

    def test_stopping_sends_sigterm_waits_and_kills_stragglers_after_the_drain_timeout(self):
        first, second = self.spawned[0][0], self.spawned[1][0]
        listening = self.workers.ports[0].sockets[:]
        stopped = self.workers.stopService()
        self.assertEqual((first.transport.signals, second.transport.signals),
                         (["TERM"], ["TERM"]))
        # Closed at once: the workers' copies alone keep the port open.
        self.assertEqual([sock.fileno() for sock in listening], [-1, -1])
        first.processEnded(_failure(ProcessDone(0)))
        self.assertNoResult(stopped)
        self.clock.advance(10)
        self.assertEqual(second.transport.signals, ["TERM", "KILL"])
        second.processEnded(_failure(ProcessTerminated(signal=signal.SIGKILL)))
        self.successResultOf(stopped)
        self.assertEqual(len(self.spawned), 2)  # nothing started again while draining
        self.assertEqual(self.workers.ports, [])

    def test_every_worker_serves_the_dashboard_on_its_own_socket_of_the_port(self):
        """The dashboard's port is shared as the others are (its logins are
        in Redis, presence/redis/dashboard.py): no worker is told
        ``--admin none``."""
        argv = ["--listen", "tcp:0:interface=127.0.0.1", "--api", "tcp:0:interface=127.0.0.1",
                "--admin", "tcp:0:interface=127.0.0.1"]
        options = Options()
        options.parseOptions(argv)
        workers = Workers(2, argv, listening_descriptions(options), embedded_redis=False,
                          reactor=self.clock, spawn=self._spawn)
        workers.startService()
        self.addCleanup(workers.stopService)
        dashboard = workers.ports[2]
        for slot, (_, given, env, fds) in enumerate(self.spawned[2:]):
            self.assertEqual(given, argv)
            self.assertEqual(env["PRESENCE_WORKER_FDS"], "3,4,5")
            self.assertEqual(fds[2], dashboard.fileno_for(slot))
        if len(dashboard.sockets) > 1:  # SO_REUSEPORT: a socket each
            self.assertNotEqual(self.spawned[2][3][2], self.spawned[3][3][2])

    def test_why_a_worker_ended_is_said_with_its_status_or_signal(self):
        self.assertEqual(describe_exit(ProcessTerminated(signal=9)),
                         "killed by signal 9 (SIGKILL)")
        self.assertEqual(describe_exit(ProcessTerminated(exitCode=3)),
                         "exited with status 3")


def _failure(exception):
    return Failure(exception)


class WorkersTestCase(NodeProcessesTestCase):
    """``twistd -n presence --workers 2``, as a user runs it."""

    def start_workers(self, redis=True, count=2, listen=None, extra=(), admin_port=None,
                      own_group=False):
        client_port, api_port = free_port(), free_port()
        admin = "none" if admin_port is None else "tcp:%d:interface=127.0.0.1" % admin_port
        if listen is None:
            listen = ["tcp:%d:interface=127.0.0.1" % client_port]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="presence-workers-", suffix=".log")
        self.addCleanup(self.log.close)
        arguments = [TWISTD, "-n", "--pidfile=", "presence", "--workers", str(count),
                     "--api", "tcp:%d:interface=127.0.0.1" % api_port, "--admin", admin,
                     "--node-heartbeat", "0.5", "--close-timeout", "2", *extra]
        for description in listen:
            arguments += ["--listen", description]
        if redis:
            arguments += ["--redis", self.redis_url]
        if admin_port is not None:
            arguments += ["--admin-password", PASSWORD.decode()]
        self.parent = subprocess.Popen(
            arguments, cwd=tempfile.mkdtemp(prefix="presence-node-"),
            env=dict(outside_env(), PRESENCE_API_KEY=KEY), stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=own_group)
        self.addCleanup(self._stop_parent)
        self.client_port = client_port
        self.api = PresenceClient("http://127.0.0.1:%d" % api_port, KEY, pool=self.pool)
        self.clients = []

    def _stop_parent(self):
        if self.parent.poll() is None:
            self.parent.terminate()
            self.parent.wait(timeout=60)

    def logged(self):
        self.log.seek(0)
        return self.log.read()

    async def nodes(self, count, sessions=None):
        """Once /nodes lists ``count`` nodes (holding ``sessions`` in all,
        when given), the list."""
        seen = []

        async def listed():
            if self.parent.poll() is not None:
                raise AssertionError("the parent exited: %s" % self.logged())
            try:
                seen[:] = await wait(self.api.nodes())
            except Exception:
                return False
            return len(seen) == count and (
                sessions is None or sum(node["sessions"] for node in seen) == sessions)
        await until(listed, 60, "%d nodes (%s sessions): %r" % (count, sessions, seen), 0.2)
        return list(seen)

    async def connect(self, account):
        issued = await wait(self.api.issue_ticket(account, channels=["room:*"]))
        ws = await websockets.connect("ws://127.0.0.1:%d/?ticket=%s" % (
            self.client_port, issued["ticket"]))
        client = Client(ws)
        self.clients.append(client)
        await client.next_of("welcome")
        await client.send({"type": "subscribe", "channel": "room:w", "presence": False})
        await client.next_of("subscribed")
        return client


class WorkersProcessTests(WorkersTestCase):
    def test_two_workers_serve_one_port_and_share_one_embedded_redis(self):
        """Without --redis: the parent's one Redis, or /nodes (asked of
        either worker) would list only the worker that answered."""
        admin_port = free_port()
        self.start_workers(redis=False, admin_port=admin_port)

        async def scenario():
            await self.nodes(2)
            # Every worker serves the dashboard: a login made on one
            # connection holds on every later one, whichever worker takes
            # it, with the same CSRF token (the logins are in Redis).
            answer = await _http(admin_port, b"POST", "/login", b"password=" + PASSWORD)
            self.assertTrue(answer.startswith(b"HTTP/1.1 303 "), answer[:200])
            cookie = re.search(rb"(?i)set-cookie: (presence_admin=[^;]+)", answer).group(1)
            tokens, served_by = set(), set()
            # Eight connections, and more (to 40) until both workers have
            # answered: the kernel hashes each connection to a socket.
            for attempt in range(40):
                page = await _http(admin_port, b"GET", "/", headers=b"Cookie: %s\r\n" % cookie)
                self.assertTrue(page.startswith(b"HTTP/1.1 200 "), page[:200])
                tokens.update(re.findall(rb'name="csrf" value="([^"]+)"', page))
                served_by.update(re.findall(rb'class="served-by"[^>]*>([^<]+)<', page))
                if attempt >= 7 and len(served_by) == 2:
                    break
            self.assertEqual(len(tokens), 1, tokens)
            self.assertEqual({node.encode() for node in
                              (entry["node"] for entry in await self.nodes(2))}, served_by)
            for number in range(20):
                await self.connect("user%d" % number)
            nodes = await self.nodes(2, sessions=20)
            pids = {node["pid"] for node in nodes}
            self.assertEqual(len(pids), 2)
            self.assertNotIn(self.parent.pid, pids)
            for pid in pids:
                self.assertEqual(_parent_of(pid), self.parent.pid)
            # The kernel spread the connections: each worker holds some.
            self.assertTrue(all(node["sessions"] > 0 for node in nodes), nodes)
            self.assertEqual(len({node["node"] for node in nodes}), 2)
            for node in nodes:
                self.assertLessEqual(node["started_at"], node["heartbeat_at"])
            self.assertEqual(self.logged().count("redis-server"), 1)
            # Asked as the backend routes are: the API key, or 401.
            stranger = PresenceClient(self.api.url, "not-the-key", pool=self.pool)
            with self.assertRaises(PresenceAPIError) as refused:
                await wait(stranger.nodes())
            self.assertEqual(refused.exception.status, 401)
            for client in self.clients:
                await client.close()

        return run(scenario())

    def test_a_killed_worker_is_replaced_and_the_other_workers_sessions_stay_and_receive(self):
        self.start_workers()

        async def scenario():
            await self.nodes(2)
            for number in range(20):
                await self.connect("user%d" % number)
            before = await self.nodes(2, sessions=20)
            victim = before[0]["pid"]
            os.kill(victim, signal.SIGKILL)
            # The victim's clients lose their connection; the others keep theirs.
            await until(lambda: any(client.reader.done() for client in self.clients),
                        15, "the killed worker's clients to be cut off")
            await asyncio.sleep(0)
            survivors = [client for client in self.clients if not client.reader.done()]
            self.assertEqual(len(survivors), before[1]["sessions"])
            # Replaced: a new pid, the survivor's node unchanged.
            after = await self.nodes(2, sessions=len(survivors))
            pids = {node["pid"] for node in after}
            self.assertNotIn(victim, pids)
            self.assertIn(before[1]["pid"], pids)
            self.assertIn("(pid %d) killed by signal 9 (SIGKILL)" % victim, self.logged())
            answer = await wait(self.api.publish("room:w", {"text": "still here"}))
            self.assertEqual(answer["channels"], 1)
            for client in survivors:
                message = await client.next_of("message")
                self.assertEqual(message["data"], {"text": "still here"})
            for client in self.clients:
                await client.close()

        return run(scenario())

    def test_metrics_on_the_shared_dashboard_port_are_every_workers_sum(self):
        """A scrape lands on either worker and answers the same sums; a
        worker that does not answer (SIGSTOPped) is left out within the
        bound, and said to be. A slow heartbeat, so that the stopped worker
        is still listed live while it is asked: a scrape the kernel hands to
        the stopped worker waits out its timeout, and with a 5 s heartbeat
        (the node expires 15 s after its last announcement) four or five
        such in a row let the running worker reap it first (seen once in a
        fresh clone: "the sum of 1 worker", nothing said missing). With
        15 s, ten in a row (at 3 s each) are needed: one run in a thousand."""
        admin_port = free_port()
        self.start_workers(admin_port=admin_port, extra=("--node-heartbeat", "15"))

        async def scrape(timeout=10):
            answer = await asyncio.wait_for(_http(admin_port, b"GET", "/metrics"), timeout)
            head, _, body = answer.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            text = body.decode()
            return re.search(r"\(this one: ([^)]+)\)", text).group(1), text

        async def scenario():
            await self.nodes(2)
            for number in range(12):
                await self.connect("user%d" % number)
            nodes = await self.nodes(2, sessions=12)
            seen = set()
            for attempt in range(40):
                node, text = await scrape()
                seen.add(node)
                self.assertIn('presence_sessions{protocol="websocket"} 12\n', text)
                self.assertIn("presence_handshakes_accepted_total 12\n", text)
                self.assertIn('presence_metrics_workers{state="summed"} 2\n', text)
                self.assertIn('presence_metrics_workers{state="missing"} 0\n', text)
                if attempt >= 3 and len(seen) == 2:
                    break
            self.assertEqual(seen, {entry["node"] for entry in nodes})
            # One worker stopped: a scrape the other takes answers within
            # the bound with its own counters, the stopped one named.
            stopped, running = nodes
            os.kill(stopped["pid"], signal.SIGSTOP)
            self.addCleanup(os.kill, stopped["pid"], signal.SIGCONT)
            for _ in range(30):
                started = time.monotonic()
                try:
                    node, text = await scrape(timeout=3)
                except asyncio.TimeoutError:
                    continue  # the kernel gave it to the stopped worker
                break
            else:
                self.fail("no scrape reached the running worker")
            self.assertEqual(node, running["node"])
            self.assertLess(time.monotonic() - started, 3.5)
            self.assertIn("# presence: worker %s did not answer within 1 s: its counters are "
                          "left out\n" % stopped["node"], text)
            self.assertIn('presence_sessions{protocol="websocket"} %d\n' % running["sessions"],
                          text)
            self.assertIn('presence_metrics_workers{state="summed"} 1\n', text)
            self.assertIn('presence_metrics_workers{state="missing"} 1\n', text)
            os.kill(stopped["pid"], signal.SIGCONT)
            for client in self.clients:
                await client.close()

        return run(scenario())

    def test_sigterm_to_the_parent_closes_every_workers_sessions_with_1001_and_exits_0(self):
        self.start_workers()

        async def scenario():
            await self.nodes(2)
            for number in range(12):
                await self.connect("user%d" % number)
            nodes = await self.nodes(2, sessions=12)
            self.assertTrue(all(node["sessions"] > 0 for node in nodes), nodes)
            self.parent.send_signal(signal.SIGTERM)
            for client in self.clients:
                await asyncio.wait_for(client.reader, 30)
                self.assertEqual(client.ws.close_code, 1001)
            status = await until_exited(self.parent, 60)
            self.assertEqual(status, 0, self.logged())
            for node in nodes:
                self.assertFalse(_running(node["pid"]), node)

        return run(scenario())


    def test_ctrl_c_drains_once_the_whole_process_group_gets_sigint(self):
        """A terminal's Ctrl-C reaches the parent and every worker; the
        workers leave SIGINT to the parent, whose one SIGTERM each drains
        them (a second signal would stop a reactor twice: a traceback)."""
        self.start_workers(own_group=True)

        async def scenario():
            await self.nodes(2)
            for number in range(6):
                await self.connect("user%d" % number)
            await self.nodes(2, sessions=6)
            os.killpg(self.parent.pid, signal.SIGINT)
            for client in self.clients:
                await asyncio.wait_for(client.reader, 30)
                self.assertEqual(client.ws.close_code, 1001)
            self.assertEqual(await until_exited(self.parent, 60), 0, self.logged())
            self.assertNotIn("Traceback", self.logged())
            self.assertIn("presence: SIGINT: draining the workers", self.logged())

        return run(scenario())

    def test_workers_stop_when_their_parent_is_killed(self):
        self.start_workers()

        async def scenario():
            nodes = await self.nodes(2)
            self.addCleanup(_kill_running, [node["pid"] for node in nodes])  # if this fails
            self.parent.kill()
            self.parent.wait(timeout=10)
            await until(lambda: not any(_running(node["pid"]) for node in nodes), 30,
                        "the workers to stop")

        return run(scenario())


    def test_a_port_the_parent_cannot_bind_stops_it_with_status_1(self):
        """Refused before any worker starts (with --redis, the parent has
        nothing to wait for: it fails before its reactor runs)."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.start_workers(listen=["tcp:%d:interface=127.0.0.1" % taken.getsockname()[1]])

        async def scenario():
            self.assertEqual(await until_exited(self.parent, 30), 1, self.logged())
            self.assertIn("presence: the workers could not start", self.logged())
            self.assertIn("Address already in use", self.logged())
            self.assertNotIn("worker 0 started", self.logged())

        return run(scenario())


class SharedKindsTests(WorkersTestCase):
    """Every kind of port a node listens on is shared the same way."""

    def test_unix_tls_and_proxy_protocol_ports_are_shared_too(self):
        folder = tempfile.mkdtemp(prefix="presence-workers-")
        key, cert = self_signed_certificate(folder)
        path = os.path.join(folder, "clients.sock")
        tls_port, proxied_port = free_port(), free_port()
        self.start_workers(listen=[
            "unix:" + path,
            "ssl:%d:interface=127.0.0.1:privateKey=%s:certKey=%s" % (tls_port, key, cert),
            "haproxy:tcp:%d:interface=127.0.0.1" % proxied_port], extra=["--anonymous"])
        context = ssl.create_default_context(cafile=cert)

        async def scenario():
            await self.nodes(2)
            for opening, prefix in (
                    (lambda: asyncio.open_unix_connection(path), b""),
                    (lambda: asyncio.open_connection("127.0.0.1", tls_port, ssl=context), b""),
                    (lambda: asyncio.open_connection("127.0.0.1", proxied_port),
                     b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n")):
                # Enough connections that each worker answers some.
                for _ in range(6):
                    reader, writer = await opening()
                    writer.write(prefix + upgrade_request(host="127.0.0.1"))
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
                    writer.close()
            self.parent.terminate()
            self.assertEqual(await until_exited(self.parent, 60), 0, self.logged())
            # The parent made the unix socket, and removes it.
            self.assertFalse(os.path.exists(path))

        return run(scenario())


async def until_exited(process, timeout):
    await until(lambda: process.poll() is not None, timeout, "the parent to exit", 0.1)
    return process.returncode


async def _http(port, method, path, body=b"", headers=b""):
    """One request on a connection of its own: the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if body:
        headers += (b"Content-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: %d\r\n" % len(body))
    writer.write(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s\r\n%s"
                 % (method, path.encode(), port, headers, body))
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def _parent_of(pid):
    with open("/proc/%d/stat" % pid) as stat:
        return int(stat.read().rpartition(")")[2].split()[1])


def _kill_running(pids):
    for pid in pids:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def _running(pid):
    """Whether ``pid`` runs (a zombie left unreaped by an init that does not
    reap, in a container, has ended)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False

