"""Debian's HAProxy running the configuration docs/cluster.md gives, for
tests of what a real balancer in front of several nodes does: the block
between the page's marker comments, byte for byte, with its ``"${...}"``
placeholders filled in by HAProxy itself from the environment (HAProxy's
own syntax, so the test changes nothing in the text it runs). It runs in
the foreground (``-db``), one process, its configuration and log in a
folder of its own, and is stopped at the test's cleanup. scripts/test.sh
installs it when missing."""

import os
import re
import subprocess
import tempfile

from .processes import outside_env, wait_for_port
from .waiting import until

__all__ = ["HAPROXY", "CLUSTER_DOC", "documented_config", "HAProxy"]

HAPROXY = os.environ.get("PRESENCE_HAPROXY", "/usr/sbin/haproxy")

CLUSTER_DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "cluster.md")

_BLOCK = re.compile(
    r"<!-- haproxy\.cfg begin[^>]*-->\n```haproxy\n(.*?)```\n<!-- haproxy\.cfg end -->", re.DOTALL)


def documented_config():
    """The HAProxy configuration docs/cluster.md gives, as it stands there."""
    with open(CLUSTER_DOC, encoding="utf-8") as f:
        found = _BLOCK.findall(f.read())
    if len(found) != 1:
        raise AssertionError("docs/cluster.md has %d haproxy.cfg blocks between its markers, "
                             "not one" % len(found))
    return found[0]


class HAProxy:
    """``haproxy -db -f CFG`` with ``variables`` (the placeholders' values)
    in its environment; :meth:`start` returns once ``ports`` listen. Its
    messages (a server going DOWN or UP) are in :meth:`log`."""

    def __init__(self, test, config, variables):
        self.folder = tempfile.mkdtemp(prefix="presence-haproxy-")
        test.addCleanup(lambda: subprocess.run(["rm", "-rf", self.folder], check=False))
        test.addCleanup(self.stop)
        self.config_path = os.path.join(self.folder, "haproxy.cfg")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.log_path = os.path.join(self.folder, "haproxy.log")
        self.variables = {name: str(value) for name, value in variables.items()}
        self.process = None

    async def start(self, ports):
        # HAProxy checks the configuration first: an error (a placeholder
        # left unset, a keyword it does not know) fails here with its words.
        checked = subprocess.run([HAPROXY, "-c", "-f", self.config_path], capture_output=True,
                                 text=True, env=dict(outside_env(), **self.variables))
        if checked.returncode != 0:
            raise AssertionError("haproxy refuses the documented configuration:\n"
                                 + checked.stdout + checked.stderr)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [HAPROXY, "-db", "-f", self.config_path], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, env=dict(outside_env(), **self.variables))
        for port in ports:
            await wait_for_port(port, self.process)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    async def reported(self, words, timeout=15.0):
        """Once HAProxy has written ``words`` (e.g. ``presence_nodes/node1
        is DOWN``) to its log."""
        try:
            await until(lambda: words in self.log(), timeout, "haproxy reporting %r" % words, 0.05)
        except AssertionError as error:
            raise AssertionError("%s; its log:\n%s" % (error, self.log()))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
