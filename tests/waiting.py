"""Waiting on the real reactor (sockets, Redis, child processes) in trial
tests, and losing a test transport's connection. Timers under test use a
Clock instead; these are for I/O."""

import asyncio

from twisted.internet import defer, reactor, task
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

__all__ = ["until", "async_until", "lose"]


@defer.inlineCallbacks
def until(condition, timeout=10.0, interval=0.01):
    """Poll ``condition()`` (which may return a Deferred) until it is true;
    fail after ``timeout`` seconds."""
    deadline = reactor.seconds() + timeout
    while True:
        result = yield defer.maybeDeferred(condition)
        if result:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError("condition not reached in %s s" % timeout)
        yield task.deferLater(reactor, interval, lambda: None)


async def async_until(condition, timeout=15.0, message="condition", interval=0.01):
    """In a coroutine: poll ``condition()`` (a plain or async callable) until
    it is true, and return its result; fail after ``timeout`` seconds."""
    loop = asyncio.get_event_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError("%s not reached within %s s" % (message, timeout))
        await asyncio.sleep(interval)


def lose(session, transport):
    """The client goes away: a StringTransport's connection is lost (once)."""
    if transport.connected:
        transport.connected = False
        session.connectionLost(Failure(ConnectionDone()))
