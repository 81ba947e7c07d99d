"""Several node processes from one command: ``twistd -n presence --workers N``.

One Presence process uses one core. With ``--workers N`` the process
``twistd`` started becomes a parent that serves nothing itself: it opens
every listening port once (presence/net/listening.py's SharedPort: on Linux
a socket per worker with SO_REUSEPORT, balanced by the kernel), starts the
embedded Redis when no ``--redis`` was given (one Redis, so the workers are
one cluster), and runs N workers. A worker is ``twistd -n presence`` with
the parent's options, the Redis URL, and the sockets it adopts
(``PRESENCE_WORKER_FDS``): a whole node of the cluster, with its own node
id, answering the API and the dashboard for the cluster as any node does
(the dashboard's logins are in Redis: presence/redis/dashboard.py).

The parent supervises, as a process manager would (systemd's
Restart=on-failure, with RestartSec growing): a worker that dies is logged
with its exit status or signal and started again after a delay that doubles
while it keeps dying (:class:`Backoff`). SIGTERM or SIGINT to the parent
drains: every worker is sent SIGTERM and closes its sessions with 1001 as a
node on its own does, the parent waits for all of them (those still running
after the drain timeout are killed) and exits 0.

A worker's log goes to the parent's standard output and error (its
descriptors 1 and 2 are the parent's), so run the parent with ``-n``, as
systemd, containers and scripts/run.sh do.
"""

import os
import signal
import socket
import sys

from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.logger import Logger

from ..net.listening import AdoptingReactor, SharedPort
from ..redis.embedded import EmbeddedRedis
from .exiting import stop_with_failure

__all__ = ["Backoff", "Workers", "make_workers", "describe_exit", "listening_descriptions",
           "listening_reactors", "in_worker", "workers_of", "follow_parent", "WORKER_ENV",
           "FDS_ENV", "PARENT_ENV"]

log = Logger()

#: Set in a worker's environment: its number, from 0.
WORKER_ENV = "PRESENCE_WORKER"
#: The descriptors a worker inherits, comma-separated, one per listening
#: description in :func:`listening_descriptions`'s order.
FDS_ENV = "PRESENCE_WORKER_FDS"
#: The parent's process id (a worker stops when its parent is gone).
PARENT_ENV = "PRESENCE_WORKER_PARENT"

#: The first descriptor handed to a worker for a socket (0-2 are stdio).
_FIRST_FD = 3

#: A worker's program: twistd, as its console script runs it.
_TWISTD = "from twisted.scripts.twistd import run; run()"

#: prctl(2)'s PR_SET_PDEATHSIG (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


class Backoff:
    """How long the parent waits before starting a worker again, for one
    worker slot: ``first`` seconds after a death, doubling with each death
    that follows soon after, to at most ``most``; a worker that ran for
    ``stable`` seconds or more died of something new, and starts again from
    ``first``. A worker that cannot start (a crash at import) is retried
    every ``most`` seconds, never in a tight loop."""

    def __init__(self, first=1.0, most=30.0, stable=60.0):
        self.first = first
        self.most = most
        self.stable = stable
        self._next = first

    def delay(self, ran_for):
        """The delay before the next start, for a worker that ran
        ``ran_for`` seconds."""
        if ran_for >= self.stable:
            self._next = self.first
        delay = self._next
        self._next = min(self.most, self._next * 2)
        return delay


def describe_exit(reason):
    """Why a process ended, for the log: ``reason`` is the exception
    processEnded's Failure holds (ProcessDone or ProcessTerminated)."""
    number = getattr(reason, "signal", None)
    if number is not None:
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        return "killed by signal %d (%s)" % (number, name)
    return "exited with status %s" % getattr(reason, "exitCode", "unknown")


def listening_descriptions(options):
    """Every endpoint a node listens on, in the order a worker's sockets
    are handed to it: the client ports, the API, the dashboard."""
    descriptions = list(options["listen"]) + [options["api"]]
    if options["admin"]:
        descriptions.append(options["admin"])
    return descriptions


def in_worker(environ=None):
    """Whether this process is a worker (its parent opened its sockets)."""
    return FDS_ENV in (os.environ if environ is None else environ)


def workers_of(environ=None):
    """In a worker, ``HOST:PID``: its machine and its parent, which its
    sibling workers share (HubSettings.workers_of); else empty."""
    environ = os.environ if environ is None else environ
    parent = environ.get(PARENT_ENV)
    if not in_worker(environ) or not parent:
        return ""
    return "%s:%s" % (socket.gethostname(), parent)


def listening_reactors(reactor, options, environ=None):
    """A reactor to parse each of :func:`listening_descriptions` with:
    ``reactor`` itself for a node on its own; in a worker, an
    AdoptingReactor of the socket its parent opened for it, so the
    endpoint (and its TLS or PROXY-protocol wrapper) listens there."""
    environ = os.environ if environ is None else environ
    descriptions = listening_descriptions(options)
    if FDS_ENV not in environ:
        return [reactor] * len(descriptions)
    fds = [int(fd) for fd in environ[FDS_ENV].split(",") if fd]
    if len(fds) != len(descriptions):
        raise ValueError("%s names %d sockets for %d endpoints" % (FDS_ENV, len(fds),
                                                                 len(descriptions)))
    return [AdoptingReactor(reactor, fd) for fd in fds]


def follow_parent(reactor, environ=None):
    """In a worker: stop when the parent says, and only then. SIGINT is
    left to the parent (Ctrl-C in a terminal reaches the whole process
    group; the parent turns it into one SIGTERM for each worker, where two
    signals would stop a reactor twice); and on Linux, a parent that dies,
    even by SIGKILL, stops its workers (prctl(2) PR_SET_PDEATHSIG), so none
    is left holding its ports."""
    environ = os.environ if environ is None else environ
    # After the reactor's own handlers, set as it starts running.
    reactor.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)
    parent = environ.get(PARENT_ENV)
    if not sys.platform.startswith("linux") or not parent:
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):
        os.kill(os.getpid(), signal.SIGTERM)


class _WorkerProcess(protocol.ProcessProtocol):
    """One worker as its parent sees it: ``ended`` fires with the reason it
    ended (ProcessDone or ProcessTerminated)."""

    def __init__(self, slot, started_at):
        self.slot = slot
        self.started_at = started_at
        self.ended = defer.Deferred()
        self.pid = None

    def connectionMade(self):
        self.pid = self.transport.pid
        self.transport.closeStdin()

    def processEnded(self, reason):
        # The exception, not the Failure: a Deferred given a Failure errbacks.
        self.ended.callback(reason.value)

    def signal(self, name):
        try:
            self.transport.signalProcess(name)
        except error.ProcessExitedAlready:
            pass


class Workers(Service):
    """The parent of ``count`` workers (above). ``argv``: the options given
    to ``twistd presence`` (Options.argv), given to every worker;
    ``descriptions``: :func:`listening_descriptions`, the ports every
    worker serves (the client ports, the API and the dashboard: its logins
    are in Redis, so a browser's next connection finds its login whichever
    worker takes it); ``embedded_redis``: whether no --redis was given, and
    one Redis is started here for all;
    ``drain_timeout``: seconds the workers have to close their sessions
    once sent SIGTERM, before they are killed. ``spawn(worker, argv, env,
    fds)`` starts a process (tests give their own); by default
    ``reactor.spawnProcess`` with the parent's standard output and error."""

    def __init__(self, count, argv, descriptions, embedded_redis=True, reactor=None,
                 drain_timeout=30.0, backoff=Backoff, spawn=None):
        if reactor is None:
            from twisted.internet import reactor
        self.count = count
        self.argv = list(argv)
        self.descriptions = list(descriptions)
        self.wants_embedded_redis = embedded_redis
        self.reactor = reactor
        self.drain_timeout = drain_timeout
        self.spawn = spawn if spawn is not None else self._spawn_process
        self.backoffs = [backoff() for _ in range(count)]
        #: Slot -> the running worker (a _WorkerProcess), or its pending
        #: restart (an IDelayedCall).
        self.workers = {}
        self.restarts = {}
        #: How many times a worker was started again after dying.
        self.restarted = 0
        self.ports = []
        self.embedded_redis = None
        self.stopping = False
        self.ready = None

    def startService(self):
        super().startService()
        self.ready = defer.ensureDeferred(self._start())
        self.ready.addErrback(self._failed)

    def _failed(self, failure):
        log.failure("presence: the workers could not start", failure)
        stop_with_failure(self.reactor)

    async def _start(self):
        if self.wants_embedded_redis:
            self.embedded_redis = EmbeddedRedis(self.reactor)
            await self.embedded_redis.started()
        for description in self.descriptions:
            port = SharedPort(description, self.count)
            self.ports.append(port)
            log.info("presence: {name} at {address}, shared by {count} workers ({how})",
                     name=description, address=port.address, count=self.count,
                     how="a socket each, SO_REUSEPORT" if len(port.sockets) > 1
                     else "one socket")
        for slot in range(self.count):
            self._start_worker(slot)

    def _start_worker(self, slot):
        self.restarts.pop(slot, None)
        if self.stopping:
            return
        worker = _WorkerProcess(slot, self.reactor.seconds())
        fds = [port.fileno_for(slot) for port in self.ports]
        env = dict(os.environ)
        env.update({WORKER_ENV: str(slot), PARENT_ENV: str(os.getpid()),
                    FDS_ENV: ",".join(str(_FIRST_FD + i) for i in range(len(fds)))})
        argv = list(self.argv)
        if self.embedded_redis is not None:
            argv += ["--redis", self.embedded_redis.url]
        self.spawn(worker, argv, env, fds)
        self.workers[slot] = worker
        log.info("presence: worker {slot} started (pid {pid})", slot=slot, pid=worker.pid)
        worker.ended.addCallback(self._ended, worker)

    def _spawn_process(self, worker, argv, env, fds):
        childFDs = {0: "w", 1: 1, 2: 2}
        for i, fd in enumerate(fds):
            childFDs[_FIRST_FD + i] = fd
        command = [sys.executable, "-c", _TWISTD, "--nodaemon", "--pidfile=", "presence", *argv]
        self.reactor.spawnProcess(worker, sys.executable, command, env=env,
                                  childFDs=childFDs)

    def _ended(self, reason, worker):
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        why = describe_exit(reason)
        if self.stopping:
            # twistd ends by the signal that stopped it, once it has drained.
            log.info("presence: worker {slot} (pid {pid}) stopped: {why}", slot=worker.slot,
                     pid=worker.pid, why=why)
            return
        ran_for = self.reactor.seconds() - worker.started_at
        delay = self.backoffs[worker.slot].delay(ran_for)
        log.warn("presence: worker {slot} (pid {pid}) {why} after {ran:.1f} s; starting "
                 "it again in {delay:g} s", slot=worker.slot, pid=worker.pid, why=why,
                 ran=ran_for, delay=delay)
        self.restarted += 1
        self.restarts[worker.slot] = self.reactor.callLater(
            delay, self._start_worker, worker.slot)

    async def _stop(self):
        self.stopping = True
        if self.ready is not None and not self.ready.called:
            self.ready.cancel()
        for call in self.restarts.values():
            call.cancel()
        self.restarts.clear()
        running = list(self.workers.values())
        if running:
            log.info("presence: draining {count} workers", count=len(running))
        for worker in running:
            worker.signal("TERM")
        # The parent's copies closed now: as each worker stops listening its
        # socket is gone, and new clients are refused at once (and try
        # another node) instead of waiting in a queue nobody accepts from.
        for port in self.ports:
            port.close()
        self.ports = []
        kill = self.reactor.callLater(self.drain_timeout, self._kill, running)
        await defer.DeferredList([worker.ended for worker in running])
        if kill.active():
            kill.cancel()
        if self.embedded_redis is not None:
            await self.embedded_redis.stopService()
            self.embedded_redis = None

    def _kill(self, workers):
        for worker in workers:
            if not worker.ended.called:
                log.warn("presence: worker {slot} (pid {pid}) still running {timeout:g} s "
                         "after SIGTERM: killing it", slot=worker.slot, pid=worker.pid,
                         timeout=self.drain_timeout)
                worker.signal("KILL")

    def stopService(self):
        super().stopService()
        return defer.ensureDeferred(self._stop())

    def handle_signals(self):
        """Take SIGTERM and SIGINT from the reactor: twistd, stopped by a
        signal, ends by killing itself with it, as a process that did not
        handle it would; the parent handles it (it drains its workers) and
        exits 0. Called once the reactor runs, after it set its own."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._signalled)

    def _signalled(self, number, frame):
        # From the reactor's thread, as its own handler does.
        self.reactor.callFromThread(self._drain, signal.Signals(number).name)

    def _drain(self, name):
        if self.stopping or not self.reactor.running:
            return
        log.info("presence: {name}: draining the workers, then exiting", name=name)
        self.reactor.stop()


def make_workers(options, reactor=None):
    """The parent's service for ``twistd presence --workers N`` options."""
    if reactor is None:
        from twisted.internet import reactor
    workers = Workers(options["workers"], options.argv, listening_descriptions(options),
                      embedded_redis=not options["redis"], reactor=reactor,
                      drain_timeout=options["close-timeout"] + 25.0)
    reactor.callWhenRunning(workers.handle_signals)
    return workers
