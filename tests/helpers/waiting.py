"""Waiting on the real reactor (sockets, Redis, child processes), bounded:
one waiter, :func:`until`, for every test that waits on I/O. Timers under
test use a Clock instead, and nothing here sleeps in the reactor thread.

The reactor is Twisted's asyncio reactor (tests/conftest.py), so a test may
be a coroutine on asyncio's loop (the ``websockets`` and Playwright clients)
or a Twisted one; :func:`run` and :func:`wait` carry one to the other.
"""

import asyncio
import inspect

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

__all__ = ["until", "eventually", "run", "wait", "pause", "lose"]


def run(coroutine):
    """A coroutine on the shared asyncio loop, as a Deferred (for trial)."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(coroutine))


def wait(deferred):
    """A Deferred, awaitable from an asyncio coroutine."""
    return deferred.asFuture(asyncio.get_event_loop())


async def pause(seconds):
    """Let the reactor run for ``seconds`` (real I/O, not a timer under test)."""
    await asyncio.sleep(seconds)


async def _settled(value):
    """A condition's value: awaited when it is a Deferred or a coroutine."""
    if isinstance(value, defer.Deferred):
        return await wait(value)
    if inspect.isawaitable(value):
        return await value
    return value


async def until(condition, timeout=15.0, message="condition", interval=0.01, retry_on=()):
    """Call ``condition()`` (plain, a Deferred or a coroutine) until its value
    is true, and return that value; fail after ``timeout`` seconds. An
    exception of a type in ``retry_on`` counts as "not yet" (the last one is
    raised when the time is up)."""
    loop = asyncio.get_event_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            result = await _settled(condition())
        except retry_on:
            if loop.time() > deadline:
                raise
        else:
            if result:
                return result
            if loop.time() > deadline:
                raise AssertionError("%s not reached within %s s" % (message, timeout))
        await asyncio.sleep(interval)


async def eventually(attempt, timeout=15.0, interval=0.1, retry_on=()):
    """The result of the first call of ``attempt()`` that does not fail with
    one of ``retry_on``, whatever the result is (a call that still fails
    after ``timeout`` seconds raises)."""
    results = []

    async def succeeded():
        results.append(await _settled(attempt()))
        return True

    await until(succeeded, timeout, "a call that succeeds", interval, retry_on)
    return results[-1]


def lose(session, transport):
    """The client goes away: a StringTransport's connection is lost (once)."""
    if transport.connected:
        transport.connected = False
        session.connectionLost(Failure(ConnectionDone()))
