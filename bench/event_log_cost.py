"""What the event log costs Redis (issue 17): scripts.APPLY run on batches
of 500 presence changes (500 sessions online, each its account's first,
then the 500 offline: every change an event), with the log and with its
helpers made no-ops, alternately, on a redis-server of the benchmark's own;
microseconds of one EVALSHA per change, transfer included.

usage: python bench/event_log_cost.py   (needs redis-py: pip install redis)
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import redis  # noqa: E402
from node_process import RedisProcess  # noqa: E402

from presence.redis import scripts  # noqa: E402
from presence.redis.keys import PresenceKeys  # noqa: E402

WITH = scripts.APPLY
NO_OP = "  if true then return end\n"
WITHOUT = WITH
for head in ("local function log_event(name, event, more)\n",
             "local function log_membership(members, sid, was, event, channel_event)\n"):
    WITHOUT = WITHOUT.replace(head, head + NO_OP)
assert WITHOUT != WITH and WITHOUT.count("if true then return end") == 2
keys = PresenceKeys()
rp = RedisProcess(); time.sleep(0.5)
r = redis.Redis(unix_socket_path=rp.path)
def batch(kind, n0, n):
    words = []
    for k in range(n0, n0 + n):
        sid, acct = "s%08d" % k, "user-%d" % k
        ev = json.dumps({"type": kind, "account": acct, "session": sid, "node": "bench"})
        if kind == "online":
            words += ["online", keys.account(acct), sid, acct, '{"node":"bench"}',
                      '{"account":"%s"}' % acct, ev]
        else:
            words += ["offline", keys.account(acct), sid, acct, ev]
    return words
def run(script, rounds=20, size=500):
    sha = r.script_load(script)
    total = 0.0
    for i in range(rounds):
        for kind in ("online", "offline"):
            words = batch(kind, i * size, size)
            t = time.perf_counter()
            r.evalsha(sha, 2, keys.event_log, 100000, keys.node_sessions("bench"),
                      keys.node_memberships("bench"), keys.online, keys.events,
                      "juggernaut:subscribe", "juggernaut:unsubscribe", keys.leaving,
                      keys.leaving_events, int(time.time() * 1000), 0, keys.channels, "",
                      *words)
            total += time.perf_counter() - t
    return total / (rounds * 2 * size) * 1e6
res = {}
for name, script in (("without", WITHOUT), ("with", WITH), ("without2", WITHOUT), ("with2", WITH)):
    res[name] = round(run(script), 2)
print(json.dumps({"us_per_change": res, "log_entries": r.xlen(keys.event_log)}))
rp.stop()
