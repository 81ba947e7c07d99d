"""Ending a node's process in failure, so that whatever supervises it sees
the failure (presence/app/service.py's node, presence/app/workers.py's
parent)."""

import atexit
import os
import sys

__all__ = ["stop_with_failure"]


def stop_with_failure(reactor):
    """Stop the reactor, and make the process exit with status 1 (twistd
    itself exits 0 however the reactor stopped; a supervisor such as
    systemd's Restart=on-failure needs to see the failure)."""
    if not stop_with_failure.registered:
        stop_with_failure.registered = True

        def exit_failed():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        # Registered last, run first at interpreter exit: after twistd has
        # shut down and removed its pidfile.
        atexit.register(exit_failed)
    if reactor.running:
        reactor.callLater(0, reactor.stop)
    else:
        # Failed in startService itself, which twistd calls before the
        # reactor runs (a port the --workers parent could not bind).
        reactor.callWhenRunning(reactor.stop)


stop_with_failure.registered = False
