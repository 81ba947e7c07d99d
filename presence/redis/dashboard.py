"""The dashboard's logins, their CSRF tokens and its lockout after wrong
passwords, in Redis (presence/web/admission.py decides with them), so that
every node of a cluster, and every worker of one (``--workers``), serves
the same dashboard: a browser's next connection, whichever process a
balancer or the kernel hands it to, finds its login there.

With several ``--redis`` these keys live on shard 0, with the cluster's
other records (docs/redis.md, "Shards: which key lives where"). Every
expiry is Redis's own (a key's TTL): a login idle for its lifetime, or an
address's wrong passwords a minute old, are gone on every node at once.
"""

from .keys import PresenceKeys

__all__ = ["DashboardStore"]

#: One attempt of a password by an address (``KEYS[1]``, its failures
#: key), counted before the password is checked: refused (-1) once
#: ``ARGV[1]`` attempts are counted, else counted, the count kept
#: ``ARGV[2]`` seconds more, and the new count answered. Counting first,
#: in one step, bounds the guesses of an address that sends many at once
#: (a check, then a count, would let every attempt in flight through); a
#: right password then forgets the count (DashboardStore.forget_failures).
#: A refused attempt does not prolong the lockout.
ATTEMPT = """
local counted = tonumber(redis.call('GET', KEYS[1]) or '0')
if counted >= tonumber(ARGV[1]) then
  return -1
end
counted = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return counted
"""


class DashboardStore:
    """``engine``: the RedisEngine of the cluster's records (shard 0);
    ``keys``: the PresenceKeys of the prefix. Every call fires with its
    answer, or fails with RedisUnavailable."""

    def __init__(self, engine, keys=None):
        self.engine = engine
        self.keys = keys if keys is not None else PresenceKeys()

    def login(self, cookie, idle):
        """The CSRF token of the login of ``cookie``, or None; a login found
        lasts ``idle`` seconds more (GETEX: read and refreshed in one
        command)."""
        return self.engine.execute("GETEX", self.keys.dashboard_login(cookie), "EX", int(idle))

    def add_login(self, cookie, csrf, idle):
        """A new login: its cookie (stored hashed) and CSRF token, for
        ``idle`` seconds unless used. Fires with True when stored (NX: a
        cookie of 256 random bits is never drawn twice, but a login is
        never overwritten)."""
        return self.engine.execute("SET", self.keys.dashboard_login(cookie), csrf,
                                   "EX", int(idle), "NX").addCallback(lambda r: r == "OK")

    def end_login(self, cookie):
        """Logging out: a copy of the cookie logs nobody in any more."""
        return self.engine.execute("DEL", self.keys.dashboard_login(cookie))

    def attempt(self, network, max_failures, lockout):
        """Count an attempt of a password by ``network`` (ATTEMPT): fires
        with False when it has made ``max_failures`` in the last
        ``lockout`` seconds (locked out: the password is not checked)."""
        return self.engine.execute(
            "EVAL", ATTEMPT, 1, self.keys.dashboard_failures(network), max_failures,
            int(lockout)).addCallback(lambda counted: int(counted) >= 0)

    def forget_failures(self, network):
        """``network`` gave the right password: its count starts again."""
        return self.engine.execute("DEL", self.keys.dashboard_failures(network))
