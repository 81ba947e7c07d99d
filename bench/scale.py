"""The scale benchmark (issue 19): many WebSocket sessions on one node, each
subscribed to its account's channel and to 2 of 1,000 shared channels, with
heartbeats on, then publishes through Redis at a delivery rate for minutes.

usage: python bench/scale.py [--sessions 100000] [--workers 1] [--nodes 1]
                             [--duration 300] [--rate 25000] [--channels 1000]
                             [--per-session-channels 2] [--heartbeat 25]
                             [--account-share 0.02] [--json FILE]

The issue's scenario is the default: 100,000 sessions on one node process,
25,000 deliveries a second for 300 s. One process cannot hold more sockets
than its open-files limit (RLIMIT_NOFILE), so the script checks first that
every node process (``--nodes`` of them, each of ``--workers``) and every
load generator stays under it, and explains when not (exit status 2).

What it does:

1. Starts a Redis of its own (a unix socket) and the nodes, pinned to
   ``--node-cpus`` (CPU 0), each with ``--heartbeat`` and a ticket lifetime
   long enough for the tickets issued up front.
2. Issues one ticket per session through the nodes' ``POST /tickets`` (the
   backend's path, docs/tickets.md), bound to the source address its
   session will connect from.
3. Reads the nodes' memory (VmRSS of every process of each node) and the
   kernel's TCP memory (/proc/net/sockstat), then starts the load
   generators (bench/loadgen/scaleload.c, built with ``cc -O2`` into a cache
   folder; each holds at most ``--per-generator`` sessions from its own
   127.0.0.x address, on ``--load-cpus``), which open the sessions at
   ``--open-rate`` a second, subscribe them, answer heartbeats and send
   ``--ping-rate`` pings a second each for the round trips. Reads memory again
   once every session is open.
4. Publishes for ``--duration`` seconds straight into Redis (docs/redis.md,
   "Pub/sub channels": ``PUBLISH presence:channel:C {"type":"message",...}``),
   round robin over the shared channels and, for ``--account-share`` of the
   deliveries, over the accounts' own channels, paced so that deliveries
   (publishes times the channel's subscribers) come at ``--rate`` a second.
   Each message's data is ``{"q": SEQ, "t": NS}``: a sequence number per
   channel and CLOCK_MONOTONIC in nanoseconds.
5. After ``--drain`` seconds, asks each generator for its counts: latency
   histograms, and per session and channel the distinct sequence numbers
   received and the repeats. Lost = published on the channel minus distinct
   received, for every session that was open when the publishing began.

Prints a JSON summary and the Markdown table row of bench/README.md, with
the ratios to Centrifugo's published per-pod point.
"""

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from node_process import HTTP, NodeProcess, RedisProcess  # noqa: E402

GENERATOR_SOURCE = os.path.join(HERE, "loadgen", "scaleload.c")

#: Sockets a node process needs besides its sessions: listening ports, Redis
#: connections, the log, the embedded interpreter's own files; measured well
#: under this.
NODE_FD_RESERVE = 100
#: Sockets a generator process needs besides its sessions.
GENERATOR_FD_RESERVE = 20
#: Ephemeral ports Linux gives one source address (ip_local_port_range
#: 32768-60999), so at most this many sessions per generator address.
PORTS_PER_SOURCE = 28000

#: Centrifugo's published per-pod operating point (its documentation's
#: scaling figures, quoted by issue 19): connections, deliveries a second,
#: CPUs, p99 latency, memory per connection.
CENTRIFUGO = {"connections": 50000, "deliveries_per_s": 25000, "cpus": 2.0, "p99_ms": 200.0,
              "kb_per_connection": 27.0}


# ----------------------------------------------------------- pure accounting

def channels_of(session, channels, per_session):
    """The shared channels (numbers) of session number ``session``: distinct,
    and every channel gets the same share of the sessions."""
    step = channels // per_session
    shift = session // channels
    return [(session + shift + k * step) % channels for k in range(per_session)]


def subscribers(sessions, channels, per_session):
    """How many of ``sessions`` sessions each shared channel has."""
    counts = [0] * channels
    for session in range(sessions):
        for channel in channels_of(session, channels, per_session):
            counts[channel] += 1
    return counts


def fd_check(sessions, node_processes, generators, limit):
    """Why this run cannot hold its sessions under the open-files ``limit``
    of a process, or None when it can."""
    per_node = math.ceil(sessions / node_processes)
    if per_node + NODE_FD_RESERVE > limit:
        return ("%d sessions on %d node process(es) is %d sockets in one process, over its "
                "open-files limit of %d (RLIMIT_NOFILE; raising it past the hard limit needs "
                "CAP_SYS_RESOURCE). At most %d sessions fit in one process here: use --sessions "
                "%d, or spread them with --workers or --nodes (at least %d processes)."
                % (sessions, node_processes, per_node, limit, limit - NODE_FD_RESERVE,
                   limit - NODE_FD_RESERVE,
                   math.ceil(sessions / (limit - NODE_FD_RESERVE))))
    per_generator = math.ceil(sessions / generators)
    if per_generator + GENERATOR_FD_RESERVE > limit or per_generator > PORTS_PER_SOURCE:
        return ("%d sessions per load generator is over its open-files limit (%d) or the "
                "ephemeral ports of one source address (%d): lower --per-generator"
                % (per_generator, limit, PORTS_PER_SOURCE))
    return None


def percentile(histogram, fraction):
    """The value under which ``fraction`` of a histogram's samples lie, from
    ``{bucket floor: count}`` (the bucket's floor: the generator's buckets are
    10 us wide up to 100 ms, then 1 ms)."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for floor in sorted(histogram):
        seen += histogram[floor]
        if seen >= fraction * total:
            return floor
    return max(histogram)


def account_deliveries(sessions, published):
    """Lost and duplicated deliveries. ``sessions``: per session that was open
    when the publishing began, ``[(channel key, distinct received,
    repeats), ...]``; ``published``: messages published per channel key.
    Every message published on a session's channel after it opened is owed
    to it once."""
    owed = received = lost = duplicated = 0
    for slots in sessions:
        for key, distinct, repeats in slots:
            due = published.get(key, 0)
            owed += due
            received += distinct
            lost += max(0, due - distinct)
            duplicated += repeats
    return {"owed": owed, "received_distinct": received, "lost": lost, "duplicated": duplicated}


def parse_report(text):
    """A generator's report (scaleload.c ``report``): counts, histograms, and
    per session ``(state, [(channel key, distinct, repeats), ...])`` where a
    key is ``("account", n)`` or ``("shared", k)``."""
    counts, histograms, sessions, closes = {}, {"latency": {}, "rtt": {}}, [], {}
    for line in text.splitlines():
        words = line.split()
        if words[0] in histograms:
            histograms[words[0]][int(words[1])] = int(words[2])
        elif words[0] == "close":
            closes[int(words[1])] = int(words[2])
        elif words[0] == "second":
            histograms.setdefault("seconds", {})[int(words[1])] = (int(words[2]), int(words[3]))
        elif words[0] == "session":
            account, state = int(words[1]), int(words[2])
            slots = []
            for word in words[3:]:
                channel, distinct, repeats = (int(part) for part in word.split(":"))
                key = ("account", account) if channel < 0 else ("shared", channel)
                slots.append((key, distinct, repeats))
            sessions.append((state, slots))
        else:
            counts[words[0]] = int(words[1])
    return counts, histograms, closes, sessions


# ------------------------------------------------------------ the processes

def process_tree(pid):
    """``pid`` and its descendants (a node with workers is several processes)."""
    pids, index = [pid], 0
    while index < len(pids):
        try:
            for task in os.listdir("/proc/%d/task" % pids[index]):
                with open("/proc/%d/task/%s/children" % (pids[index], task)) as f:
                    pids.extend(int(child) for child in f.read().split())
        except OSError:
            pass
        index += 1
    return pids


def tree_rss_kib(pid):
    total = 0
    for member in process_tree(pid):
        try:
            with open("/proc/%d/status" % member) as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total


def tree_cpu_seconds(pid):
    total = 0
    for member in process_tree(pid):
        try:
            with open("/proc/%d/stat" % member) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def tcp_memory_kib():
    """The kernel's TCP buffers in use (/proc/net/sockstat ``TCP: ... mem``,
    in pages), the TCP sockets in use, and the kernel's TCP socket objects
    (/proc/slabinfo ``TCP``: objects times their size; None when unreadable).
    Both ends of a loopback session are on this machine."""
    with open("/proc/net/sockstat") as f:
        tcp = re.search(r"TCP: inuse (\d+) .* mem (\d+)", f.read())
    try:
        with open("/proc/slabinfo") as f:
            slab = re.search(r"^TCP\s+(\d+)\s+\d+\s+(\d+)", f.read(), re.M)
        objects_kib = int(slab.group(1)) * int(slab.group(2)) // 1024
    except (OSError, AttributeError):
        objects_kib = None
    return int(tcp.group(2)) * os.sysconf("SC_PAGE_SIZE") // 1024, int(tcp.group(1)), objects_kib


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[:2]


def build_generator():
    """scaleload, built with ``cc -O2`` into the cache folder once per version
    of its source."""
    with open(GENERATOR_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    folder = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                          "presence-scale")
    binary = os.path.join(folder, "scaleload-" + digest)
    if not os.path.exists(binary):
        os.makedirs(folder, exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", binary + ".tmp", GENERATOR_SOURCE], check=True)
        os.replace(binary + ".tmp", binary)
    return binary


class Generator:
    """One scaleload process: its sessions' file, its source address, and its
    lines on stdout."""

    def __init__(self, binary, number, source, ports, args):
        self.number, self.source = number, source
        self.folder = tempfile.mkdtemp(prefix="presence-scale-%d-" % number)
        self.sessions_file = os.path.join(self.folder, "sessions")
        self.report_file = os.path.join(self.folder, "report")
        self.command = ["taskset", "-c", args.load_cpus, binary, "-s", source,
                        "-p", ",".join(str(port) for port in ports), "-f", self.sessions_file,
                        "-r", str(args.open_rate / args.generators_count), "-c", "100",
                        "-g", str(args.ping_rate)]
        self.process = None
        self.ready = None

    async def start(self):
        self.process = await asyncio.create_subprocess_exec(
            *self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    async def wait_ready(self, progress):
        while True:
            line = (await self.process.stdout.readline()).decode()
            if not line:
                raise SystemExit("load generator %d ended" % self.number)
            words = line.split()
            progress[self.number] = (int(words[1]), int(words[2]))
            if words[0] == "ready":
                self.ready = progress[self.number]
                return

    async def report(self):
        self.process.stdin.write(b"report %s\n" % self.report_file.encode())
        await self.process.stdin.drain()
        while (await self.process.stdout.readline()).strip() != b"reported":
            pass
        with open(self.report_file) as f:
            return parse_report(f.read())

    async def stop(self):
        if self.process is not None and self.process.returncode is None:
            self.process.stdin.close()  # it exits at the end of its input
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class Publisher:
    """PUBLISHes to the channels' Redis channels, paced to a delivery rate,
    with a sequence number per channel and a send time in each message."""

    TICK = 0.005

    def __init__(self, redis_path, prefix, shared_subscribers, accounts, rate, account_share):
        self.redis_path, self.prefix = redis_path, prefix
        self.shared_subscribers = shared_subscribers
        self.accounts = accounts
        self.rate, self.account_share = rate, account_share
        self.published = {}
        self.unheard = 0  # publishes no node was subscribed to

    def _message(self, key):
        seq = self.published[key] = self.published.get(key, 0) + 1
        name = ("account:u-%d" if key[0] == "account" else "s-%d") % key[1]
        data = '{"type":"message","channel":"%s","data":{"q":%d,"t":%d}}' % (
            name, seq, time.monotonic_ns())
        words = [b"PUBLISH", (self.prefix + "channel:" + name).encode(), data.encode()]
        return b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)

    async def run(self, duration):
        reader, writer = await asyncio.open_unix_connection(self.redis_path)
        shared = [k for k, n in enumerate(self.shared_subscribers) if n]
        planned = account_planned = 0.0
        shared_cursor = account_cursor = 0
        started = time.monotonic()
        until = started + duration
        while True:
            now = time.monotonic()
            if now >= until:
                break
            due = self.rate * (now - started)
            batch = []
            while planned < due:
                if self.accounts and account_planned < self.account_share * planned:
                    key = ("account", account_cursor % self.accounts)
                    account_cursor += 1
                    account_planned += 1
                    planned += 1
                else:
                    channel = shared[shared_cursor % len(shared)]
                    shared_cursor += 1
                    key = ("shared", channel)
                    planned += self.shared_subscribers[channel]
                batch.append(self._message(key))
            if batch:
                writer.write(b"".join(batch))
                for _ in batch:
                    if (await reader.readline()) == b":0\r\n":
                        self.unheard += 1
            await asyncio.sleep(max(0, self.TICK - (time.monotonic() - now)))
        writer.close()
        return time.monotonic() - started


# ---------------------------------------------------------------- the run

class ScaleRun:
    def __init__(self, args):
        self.args = args
        self.nodes = []
        self.generators = []
        self.redis = None
        self.result = {"sessions_asked": args.sessions, "workers": args.workers,
                       "nodes": args.nodes, "rate_asked": args.rate,
                       "duration_s": args.duration, "channels": args.channels,
                       "per_session_channels": args.per_session_channels,
                       "heartbeat_s": args.heartbeat, "account_share": args.account_share}

    async def start_nodes(self):
        args = self.args
        self.redis = RedisProcess()
        options = ["--heartbeat", str(args.heartbeat),
                   "--heartbeat-timeout", str(args.heartbeat_timeout),
                   "--node-heartbeat", str(args.node_heartbeat),
                   "--ticket-ttl", "7200", "--ticket-ip", "strict",
                   "--max-channels-per-session", str(max(100, args.per_session_channels))]
        if args.workers != 1:
            options += ["--workers", str(args.workers)]
        for _ in range(args.nodes):
            node = NodeProcess(options, redis=self.redis, cpus=args.node_cpus)
            self.nodes.append(node)  # stopped at the end, even if it does not start
            await node.start()
            await wait_for_workers(node, args.workers)

    def _source(self, generator):
        return "127.0.0.%d" % (10 + generator)

    async def issue_tickets(self):
        """One ticket per session through the nodes' APIs, several requests at
        once; returns each generator's lines for its sessions' file."""
        args = self.args
        per = args.per_generator_actual
        lines = [[] for _ in range(args.generators_count)]
        clients = [HTTP(node.api_port) for node in self.nodes for _ in range(8 * args.workers)]
        queue = asyncio.Queue()
        for session in range(args.sessions):
            queue.put_nowait(session)

        async def worker(http):
            while not queue.empty():
                session = queue.get_nowait()
                generator = session // per
                answer = await http.post("/tickets", {
                    "account": "u-%d" % session, "channels": ["s-*"],
                    "ip": self._source(generator)})
                lines[generator].append("%s %d %s" % (answer["ticket"], session, " ".join(
                    str(c) for c in channels_of(session, args.channels,
                                                args.per_session_channels))))
        started = time.monotonic()
        await asyncio.gather(*(worker(http) for http in clients))
        self.result["tickets_s"] = round(time.monotonic() - started, 1)
        return lines

    def sample(self, name):
        rss = sum(tree_rss_kib(node.process.pid) for node in self.nodes)
        tcp_kib, tcp_sockets, slab_kib = tcp_memory_kib()
        self.result.update({"rss_kib_" + name: rss, "tcp_mem_kib_" + name: tcp_kib,
                            "tcp_sockets_" + name: tcp_sockets, "tcp_slab_kib_" + name: slab_kib})

    def load_cpu(self):
        own = os.times()
        return (sum(tree_cpu_seconds(g.process.pid) for g in self.generators),
                own.user + own.system, tree_cpu_seconds(self.redis.process.pid))

    def node_cpu(self):
        return sum(tree_cpu_seconds(node.process.pid) for node in self.nodes)

    async def open_sessions(self, lines, binary):
        args = self.args
        ports = [node.client_port for node in self.nodes]
        for number, generator_lines in enumerate(lines):
            generator = Generator(binary, number, self._source(number), ports, args)
            with open(generator.sessions_file, "w") as f:
                f.write("\n".join(generator_lines) + "\n")
            self.generators.append(generator)
        started = time.monotonic()
        for generator in self.generators:
            await generator.start()
        progress = {}
        waiting = asyncio.ensure_future(asyncio.gather(
            *(generator.wait_ready(progress) for generator in self.generators)))
        while not waiting.done():
            await asyncio.wait([waiting], timeout=10)
            print("opening: %d open, %d failed, %.0f s" % (
                sum(p[0] for p in progress.values()), sum(p[1] for p in progress.values()),
                time.monotonic() - started), flush=True)
        waiting.result()
        self.result["opened"] = sum(g.ready[0] for g in self.generators)
        self.result["failed_to_open"] = sum(g.ready[1] for g in self.generators)
        self.result["open_s"] = round(time.monotonic() - started, 1)

    async def publish(self):
        args = self.args
        shared = subscribers(args.sessions, args.channels, args.per_session_channels)
        publisher = Publisher(self.redis.path, "presence:", shared, args.sessions, args.rate,
                              args.account_share)
        cpu, wall = self.node_cpu(), time.monotonic()
        load_cpu = self.load_cpu()
        elapsed = await publisher.run(args.duration)
        self.result["node_cpu_s_publishing"] = round(self.node_cpu() - cpu, 2)
        # Whether the load was a bottleneck: the generators' and this
        # process's (the publisher's) CPU, and Redis's.
        self.result["load_cpu_cores"] = {
            name: round((after - before) / elapsed, 2)
            for name, before, after in zip(("generators", "publisher", "redis"), load_cpu,
                                           self.load_cpu())}
        self.result["publishing_s"] = round(time.monotonic() - wall, 1)
        self.result["published"] = sum(publisher.published.values())
        self.result["publishes_no_node_heard"] = publisher.unheard
        return publisher.published, elapsed

    async def run(self):
        binary = build_generator()
        try:
            await self.measure(binary)
        finally:
            for generator in self.generators:
                await generator.stop()
            for node in self.nodes:
                node.stop()
            if self.redis is not None:
                self.redis.stop()
        return self.result

    async def measure(self, binary):
        args = self.args
        self.result["started_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        self.result["load_average_at_start"] = load_average()
        await self.start_nodes()
        await asyncio.sleep(2)
        self.sample("start")
        lines = await self.issue_tickets()
        await asyncio.sleep(2)
        self.sample("before")
        await self.open_sessions(lines, binary)
        await asyncio.sleep(args.settle)
        self.sample("open")
        published, elapsed = await self.publish()
        await asyncio.sleep(args.drain)
        self.sample("end")
        # The machine is shared: what else ran shows in its load (1 and 5 minutes).
        self.result["load_average_at_end"] = load_average()
        reports = [await generator.report() for generator in self.generators]
        # With workers, whichever worker the scrape lands on answers the sum
        # of every worker's /metrics (presence/web/metrics.py).
        metrics = [await fetch_metrics(node.admin_port) for node in self.nodes]
        self.result["node_metrics_of"] = ("every worker, summed" if args.workers > 1
                                          else "every node")
        self.summarize(reports, published, elapsed, metrics)

    def summarize(self, reports, published, elapsed, metrics):
        summarize(self.result, reports, published, elapsed, metrics)


async def fetch_metrics(port):
    """A node's /metrics (the dashboard's port answers a loopback Host only)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
    answer = await reader.read()
    writer.close()
    return answer.partition(b"\r\n\r\n")[2].decode()


async def wait_for_workers(node, workers):
    """Until every worker of ``node`` logged its listening ports."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(node.log.name) as f:
            if len(re.findall(r"presence: WebSocket\b.*firepresence.* on ", f.read())) >= workers:
                return
        await asyncio.sleep(0.2)
    raise SystemExit("the workers did not all start: see %s" % node.log.name)


def heartbeat_histogram(metrics):
    """The nodes' heartbeat round trips (presence_heartbeat_rtt_seconds),
    summed over nodes: ``{upper bound in ms: count in the bucket}``."""
    cumulative = {}
    for text in metrics:
        for bound, count in re.findall(
                r'presence_heartbeat_rtt_seconds_bucket\{le="([0-9.]+)"\} (\d+)', text):
            cumulative[float(bound) * 1000] = cumulative.get(float(bound) * 1000, 0) + int(count)
    histogram, below = {}, 0
    for bound in sorted(cumulative):
        histogram[bound] = cumulative[bound] - below
        below = cumulative[bound]
    return histogram


def summarize(result, reports, published, elapsed, metrics):
    """The result's figures from the generators' reports, what was published,
    and the nodes' /metrics."""
    latency, rtt, counts, closes, sessions = {}, {}, {}, {}, []
    for report_counts, histograms, report_closes, report_sessions in reports:
        for name, value in report_counts.items():
            counts[name] = max(counts.get(name, 0), value) if name.startswith("max_") else \
                counts.get(name, 0) + value
        for floor, count in histograms["latency"].items():
            latency[floor] = latency.get(floor, 0) + count
        for floor, count in histograms["rtt"].items():
            rtt[floor] = rtt.get(floor, 0) + count
        for code, count in report_closes.items():
            closes[code] = closes.get(code, 0) + count
        sessions.extend(slots for state, slots in report_sessions if state)
    accounting = account_deliveries(sessions, published)
    sessions_open = result["opened"]
    deliveries = counts.get("deliveries", 0)
    heartbeats = heartbeat_histogram(metrics)
    result.update(accounting)
    # The nodes' own count (every message written to a session since they
    # started): the generators' count, seen from the other end.
    result["node_delivered_total"] = sum(
        int(float(count)) for text in metrics
        for count in re.findall(r"^presence_delivered_total (\S+)", text, re.M))
    result.update({
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / elapsed),
        "latency_p50_ms": _ms(percentile(latency, 0.5)),
        "latency_p99_ms": _ms(percentile(latency, 0.99)),
        "latency_max_ms": _ms(counts.get("max_latency_us")),
        "closed_by_server": counts.get("closed_after_open", 0), "close_codes": closes,
        "heartbeats_answered_by_clients": counts.get("pings_answered", 0),
        "heartbeat_rtt_p50_ms_at_most": percentile(heartbeats, 0.5),
        "heartbeat_rtt_p99_ms_at_most": percentile(heartbeats, 0.99),
        "client_ping_rtt_p50_ms": _ms(percentile(rtt, 0.5)),
        "client_ping_rtt_p99_ms": _ms(percentile(rtt, 0.99)),
        "unexpected_messages": counts.get("unexpected", 0),
        "rss_per_session_kib": round((result["rss_kib_open"] - result["rss_kib_before"])
                                     / max(1, sessions_open), 2),
        # After the publishing: heartbeats' round trips kept, buffers grown.
        "rss_per_session_kib_end": round((result["rss_kib_end"] - result["rss_kib_before"])
                                         / max(1, sessions_open), 2),
        # From before the tickets: the API's garbage may be reused by sessions.
        "rss_per_session_kib_from_start": round(
            (result["rss_kib_open"] - result["rss_kib_start"]) / max(1, sessions_open), 2),
        "tcp_mem_per_session_kib": round((result["tcp_mem_kib_open"]
                                          - result["tcp_mem_kib_before"])
                                         / max(1, sessions_open), 2),
        # Two TCP sockets a session: the node's end and the generator's.
        "tcp_slab_per_session_kib": None if result["tcp_slab_kib_open"] is None else round(
            (result["tcp_slab_kib_open"] - result["tcp_slab_kib_before"])
            / max(1, 2 * sessions_open), 2),
        "node_cpu_ms_per_1000_deliveries": round(
            1000 * result["node_cpu_s_publishing"] / max(1, deliveries / 1000), 2),
        "node_cpu_cores": round(result["node_cpu_s_publishing"] / result["publishing_s"], 2),
    })
    result["centrifugo_ratios"] = centrifugo_ratios(result)
    result["worst_seconds"] = worst_seconds(reports)
    result["seconds_with_a_delivery_over_100_ms"] = [
        second for second, _ in worst_seconds(reports, count=None, over_ms=100)]


def worst_seconds(reports, count=5, over_ms=0):
    """The seconds of the publishing with the slowest deliveries (seconds since
    each generator's first delivery), worst first: ``[second, ms]``; with
    ``over_ms``, only those with a delivery slower, in time order."""
    worst = {}
    for _, histograms, _, _ in reports:
        for second, (_, slowest) in histograms.get("seconds", {}).items():
            worst[second] = max(worst.get(second, 0), slowest)
    if over_ms:
        return [[second, _ms(us)] for second, us in sorted(worst.items())
                if us > over_ms * 1000]
    return [[second, _ms(us)] for second, us in
            sorted(worst.items(), key=lambda item: -item[1])[:count]]


def _ms(us):
    return None if us is None else round(us / 1000, 2)


def centrifugo_ratios(result):
    """Presence's figure over Centrifugo's for each: under 1 is ahead."""
    centrifugo_cpu_ms = 1000 * CENTRIFUGO["cpus"] / (CENTRIFUGO["deliveries_per_s"] / 1000)
    ratios = {"cpu_per_1000_deliveries": result["node_cpu_ms_per_1000_deliveries"]
              / centrifugo_cpu_ms,
              "memory_per_session": result["rss_per_session_kib"] * 1024
              / (CENTRIFUGO["kb_per_connection"] * 1000)}
    if result["latency_p99_ms"] is not None:
        ratios["p99"] = result["latency_p99_ms"] / CENTRIFUGO["p99_ms"]
    return {name: round(value, 3) for name, value in ratios.items()}


#: bench/README.md's scale table: its header, and what each column shows.
TABLE_HEADER = (
    "| run | sessions open / failed | deliveries/s (publishing, s) | latency p50 / p99 / max "
    "[ms] | lost / duplicated | node RSS per session, open / end [KiB] | kernel per session: "
    "TCP buffers / socket object [KiB] | node CPU per 1,000 deliveries [ms] | node CPU "
    "[cores] | heartbeat RTT p50 / p99, node's (at most) [ms] | ping RTT p50 / p99, "
    "client's [ms] | load CPU: generators / publisher / Redis [cores] |\n"
    "| --- |" + " --- |" * 11)


def table_row(result, label):
    """The run's row of bench/README.md's scale table."""
    load = result["load_cpu_cores"]
    return ("| %s | %d / %d | %d (%s) | %s / %s / %s | %d / %d | %s / %s | %s / %s | %s | %s "
            "| %s / %s | %s / %s | %s / %s / %s |" % (
                label, result["opened"], result["failed_to_open"], result["deliveries_per_s"],
                result["publishing_s"], result["latency_p50_ms"], result["latency_p99_ms"],
                result["latency_max_ms"], result["lost"], result["duplicated"],
                result["rss_per_session_kib"], result["rss_per_session_kib_end"],
                result["tcp_mem_per_session_kib"], result["tcp_slab_per_session_kib"],
                result["node_cpu_ms_per_1000_deliveries"], result["node_cpu_cores"],
                result["heartbeat_rtt_p50_ms_at_most"], result["heartbeat_rtt_p99_ms_at_most"],
                result["client_ping_rtt_p50_ms"], result["client_ping_rtt_p99_ms"],
                load["generators"], load["publisher"], load["redis"]))


def raise_fd_limit(needed):
    """The open-files limit the nodes and generators started from here
    inherit: ``needed`` if this process may raise it that far, else its hard
    limit (printed with the refusal, as setrlimit gave it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError) as error:
            print("setrlimit(RLIMIT_NOFILE, %d): %s; the hard limit is %d"
                  % (needed, error, hard), file=sys.stderr)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=1,
                        help="twistd presence --workers N for each node")
    parser.add_argument("--nodes", type=int, default=1,
                        help="independent node processes on one Redis, each on its own port")
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--rate", type=float, default=25000, help="deliveries a second")
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--per-session-channels", type=int, default=2)
    parser.add_argument("--account-share", type=float, default=0.02,
                        help="share of the deliveries published to accounts' own channels")
    parser.add_argument("--heartbeat", type=float, default=25)
    parser.add_argument("--heartbeat-timeout", type=float, default=10)
    parser.add_argument("--node-heartbeat", type=float, default=5,
                        help="the nodes' --node-heartbeat (their periodic work's interval)")
    parser.add_argument("--open-rate", type=float, default=1000, help="sessions a second, in all")
    parser.add_argument("--ping-rate", type=float, default=20,
                        help="client pings a second per generator (round trips)")
    parser.add_argument("--per-generator", type=int, default=17000)
    parser.add_argument("--node-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument("--settle", type=float, default=5)
    parser.add_argument("--drain", type=float, default=5)
    parser.add_argument("--json", default=None, help="write the result here too")
    args = parser.parse_args()
    if not 1 <= args.per_session_channels <= 8 or args.per_session_channels > args.channels:
        parser.error("--per-session-channels: 1 to 8, and at most --channels")
    args.generators_count = math.ceil(args.sessions / args.per_generator)
    args.per_generator_actual = math.ceil(args.sessions / args.generators_count)
    limit = raise_fd_limit(math.ceil(args.sessions / (args.nodes * args.workers))
                           + NODE_FD_RESERVE)
    refusal = fd_check(args.sessions, args.nodes * args.workers, args.generators_count, limit)
    if refusal:
        print(refusal, file=sys.stderr)
        sys.exit(2)
    os.sched_setaffinity(0, {int(cpu) for cpu in args.load_cpus.split(",")})
    result = asyncio.run(ScaleRun(args).run())
    print(json.dumps(result, indent=1))
    print(TABLE_HEADER)
    print(table_row(result, "%d sessions, %d worker(s) x %d node(s), %g deliveries/s asked"
                    % (args.sessions, args.workers, args.nodes, args.rate)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
