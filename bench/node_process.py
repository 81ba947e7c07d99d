"""A ``twistd presence`` node for the benchmarks that load one (bench/soak.py,
bench/storm.py): started with its own embedded Redis and pinned to CPU 0,
its HTTP API asked with a small keep-alive client, its memory and CPU read
from /proc. The load runs in the benchmark's process, on CPU 1."""

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

__all__ = ["API_KEY", "free_port", "HTTP", "NodeProcess", "RedisProcess", "RedisClient"]

API_KEY = "bench-key"
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HTTP:
    """A minimal keep-alive HTTP/1.1 client for the API (JSON in, JSON out)."""

    def __init__(self, port):
        self.port = port
        self.streams = None
        self.lock = asyncio.Lock()

    async def post(self, path, body):
        async with self.lock:  # one request at a time on the kept-alive connection
            if self.streams is None:
                self.streams = await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = self.streams
            data = json.dumps(body).encode()
            writer.write(b"POST %s HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer %s\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (path.encode(), API_KEY.encode(), len(data), data))
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            if match:
                return json.loads(await reader.readexactly(int(match.group(1))))
            body = b""
            while True:  # Transfer-Encoding: chunked
                size = int((await reader.readline()).strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if not size:
                    return json.loads(body)
                body += chunk[:-2]

    async def get(self, path):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
        answer = await reader.read()
        writer.close()
        return answer.partition(b"\r\n\r\n")[2].decode()


class RedisClient:
    """A minimal Redis client on a unix socket (RESP), for looking at what a
    node wrote."""

    def __init__(self, path):
        self.path = path
        self.streams = None

    async def command(self, *words):
        """One command (RESP), its answer: an int, bytes, or a list of them."""
        while self.streams is None:
            try:
                self.streams = await asyncio.open_unix_connection(self.path)
            except OSError:
                await asyncio.sleep(0.05)
        reader, writer = self.streams
        words = [str(word).encode() for word in words]
        writer.write(b"*%d\r\n" % len(words) + b"".join(
            b"$%d\r\n%s\r\n" % (len(word), word) for word in words))
        return await self._reply(reader)

    async def _reply(self, reader):
        line = (await reader.readline())[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b":":
            return int(rest)
        if kind in (b"+", b"-"):
            return rest
        if kind == b"$":
            return None if rest == b"-1" else (await reader.readexactly(int(rest) + 2))[:-2]
        return [await self._reply(reader) for _ in range(int(rest))]


class RedisProcess(RedisClient):
    """A ``redis-server`` of the benchmark's own, on a unix socket, that
    outlives the nodes (to look at what a node left behind)."""

    def __init__(self):
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from presence.redis.embedded import find_redis_server

        self.folder = tempfile.mkdtemp(prefix="presence-bench-redis-")
        super().__init__(os.path.join(self.folder, "redis.sock"))
        self.process = subprocess.Popen(
            [find_redis_server(), "--port", "0", "--unixsocket", self.path, "--save", "",
             "--appendonly", "no", "--dir", self.folder], stdout=subprocess.DEVNULL)

    @property
    def url(self):
        return "unix://" + self.path

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


class NodeProcess:
    """``twistd -n presence`` with ``options`` (every limit on connections
    lifted: the load comes from 127.0.0.1), on ``redis`` (a RedisProcess) or
    its own embedded Redis, whose socket is ``redis_path`` once
    :meth:`start` returned; pinned to ``cpus`` (taskset's list)."""

    def __init__(self, options=(), redis=None, cpus="0"):
        self.cpus = cpus
        self.options = list(options) + (["--redis", redis.url] if redis is not None else [])
        self.external_redis = redis
        self.client_port, self.api_port, self.admin_port = free_port(), free_port(), free_port()
        self.process = None
        self.redis_path = None
        self.http = HTTP(self.api_port)

    async def start(self):
        self.log = open(os.path.join(tempfile.mkdtemp(prefix="presence-bench-"), "node.log"),
                        "w")
        self.process = subprocess.Popen(
            ["taskset", "-c", self.cpus, TWISTD, "-n", "--pidfile=", "presence",
             "--listen", "tcp:%d:interface=127.0.0.1:backlog=4096" % self.client_port,
             "--api", "tcp:%d:interface=127.0.0.1" % self.api_port,
             "--admin", "tcp:%d:interface=127.0.0.1" % self.admin_port,
             "--max-connections-per-ip", "0", "--max-connections", "0"] + self.options,
            env=dict(os.environ, PRESENCE_API_KEY=API_KEY), stdout=self.log,
            stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            with open(self.log.name) as f:
                text = f.read()
            match = re.search(r"embedded Redis \(.*\) at unix://(\S+)", text)
            if match:
                self.redis_path = match.group(1)
            if self.external_redis is not None:
                self.redis_path = self.external_redis.path
            if re.search(r"presence: WebSocket\b.*firepresence.* on ", text) and self.redis_path:
                return
        raise SystemExit("the node did not start: see %s" % self.log.name)

    def rss_kib(self):
        with open("/proc/%d/status" % self.process.pid) as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.process.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def ticket(self, account, channels):
        answer = await self.http.post("/tickets", {"account": account, "channels": channels})
        return answer["ticket"]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
