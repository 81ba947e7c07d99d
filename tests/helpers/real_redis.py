"""Debian's ``redis-server`` and ``redis-sentinel`` as separate processes
on loopback, for the tests of what one embedded Redis cannot show: several
Redis servers (shards), a replica, Sentinel and its failovers.

    master = await start_redis_server(self)
    replica = await start_redis_server(self, replica_of=master)
    sentinel = await start_sentinel(self, "presence", master)
    ... master.kill() ...

Each process gets a free loopback port and its own temporary directory
(Sentinel rewrites its configuration file there), and is stopped at the
test's cleanup. scripts/test.sh installs the programs in CI.
"""

import os
import shutil
import signal
import subprocess
import tempfile

from .processes import free_port, wait_for_port

__all__ = ["REDIS_SERVER", "REDIS_SENTINEL", "RedisProcess", "start_redis_server",
           "start_sentinel"]

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_SENTINEL = "/usr/bin/redis-sentinel"


class RedisProcess:
    """One redis-server or redis-sentinel: ``port``, ``url``
    (redis://127.0.0.1:PORT), ``directory``, ``process`` (a Popen)."""

    def __init__(self, process, port, directory):
        self.process = process
        self.port = port
        self.directory = directory

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def kill(self, signum=signal.SIGKILL):
        """Signal the process (SIGKILL: gone at once, nothing saved, its
        connections reset by the kernel) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=30)

    def pause(self):
        """SIGSTOP: the process hangs with its connections open, answering
        nothing (as a frozen machine, or a partition that drops packets,
        looks to its clients); stop() resumes it before terminating it."""
        self.process.send_signal(signal.SIGSTOP)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self):
        """What the process wrote (its log file), for a failing test's message."""
        try:
            with open(os.path.join(self.directory, "log")) as log:
                return log.read()
        except OSError:
            return ""


async def _started(test, arguments, port, directory):
    process = subprocess.Popen(arguments, cwd=directory, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    started = RedisProcess(process, port, directory)
    test.addCleanup(started.stop)
    await wait_for_port(port, process, timeout=15)
    return started


async def start_redis_server(test, replica_of=None, arguments=()):
    """A redis-server on a free loopback port, keeping nothing on disk (no
    RDB, no AOF), a replica of ``replica_of`` (a RedisProcess) if given;
    more ``arguments`` as redis-server's command line takes them
    (``["--requirepass", "secret"]``). Returns once it listens."""
    port = free_port()
    directory = tempfile.mkdtemp(prefix="presence-redis-")
    command = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
               "--save", "", "--appendonly", "no", "--daemonize", "no",
               "--logfile", os.path.join(directory, "log")]
    if replica_of is not None:
        command += ["--replicaof", "127.0.0.1", str(replica_of.port)]
    return await _started(test, command + list(arguments), port, directory)


async def start_sentinel(test, master_name, master, quorum=1, down_after_ms=1000,
                         failover_timeout_ms=3000, master_password=None):
    """A redis-sentinel on a free loopback port monitoring ``master`` (a
    RedisProcess) under ``master_name``. It calls the master down after
    ``down_after_ms`` without an answer, and with ``quorum`` 1 a lone
    Sentinel fails it over by itself (sentinel.conf's directives:
    https://redis.io/docs/management/sentinel/#configuring-sentinel).
    Returns once it listens."""
    port = free_port()
    directory = tempfile.mkdtemp(prefix="presence-sentinel-")
    lines = ["port %d" % port, "bind 127.0.0.1", "dir %s" % directory,
             "logfile %s" % os.path.join(directory, "log"),
             "sentinel monitor %s 127.0.0.1 %d %d" % (master_name, master.port, quorum),
             "sentinel down-after-milliseconds %s %d" % (master_name, down_after_ms),
             "sentinel failover-timeout %s %d" % (master_name, failover_timeout_ms),
             "sentinel parallel-syncs %s 1" % master_name]
    if master_password is not None:
        lines.append("sentinel auth-pass %s %s" % (master_name, master_password))
    config = os.path.join(directory, "sentinel.conf")
    with open(config, "w") as written:
        written.write("\n".join(lines) + "\n")
    return await _started(test, [REDIS_SENTINEL, config], port, directory)
