"""Broadcast to 10,000 SSE sessions and to 10,000 WebSocket sessions, in one
run, through the same fan-out and write path (Server.fan_out, each
protocol's form encoded once, twisted_internals.write); and the memory an
idle session of each costs.

usage: python bench/sse_broadcast.py [--sessions N] [--rounds R] [--phases ws,sse,ws,sse]

Each phase starts a fresh node (this file's ``server`` mode: Presence's
client side with a broadcasting handler, no Redis, no operator limits, no
heartbeats) on core 0 (taskset) when it can, and opens N sessions of one
protocol from this process, on core 1: WebSocket (a raw handshake) or SSE
(``GET /sse``, read until its welcome). The node's RSS is read before and
after (``/proc/PID/status``): its growth per session is the idle memory
per session. Then R rounds: a control WebSocket sends ``BCAST:<n>``, the
node fans the message out to every session of the phase's protocol, and
the time from sending it until every one of the N sockets has read it is
one round (the client reads them with one epoll loop). Phases alternate so
that a drift of the machine shows.

Prints one line per phase and a summary (medians per protocol, and the SSE
/ WebSocket ratio). The file-descriptor limit bounds N: each side holds N
sockets at once.
"""

import argparse
import base64
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------ the node

def serve(port):
    sys.path.insert(0, os.path.dirname(HERE))
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import endpoints, reactor

    from presence.net.dispatch import ListenerFactory
    from presence.net.interfaces import SessionHandler
    from presence.net.listening import NoDelayEndpoint
    from presence.net.server import Server
    from presence.net.settings import ServerSettings
    from presence.wire.prepared import PreparedMessage

    class Broadcast(SessionHandler):
        """``BCAST:n`` from the control session: a channel message to every
        other session, encoded once per protocol."""

        def __init__(self):
            self.server = None
            self.control = None

        def session_opened(self, session):
            if self.control is None and session.protocol_name == "websocket":
                self.control = session  # the first session is the control

        def text_received(self, session, text):
            if text.startswith("BCAST:"):
                message = PreparedMessage.text(
                    '{"type":"message","channel":"bench","data":"%s"}' % text[6:])
                control = self.control
                sessions = [s for s in self.server.sessions.values() if s is not control]
                started = time.perf_counter()
                self.server.fan_out(message, sessions)
                print("fan-out %.3f" % ((time.perf_counter() - started) * 1000), flush=True)

    handler = Broadcast()
    settings = ServerSettings(max_message_rate=0, max_inflated_rate=0, max_connections=0,
                              max_connections_per_ip=0, heartbeat_interval=0)
    server = handler.server = Server(handler, settings, reactor)
    endpoint = NoDelayEndpoint(endpoints.serverFromString(
        reactor, "tcp:%d:interface=127.0.0.1:backlog=4096" % port))
    endpoint.listen(ListenerFactory(server))
    print("listening", flush=True)
    reactor.run()


# ---------------------------------------------------------------- the client

def _raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _read_until(sock, marker, limit=1 << 16):
    data = b""
    while marker not in data:
        chunk = sock.recv(limit)
        if not chunk:
            raise ConnectionError("closed before %r: %r" % (marker, data[-200:]))
        data += chunk
    return data


def _websocket(port):
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    _read_until(sock, b"\r\n\r\n")
    return sock


def _sse(port):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /sse HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    _read_until(sock, b'"type":"welcome"')
    return sock


def _text_frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def _round(control, sockets, poller, number):
    marker = b'"data":"%d"' % number
    waiting = {sock.fileno(): b"" for sock in sockets}
    started = time.perf_counter()
    control.sendall(_text_frame("BCAST:%d" % number))
    deadline = started + 30
    while waiting:
        if time.perf_counter() > deadline:
            raise RuntimeError("round %d: %d sessions without the message after 30 s"
                               % (number, len(waiting)))
        for fd, _ in poller.poll(5.0):
            sock = fd_sockets[fd]
            data = sock.recv(65536)
            if fd not in waiting:
                continue
            seen = waiting[fd] + data
            if marker in seen:
                del waiting[fd]
            else:
                waiting[fd] = seen[-64:]
    return (time.perf_counter() - started) * 1000


fd_sockets = {}


def phase(protocol, sessions, rounds, pin):
    port = _free_port()
    command = [sys.executable, os.path.abspath(__file__), "server", str(port)]
    if pin:
        command = ["taskset", "-c", "0"] + command
    node = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        node.stdout.readline()
        control = _websocket(port)
        time.sleep(0.2)
        before = _rss_kib(node.pid)
        opened_at = time.perf_counter()
        open_one = _websocket if protocol == "ws" else _sse
        sockets = [open_one(port) for _ in range(sessions)]
        opening = time.perf_counter() - opened_at
        time.sleep(0.5)
        after = _rss_kib(node.pid)
        poller = select.epoll()
        for sock in sockets:
            sock.setblocking(False)
            fd_sockets[sock.fileno()] = sock
            poller.register(sock.fileno(), select.EPOLLIN)
        times = [_round(control, sockets, poller, number) for number in range(rounds)]
        for sock in sockets:
            fd_sockets.pop(sock.fileno(), None)
            sock.close()
        control.close()
        poller.close()
        node.terminate()
        fan_outs = [float(line.split()[1]) for line in node.stdout if line.startswith("fan-out")]
        return {"protocol": protocol, "rounds": times, "idle_kib": (after - before) / sessions,
                "opening": sessions / opening, "fan_outs": fan_outs}
    finally:
        node.terminate()
        node.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--phases", default="ws,sse,ws,sse")
    arguments = parser.parse_args()
    limit = _raise_fd_limit()
    if arguments.sessions + 100 > limit:
        parser.error("--sessions %d needs more file descriptors than %d"
                     % (arguments.sessions, limit))
    pin = subprocess.run(["taskset", "-c", "1", "true"], capture_output=True).returncode == 0
    if pin:
        os.sched_setaffinity(0, {1})
    results = []
    for protocol in arguments.phases.split(","):
        result = phase(protocol, arguments.sessions, arguments.rounds, pin)
        results.append(result)
        rounds = result["rounds"][1:]  # the first round warms up
        fan_outs = result["fan_outs"][1:]
        print("%-3s  %d sessions: until the last has it, median %.1f ms [%.1f-%.1f]; the node's "
              "fan-out call %.1f ms [%.1f-%.1f]; idle %.2f KiB/session; opened %.0f/s"
              % (protocol, arguments.sessions, statistics.median(rounds), min(rounds),
                 max(rounds), statistics.median(fan_outs), min(fan_outs), max(fan_outs),
                 result["idle_kib"], result["opening"]), flush=True)
    medians = {}
    for protocol in ("ws", "sse"):
        mine = [r for r in results if r["protocol"] == protocol]
        if mine:
            rounds = [t for r in mine for t in r["rounds"][1:]]
            fan_outs = [t for r in mine for t in r["fan_outs"][1:]]
            medians[protocol] = (statistics.median(rounds), statistics.median(fan_outs))
            print("%-3s  all rounds: until the last has it %.1f ms, fan-out call %.1f ms; "
                  "idle %.2f KiB/session" % (protocol, medians[protocol][0], medians[protocol][1],
                                             statistics.median(r["idle_kib"] for r in mine)))
    if len(medians) == 2:
        print("SSE / WebSocket: until the last has it %.2f, fan-out call %.2f"
              % (medians["sse"][0] / medians["ws"][0], medians["sse"][1] / medians["ws"][1]))


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(
            resource.RLIMIT_NOFILE)[1],) * 2)
        serve(int(sys.argv[2]))
    else:
        main()
