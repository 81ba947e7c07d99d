"""The Lua scripts that change several keys in one step (Redis runs a script
atomically), so that no other node sees presence half-written."""

__all__ = ["ONLINE", "OFFLINE", "ANNOUNCE", "REAP", "RECORD_CLOSE"]

# A session comes online: its entry in the account's hash and in its node's
# session hash, the account in the online set. Answers 1 when it is the
# account's first session.
ONLINE = """
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
if added == 1 and redis.call('HLEN', KEYS[1]) == 1 then return 1 end
return 0
"""

# A session goes offline; answers 1 when it was the account's last session.
OFFLINE = """
redis.call('HDEL', KEYS[3], ARGV[1])
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# A node's heartbeat; answers 1 when a surviving node has reaped it since.
ANNOUNCE = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
return redis.call('DEL', KEYS[3])
"""

# Claim a dead node's sessions: only the first surviving node to call this
# gets them (SREM answers 1 once), and only if the node's key has expired.
REAP = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return false end
local sessions = redis.call('HGETALL', KEYS[3])
redis.call('DEL', KEYS[3])
return sessions
"""

# A session's end: the newest first in a capped list, and a count per code
# per minute (kept two hours) for "closes by code over the last hour".
RECORD_CLOSE = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('EXPIRE', KEYS[2], 7200)
return 1
"""
