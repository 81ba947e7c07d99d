"""The Lua scripts that change several keys in one step (Redis runs a script
atomically), so that no other node sees presence half-written, and a
command the client gave up waiting for is applied whole or not at all.

Every key name is passed in (presence/redis/keys.py is the one home of the
key scheme); a script only joins a prefix to a channel, an account or a
session where it walks records it was handed.
"""

__all__ = ["APPLY", "ANNOUNCE", "CLAIM", "SWEEP", "PUBLISH_ONCE", "REDEEM", "RESUME_ENDED",
           "PUBLISH_RECORDED", "READ_HISTORY", "QUALITY", "DEPARTURES",
           "DEPARTED", "CHANNELS", "CHANNEL_MEMBERS", "REMEMBER",
           "EVENT_LOG", "LEAD", "RELEASE", "SETTLE", "CLAIM_SHARD", "ACCOUNT_SESSIONS",
           "SESSION_ROWS"]

# A node's presence changes, in the order its sessions made them, as one
# batch (presence/hub/writer.py): a subscribe storm costs one round trip
# per few hundred changes, and the changes of one session can never pass
# each other. ARGV: the node's session hash, its memberships hash, the
# online set, the events channel, Juggernaut's subscribe and unsubscribe
# channels, then the operations, each its name and its fields:
#   online  ACCOUNT-KEY SESSION ACCOUNT INFO ENTRY EVENT
#   offline ACCOUNT-KEY SESSION ACCOUNT EVENT
#   join    MEMBERS-KEY CHANNEL-KEY SESSION ACCOUNT CHANNEL CHANNEL-EVENT EVENT JUGGERNAUT-EVENT
#           ACCOUNTS-KEY ACCOUNT-EVENT
#   leave   (the same fields)
#   rejoin  (the same fields: the events only if it was not a member)
#   close   CLOSES-KEY MINUTE-KEY RECORD KEEP CODE
# With Redis shards (ARGV 12 '1'), a membership's entry in the node's
# memberships hash holds the session's account (else ''): SWEEP finds it
# there when the session's own entry is on another shard
# (presence/redis/shards.py).
# Events of a first session (online), a last one (offline), a join or a
# leave are published here, with the change they tell of; an account's
# offline and its leave of a channel wait for the leave delay (DEPARTURES).
# ARGV 7-10: DEPARTURES' leaving set, its events hash, now and the delay (ms);
# 11: the set of channels with members (a channel's first member adds it,
# its last one takes it out: GET /channels).
APPLY = """
local sessions, memberships, online, events = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local subscribe, unsubscribe = ARGV[5], ARGV[6]
leaving, leaving_events, leave_now, leave_delay = ARGV[7], ARGV[8], tonumber(ARGV[9]),
  tonumber(ARGV[10])
local active = ARGV[11]
local named = ARGV[12] == '1'
local i, n = 13, #ARGV
while i <= n do
  local op = ARGV[i]
  if op == 'online' then
    local key, sid = ARGV[i + 1], ARGV[i + 2]
    redis.call('HSET', sessions, sid, ARGV[i + 5])
    local added = redis.call('HSET', key, sid, ARGV[i + 4])
    redis.call('SADD', online, ARGV[i + 3])
    if added == 1 and redis.call('HLEN', key) == 1 then
      account_online(online, events, ARGV[i + 3], ARGV[i + 6])
    end
    i = i + 7
  elseif op == 'offline' then
    local key, sid = ARGV[i + 1], ARGV[i + 2]
    redis.call('HDEL', sessions, sid)
    if redis.call('HDEL', key, sid) == 1 and redis.call('HLEN', key) == 0 then
      account_offline(online, events, ARGV[i + 3], ARGV[i + 4])
    end
    i = i + 5
  elseif op == 'join' or op == 'leave' or op == 'rejoin' then
    local members, channel, sid = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local membership = sid .. ' ' .. ARGV[i + 5]
    local was = redis.call('HEXISTS', members, sid)
    local tell, changed = true, false
    if op == 'leave' then
      changed = redis.call('HDEL', members, sid) == 1
      redis.call('HDEL', memberships, membership)
    else
      changed = redis.call('HSET', members, sid, ARGV[i + 4]) == 1
      tell = changed or op == 'join'
      redis.call('HSET', memberships, membership, named and ARGV[i + 4] or '')
    end
    if changed then
      local size = redis.call('HLEN', members)
      if op == 'leave' and size == 0 then redis.call('SREM', active, ARGV[i + 5])
      elseif op ~= 'leave' and size == 1 then redis.call('SADD', active, ARGV[i + 5]) end
    end
    local who = ARGV[i + 4]
    if changed and who ~= '' then
      local place = ARGV[i + 5] .. '\\n' .. who
      if op == 'leave' then account_left(ARGV[i + 9], who, place, channel, ARGV[i + 10])
      else account_joined(ARGV[i + 9], who, place, channel, ARGV[i + 10]) end
    end
    if tell then
      redis.call('PUBLISH', channel, ARGV[i + 6])
      redis.call('PUBLISH', events, ARGV[i + 7])
      redis.call('PUBLISH', op == 'leave' and unsubscribe or subscribe, ARGV[i + 8])
    end
    log_membership(members, sid, was, ARGV[i + 7], ARGV[i + 6])
    i = i + 11
  elseif op == 'close' then
    redis.call('LPUSH', ARGV[i + 1], ARGV[i + 3])
    redis.call('LTRIM', ARGV[i + 1], 0, tonumber(ARGV[i + 4]) - 1)
    redis.call('HINCRBY', ARGV[i + 2], ARGV[i + 5], 1)
    redis.call('EXPIRE', ARGV[i + 2], 7200)
    i = i + 6
  else
    return redis.error_reply('unknown presence operation ' .. tostring(op))
  end
end
return 1
"""

# A node's heartbeat; answers 1 when a surviving node has reaped it since.
ANNOUNCE = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
return redis.call('DEL', KEYS[3])
"""

# Claim a dead node's records for sweeping: only the first surviving node
# to call this gets them (SREM answers 1 once), and only if the node's key
# has expired. Its session and membership hashes move under their swept
# names, and the claim is recorded (the reaping hash: node -> reaper), so
# that another survivor takes the sweep over should this reaper die too.
# KEYS: nodes, node key, sessions, memberships, swept sessions, swept
# memberships, reaping. ARGV: the dead node, the reaper.
CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('RENAME', KEYS[3], KEYS[5]) end
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('RENAME', KEYS[4], KEYS[6]) end
redis.call('HSET', KEYS[7], ARGV[1], ARGV[2])
return 1
"""

# CLAIM's second half on every other shard (presence/redis/shards.py): the
# claimed node's session and membership hashes there moved under their
# swept names, unless a claim did so already (a reaper that died between
# the two, taken over). KEYS: sessions, memberships, swept sessions, swept
# memberships.
CLAIM_SHARD = """
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 and redis.call('EXISTS', KEYS[i + 2]) == 0 then
    redis.call('RENAME', KEYS[i], KEYS[i + 2])
  end
end
return 1
"""

# The leave, unsubscribe and offline events are presence/hub/events.py's
# documents, with ``ended`` its REAPED (no close record: the node died).
# Sweep up to ARGV[1] records of a node's sessions out of presence: first
# its memberships (each leaves its channel, with the leave events), then its
# sessions (each leaves its account, and the account's last one goes
# offline). Answers the records left; the caller calls again until none are,
# between other work, so that sweeping 50,000 sessions never holds Redis or
# the caller's reactor for long. With it the node's records are gone whether
# the node stopped (it sweeps its own) or died (a survivor sweeps what it
# claimed).
# Each step goes on from where the last one left off: HSCAN's cursor is kept
# in the cursors hash, by the key it scans. Scanning from 0 again at every
# step would make no progress once the table's first buckets were swept
# empty: an HSCAN visits at most ten times COUNT buckets, and a step could
# find none of the records left (it did, at 50,000 sessions: a sweep that
# never ended). A record that HSCAN returns twice (as it may, while the
# table is rehashed) is acted on once: only the step that deletes it tells.
# KEYS: sessions, memberships, online, events, Juggernaut's unsubscribe
# channel, the reaping hash, the cursors hash. ARGV: count, the node, and
# the prefixes of members, channel and account keys; (6: the event log's);
# 7: the prefix of a channel's account counts; 8-11: DEPARTURES' leaving
# set and events hash, now and the leave delay (ms); 12: the set of channels
# with members.
SWEEP = """
local sessions, memberships, online, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local reaping, cursors = KEYS[6], KEYS[7]
local count, node = tonumber(ARGV[1]), ARGV[2]
local members_of, channel_of, account_of = ARGV[3], ARGV[4], ARGV[5]
local accounts_of = ARGV[7]  -- and ARGV[12]: the set of channels with members
leaving, leaving_events, leave_now, leave_delay = ARGV[8], ARGV[9], tonumber(ARGV[10]),
  tonumber(ARGV[11])
local function account(sid)
  local entry = redis.call('HGET', sessions, sid)
  if entry then
    local decoded = cjson.decode(entry).account
    if decoded ~= cjson.null then return decoded end
  end
  return nil
end
-- The session's ticket's info, from its account's entry (gone once the
-- session left its account: the memberships are swept first).
local function info(who, sid)
  if not who then return cjson.null end
  local entry = redis.call('HGET', account_of .. who, sid)
  if not entry then return cjson.null end
  local ok, decoded = pcall(cjson.decode, entry)
  if ok and type(decoded) == 'table' and decoded.info ~= nil then return decoded.info end
  return cjson.null
end
local function scan(key, want)
  local reply = redis.call('HSCAN', key, redis.call('HGET', cursors, key) or '0',
    'COUNT', want)
  if reply[1] == '0' then redis.call('HDEL', cursors, key)
  else redis.call('HSET', cursors, key, reply[1]) end
  return reply[2]
end
local done = 0
local found = scan(memberships, count)
for k = 1, #found, 2 do
  local membership = found[k]
  if redis.call('HDEL', memberships, membership) == 1 then
    local space = string.find(membership, ' ', 1, true)
    local sid, channel = string.sub(membership, 1, space - 1), string.sub(membership, space + 1)
    local who = account(sid)
    -- (its session's entry may be on another shard: the membership names it)
    if not who and found[k + 1] ~= '' then who = found[k + 1] end
    redis.call('HDEL', members_of .. channel, sid)
    if redis.call('HLEN', members_of .. channel) == 0 then redis.call('SREM', ARGV[12], channel) end
    redis.call('PUBLISH', channel_of .. channel, cjson.encode({type = 'leave', channel = channel,
      account = who or cjson.null, session = sid, info = info(who, sid),
      ended = {reaped = true}, ['except'] = {sid}}))
    if who then
      account_left(accounts_of .. channel, who, channel .. '\\n' .. who, channel_of .. channel,
        cjson.encode({type = 'leave', channel = channel, account = who, info = info(who, sid),
          ended = {reaped = true}}))
    end
    redis.call('PUBLISH', events, cjson.encode({type = 'unsubscribe', account = who or cjson.null,
      session = sid, node = node, channel = channel, ended = {reaped = true}}))
    redis.call('PUBLISH', KEYS[5], cjson.encode({channel = channel, session_id = sid,
      meta = {account = who or cjson.null}}))
    log_event('member_removed', {account = who or cjson.null, session = sid, node = node,
      channel = channel, ended = {reaped = true}})
    if redis.call('HLEN', members_of .. channel) == 0 then
      log_event('channel_vacated', {channel = channel, node = node,
        account = who or cjson.null, session = sid})
    end
    done = done + 1
  end
end
if done < count and redis.call('HLEN', memberships) == 0 then
  found = scan(sessions, count - done)
  for k = 1, #found, 2 do
    local sid = found[k]
    local who = account(sid)
    if redis.call('HDEL', sessions, sid) == 1 and who then
      local key = account_of .. who
      if redis.call('HDEL', key, sid) == 1 and redis.call('HLEN', key) == 0 then
        account_offline(online, events, who, cjson.encode({type = 'offline', account = who,
          session = sid, node = node, ended = {reaped = true}}))
      end
    end
  end
end
local left = redis.call('HLEN', memberships) + redis.call('HLEN', sessions)
if left == 0 then
  redis.call('HDEL', reaping, node)
  redis.call('HDEL', cursors, memberships, sessions)
end
return left
"""

# One join per person, and the leave delay (docs/messages.md, "presence":
# "accounts"): a channel's account counts (``P accounts:CHANNEL``, account ->
# its sessions in the channel) change with its members, in the same step.
# An account's first session in a channel publishes its account-level join;
# its last one's leave is not published but kept, with a deadline (now plus
# --leave-delay), in the leaving set (``P leaving``, member "CHANNEL\nACCOUNT",
# its event in ``P leaving:events``), and cancelled if the account comes back
# before it, on whatever node. The account's offline (member "\nACCOUNT")
# waits the same way, and the account stays in the online set meanwhile.
# DEPARTED, run by every node's clock, publishes the leaves that are due;
# the set is Redis's, so a departure survives the death of the node it left.
# APPLY and SWEEP start with these helpers, then set the four values.
DEPARTURES = """
local leaving, leaving_events, leave_now, leave_delay
local function account_joined(counts, who, place, channel, event)
  if redis.call('HINCRBY', counts, who, 1) ~= 1 then return end
  if redis.call('ZREM', leaving, place) == 1 then
    redis.call('HDEL', leaving_events, place)
  else
    redis.call('PUBLISH', channel, event)
  end
end
-- While its leave waits, an account keeps its count (0) in the channel: it
-- is still there for the account count and the member listing.
local function account_left(counts, who, place, channel, event)
  if redis.call('HINCRBY', counts, who, -1) > 0 then return end
  if leave_delay <= 0 then
    redis.call('HDEL', counts, who)
    redis.call('PUBLISH', channel, event)
  else
    redis.call('ZADD', leaving, leave_now + leave_delay, place)
    redis.call('HSET', leaving_events, place, event)
  end
end
-- (account_online and account_offline answer true when they published.)
local function account_online(online, events, who, event)
  redis.call('SADD', online, who)
  if redis.call('ZREM', leaving, '\\n' .. who) == 1 then
    redis.call('HDEL', leaving_events, '\\n' .. who)
    return false
  end
  redis.call('PUBLISH', events, event)
  log_event('online', event)
  return true
end
local function account_offline(online, events, who, event)
  if leave_delay <= 0 then
    redis.call('SREM', online, who)
    redis.call('PUBLISH', events, event)
    log_event('offline', event)
    return true
  end
  redis.call('ZADD', leaving, leave_now + leave_delay, '\\n' .. who)
  redis.call('HSET', leaving_events, '\\n' .. who, event)
  return false
end
"""
APPLY = DEPARTURES + APPLY
SWEEP = DEPARTURES + SWEEP

# The departures that are due (DEPARTURES): up to ARGV[2] of the leaving
# set whose deadline (ms) is not after ARGV[1], each taken out and its
# event published, once (ZREM answers 1 once, whichever node runs it): an
# account-level leave on its channel if the account has no session in it
# (its count, kept at 0 meanwhile, goes), an offline on the events channel (and the account out of the
# online set) if it has none at all. KEYS: leaving, leaving events, online,
# events. ARGV: now, count, and the prefixes of account counts, channels
# and accounts. Answers the number taken.
DEPARTED = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, place in ipairs(due) do
  if redis.call('ZREM', KEYS[1], place) == 1 then
    local event = redis.call('HGET', KEYS[2], place)
    redis.call('HDEL', KEYS[2], place)
    local cut = string.find(place, '\\n', 1, true)
    local channel, who = string.sub(place, 1, cut - 1), string.sub(place, cut + 1)
    if event then
      if channel == '' then
        if redis.call('EXISTS', ARGV[5] .. who) == 0 then
          redis.call('SREM', KEYS[3], who)
          redis.call('PUBLISH', KEYS[4], event)
          log_event('offline', event)
        end
      elseif tonumber(redis.call('HGET', ARGV[3] .. channel, who) or '0') <= 0 then
        redis.call('HDEL', ARGV[3] .. channel, who)
        redis.call('PUBLISH', ARGV[4] .. channel, event)
      end
    end
  end
end
return #due
"""

# A backend's publish under its id (POST /publish "id"), once: the id's key
# is set (SET NX, expiring) and the messages published in the same step, and
# only if the key was not there already. A publish whose answer was lost (a
# 503 while Redis stood still: the script ran once Redis went on) and is
# retried with its id is therefore not delivered twice, whichever of the two
# Redis runs first. The key then holds the nodes the messages reached.
# Answers {1, nodes reached} for a new id, {0, what the first reached} for
# one seen within its lifetime.
# KEYS: the id's key. ARGV: seconds to keep it, then Redis channel and
# message, for each channel.
PUBLISH_ONCE = """
if not redis.call('SET', KEYS[1], '0', 'NX', 'EX', tonumber(ARGV[1])) then
  return {0, tonumber(redis.call('GET', KEYS[1])) or 0}
end
local reached = 0
for i = 2, #ARGV, 2 do
  reached = reached + redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[1], reached, 'KEEPTTL')
return {1, reached}
"""

# A ticket or a resume token redeemed (taken: it works once), and, in the
# same step, the session's new resume token stored (presence/hub/tickets.py;
# docs/tickets.md, "Resume tokens"). A resume token's value is
# "NODE\nIP\nTICKET": the node its session lives on (empty once the session
# ended: then the key's own expiry is the token's --resume-ttl), the address
# it is bound to, the original ticket's JSON. A token of a session that has
# not ended is valid while its node's resumable key is there: the node's
# announcements keep it, and it outlives the last by --resume-ttl, so a
# dead node's tokens last that long after the cluster saw it die. No token
# outlives the original ticket's issued_at plus the maximum age, on the
# redeeming node's clock.
# KEYS: the key redeemed, the new token's key, this node's resumable key.
# ARGV: 'ticket' or 'resume', this node, the head and tail of a node's
# resumable key, the address the new token is bound to, now (ms), the
# maximum age (ms), the seconds this node's resumable key lives, '1' to
# store the new token (else '0': this node gives none). Answers false
# (unknown, used, expired, of a dead node, too old), or {ticket JSON, the
# address a resume token was bound to ('' for a ticket), 1 when a new token
# was stored, else 0}.
REDEEM = """
local value = redis.call('GETDEL', KEYS[1])
if not value then return false end
local ticket, bound = value, ''
if ARGV[1] == 'resume' then
  local first = string.find(value, '\\n', 1, true)
  if not first then return false end
  local second = string.find(value, '\\n', first + 1, true)
  if not second then return false end
  local node = string.sub(value, 1, first - 1)
  if node ~= '' and redis.call('EXISTS', ARGV[3] .. node .. ARGV[4]) == 0 then
    return false
  end
  bound = string.sub(value, first + 1, second - 1)
  ticket = string.sub(value, second + 1)
end
local max_age = tonumber(ARGV[7])
local ok, data = pcall(cjson.decode, ticket)
local left = 0
if ok and type(data) == 'table' and type(data.issued_at) == 'number' then
  left = math.floor(data.issued_at * 1000 + max_age - tonumber(ARGV[6]))
end
if ARGV[1] == 'resume' and left < 1 then return false end
if ARGV[9] ~= '1' or left < 1 then return {ticket, bound, 0} end
redis.call('SET', KEYS[2], ARGV[2] .. '\\n' .. ARGV[5] .. '\\n' .. ticket, 'PX', left, 'NX')
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[8]), 'NX')
return {ticket, bound, 1}
"""

# A session ended: its resume token (if still there and still of this node)
# is valid for --resume-ttl from now, and never past its maximum age (the
# key's expiry). KEYS: the token's key. ARGV: the node, --resume-ttl (ms).
# Answers 1 when the token was there.
RESUME_ENDED = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local cut = string.find(value, '\\n', 1, true)
if not cut or string.sub(value, 1, cut - 1) ~= ARGV[1] then return 0 end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then return 0 end
redis.call('SET', KEYS[1], string.sub(value, cut), 'PX', math.min(left, tonumber(ARGV[2])))
return 1
"""

# A publish to channels of which some keep a history (--history), under a
# backend's id or not. For a history channel the next offset is taken, the
# data stored under it (entry 0-OFFSET, capped at SIZE, both keys expiring
# TTL seconds after this publish) and the message PUBLISHed with it, in this
# one step: the live message and the stored one carry the same offset, and
# offsets are 1, 2, 3, ... with no gap. A channel whose epoch key is gone
# (expired, FLUSHALL, a Redis restart) starts again at 1 under the epoch
# the caller drew, its stream (if any is left) deleted. With an id (KEYS[1])
# it is PUBLISH_ONCE's guarantee: nothing is published for an id seen within
# its lifetime; the key then holds the answer ("NODES EPOCH OFFSET ...").
# Answers {1, nodes reached, epoch, offset, ...} (one pair per history
# channel, in order), or {0, what the id's key holds} for a duplicate.
# KEYS: the id's key, or none. ARGV: seconds to keep the id; then 9 fields
# a channel: Redis channel, message (a history channel: its head, to which
# the offset, ',"epoch":', the epoch, ',"data":', the data, then the rest are
# joined), the
# rest, stream key ('' for a channel without history), epoch key, size,
# ttl, a new epoch, the data's JSON. The message names the epoch too, for
# the nodes (a subscribe being answered tells an epoch's new start from a
# duplicate by it); they take it out before clients see the message.
PUBLISH_RECORDED = """
local id = KEYS[1]
if id and not redis.call('SET', id, '0', 'NX', 'EX', tonumber(ARGV[1])) then
  return {0, redis.call('GET', id)}
end
local reached, answer = 0, {}
for i = 2, #ARGV, 9 do
  local stream, meta = ARGV[i + 3], ARGV[i + 4]
  if stream == '' then
    reached = reached + redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
  else
    local epoch = redis.call('HGET', meta, 'epoch')
    if not epoch then
      epoch = ARGV[i + 7]
      redis.call('DEL', stream)
      redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
    end
    local offset = redis.call('HINCRBY', meta, 'offset', 1)
    local data, ttl = ARGV[i + 8], tonumber(ARGV[i + 6])
    redis.call('XADD', stream, 'MAXLEN', tonumber(ARGV[i + 5]), '0-' .. offset, 'd', data)
    redis.call('EXPIRE', stream, ttl)
    redis.call('EXPIRE', meta, ttl)
    reached = reached + redis.call('PUBLISH', ARGV[i],
      ARGV[i + 1] .. offset .. ',"epoch":"' .. epoch .. '","data":' .. data .. ARGV[i + 2])
    answer[#answer + 1] = epoch
    answer[#answer + 1] = offset
  end
end
if id then
  redis.call('SET', id, reached .. ' ' .. table.concat(answer, ' '), 'KEEPTTL')
end
table.insert(answer, 1, reached)
table.insert(answer, 1, 1)
return answer
"""

# A history channel's epoch, last offset and oldest kept offset, and the
# publications after a given offset, read in one step (a subscribe's
# recovery, GET /history). A channel without an epoch gets one (the
# caller's new one, from offset 0, expiring TTL seconds from now), so that
# a subscriber knows where it starts; one whose stream is gone while its
# epoch says it had publications (Redis evicted it) gets a new epoch too.
# The publications start after: the asked offset when the asked epoch is
# the channel's and nothing after that offset was trimmed (recovered); else
# the last K (K >= 0; -1: none, start at the last offset). The asked epoch
# '*' (GET /history) starts after the asked offset in whatever epoch, or at
# the oldest kept.
# KEYS: stream, epoch key. ARGV: a new epoch, ttl, asked epoch ('' for
# none), asked offset, K, most entries to answer.
# Answers {epoch, offset, oldest kept offset, recovered (1/0), entries}.
READ_HISTORY = """
local stream, meta = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
local offset = tonumber(redis.call('HGET', meta, 'offset') or '0')
if not epoch or (offset > 0 and redis.call('EXISTS', stream) == 0) then
  epoch, offset = ARGV[1], 0
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
  redis.call('EXPIRE', meta, tonumber(ARGV[2]))
end
local first = offset + 1
if offset > 0 then
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if oldest then first = tonumber(string.match(oldest[1], '-(%d+)$')) end
end
local since, recovered = nil, 0
local asked, n = ARGV[3], tonumber(ARGV[4])
if asked == '*' then
  since = math.min(math.max(n, first - 1), offset)
elseif asked ~= '' and asked == epoch and n >= first - 1 and n <= offset then
  since, recovered = n, 1
else
  local k = tonumber(ARGV[5])
  if k >= 0 then since = math.max(offset - k, first - 1) else since = offset end
end
local entries = {}
if since < offset then
  entries = redis.call('XRANGE', stream, '0-' .. (since + 1), '+', 'COUNT', tonumber(ARGV[6]))
end
return {epoch, offset, first, recovered, entries}
"""

# A node's sessions' connection quality (presence/hub/quality.py) written
# into their entries in its session hash, only where an entry is still
# there: a session that went offline meanwhile (APPLY deleted its entry) is
# not brought back, so no sweep ever finds it. KEYS: the node's session
# hash. ARGV: session, entry JSON, ...
QUALITY = """
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""

# A page of the channels with members (GET /channels), each with its counts:
# its members hash's and its account counts' HLEN, O(1) each, so a channel of
# 100,000 members costs what a channel of one does. KEYS: the set of
# channels. ARGV: cursor, count, the prefixes of members and account
# counts. Answers {next cursor, channel, sessions, accounts, ...}.
CHANNELS = """
local reply = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local answer = {reply[1]}
for _, channel in ipairs(reply[2]) do
  answer[#answer + 1] = channel
  answer[#answer + 1] = redis.call('HLEN', ARGV[3] .. channel)
  answer[#answer + 1] = redis.call('HLEN', ARGV[4] .. channel)
end
return answer
"""

# A page of a channel's members by account (GET /channels/CHANNEL/members,
# a client's members): HSCAN of its account counts from the cursor; for each
# account, its sessions (its account hash) that are members of the channel,
# each with its account entry and its node entry (the connection's
# quality). An account whose leave waits for the
# delay (DEPARTURES) is a member without sessions: one row with session ''
# and its leave's event (which has its info) as its entry. KEYS: the
# members hash, the account counts, the departures' events. ARGV: cursor,
# count, the account keys' prefix, what comes before and after a node's id
# in its session hash's key, the channel. Answers {next cursor, {session,
# account, account entry, node entry}...} flat.
CHANNEL_MEMBERS = """
local reply = redis.call('HSCAN', KEYS[2], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local answer = {reply[1]}
local found = reply[2]
for k = 1, #found, 2 do
  local who = found[k]
  if tonumber(found[k + 1]) <= 0 then
    answer[#answer + 1] = ''
    answer[#answer + 1] = who
    answer[#answer + 1] = redis.call('HGET', KEYS[3], ARGV[6] .. '\\n' .. who) or ''
    answer[#answer + 1] = ''
  end
  session_rows(answer, ARGV[3] .. who, who, ARGV[4], ARGV[5], KEYS[1])
end
return answer
"""

# Accounts' sessions with their node entries, for a member listing over
# shards (presence/redis/shards.py): CHANNEL_MEMBERS's rows of the accounts
# this shard holds, whichever channel they are in (the caller keeps the
# channel's members). ARGV: the account keys' prefix, what comes before and
# after a node's id in its session hash's key, then the accounts. Answers
# {session, account, account entry, node entry} flat.
ACCOUNT_SESSIONS = """
local answer = {}
for i = 4, #ARGV do
  session_rows(answer, ARGV[1] .. ARGV[i], ARGV[i], ARGV[2], ARGV[3], nil)
end
return answer
"""

# An account's sessions (its account hash ``key``), each with its account
# entry and its node entry (the connection's quality, in the session hash
# named ``node_head .. NODE .. node_tail``), appended to ``answer`` as
# rows of four; only those in the members hash ``members`` when one is
# given. CHANNEL_MEMBERS and ACCOUNT_SESSIONS start with it.
SESSION_ROWS = """
local function session_rows(answer, key, who, node_head, node_tail, members)
  local sessions = redis.call('HGETALL', key)
  for j = 1, #sessions, 2 do
    local sid, entry = sessions[j], sessions[j + 1]
    if not members or redis.call('HEXISTS', members, sid) == 1 then
      local quality = ''
      local ok, decoded = pcall(cjson.decode, entry)
      if ok and type(decoded) == 'table' and type(decoded.node) == 'string' then
        quality = redis.call('HGET', node_head .. decoded.node .. node_tail, sid) or ''
      end
      answer[#answer + 1] = sid
      answer[#answer + 1] = who
      answer[#answer + 1] = entry
      answer[#answer + 1] = quality
    end
  end
end
"""
CHANNEL_MEMBERS = SESSION_ROWS + CHANNEL_MEMBERS
ACCOUNT_SESSIONS = SESSION_ROWS + ACCOUNT_SESSIONS


# The event log (issue 17; docs/redis.md, "The event log"): every presence
# event a script publishes on the events channel is also added, in the same
# script, to the log Stream (keys.event_log), capped at about
# --event-log-maxlen entries. An entry's fields are its ``name`` and its
# ``data``, the event's JSON: ``name``, ``time_ms`` (Redis's clock) and the
# fields of the documents presence/hub/events.py builds (account, session,
# channel, node, info, ended), as they apply; its id is the entry's id.
# The scripts that tell of presence events (APPLY, SWEEP, DEPARTED) start
# with these helpers, then set the log's key and bound. An account's
# online and offline are logged where they are published (DEPARTURES'
# account_online and account_offline; DEPARTED, once --leave-delay
# passed). Membership events are logged when the membership changed (a join
# or leave applied twice is logged once).
EVENT_LOG = """
local event_log, event_log_maxlen
local function log_event(name, event, more)
  if type(event) == 'string' then event = cjson.decode(event) end
  local entry = {}
  if more then
    if type(more) == 'string' then more = cjson.decode(more) end
    for k, v in pairs(more) do entry[k] = v end
  end
  for k, v in pairs(event) do entry[k] = v end
  entry['type'], entry['except'] = nil, nil
  entry.name = name
  local now = redis.call('TIME')
  entry.time_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('XADD', event_log, 'MAXLEN', '~', event_log_maxlen, '*', 'name', name,
    'data', cjson.encode(entry))
end
local function log_membership(members, sid, was, event, channel_event)
  local is = redis.call('HEXISTS', members, sid)
  if is == was then return end
  if type(event) == 'string' then event = cjson.decode(event) end
  local channel = {channel = event.channel, node = event.node, account = event.account,
    session = event.session}
  if is == 1 then
    log_event('member_added', event, channel_event)
    if redis.call('HLEN', members) == 1 then log_event('channel_occupied', channel) end
  else
    log_event('member_removed', event, channel_event)
    if redis.call('HLEN', members) == 0 then log_event('channel_vacated', channel) end
  end
end
"""
APPLY = EVENT_LOG + "event_log, event_log_maxlen = KEYS[1], KEYS[2]\n" + APPLY
SWEEP = EVENT_LOG + "event_log, event_log_maxlen = KEYS[8], ARGV[6]\n" + SWEEP
DEPARTED = EVENT_LOG + "event_log, event_log_maxlen = KEYS[5], ARGV[6]\n" + DEPARTED

# A webhook's lease (presence/webhooks/delivery.py): one node at a time
# delivers a webhook's events, in the log's order. KEYS: the lease. ARGV:
# the node, milliseconds the lease lasts. Answers 2 when the node took the
# lease now, 1 when it kept it, 0 when another node holds it.
LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 2
"""

# A node stopping lets its lease go, so that another takes over at once.
# KEYS: the lease. ARGV: the node.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# A batch delivered (a 2xx), or given up (dead letters), in one step: its
# entries acknowledged in the webhook's group, counted, and, given up, added
# to the dead-letter stream. KEYS: the event log, the stats hash, the dead
# letters. ARGV: the group, 'delivered' or 'dead', the count to add, the
# error ('' for none), the dead letters' bound, then the entries: id and
# the event's JSON (the JSON only for dead letters: '' otherwise).
SETTLE = """
local group, outcome = ARGV[1], ARGV[2]
for i = 6, #ARGV, 2 do
  redis.call('XACK', KEYS[1], group, ARGV[i])
  if outcome == 'dead' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', tonumber(ARGV[5]), '*', 'id', ARGV[i],
      'event', ARGV[i + 1], 'error', ARGV[4])
  end
end
redis.call('HINCRBY', KEYS[2], outcome, tonumber(ARGV[3]))
return 1
"""

# A server-side subscription remembered in a resume token's ticket
# (presence/hub/subscriptions.py): the ticket's ``subscriptions`` gets the
# channel (ARGV[2] '1') or loses it ('0'); the token keeps its expiry. A
# token redeemed or expired meanwhile is left alone. KEYS: the token's key.
# ARGV: the channel, '1' or '0'. Answers 1 when the token was there.
REMEMBER = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local first = string.find(value, '\\n', 1, true)
local second = first and string.find(value, '\\n', first + 1, true)
if not second then return 0 end
local ok, data = pcall(cjson.decode, string.sub(value, second + 1))
if not ok or type(data) ~= 'table' then return 0 end
local kept = {}
if type(data.subscriptions) == 'table' then
  for _, channel in ipairs(data.subscriptions) do
    if channel ~= ARGV[1] then kept[#kept + 1] = channel end
  end
end
if ARGV[2] == '1' then kept[#kept + 1] = ARGV[1] end
data.subscriptions = kept
redis.call('SET', KEYS[1], string.sub(value, 1, second) .. cjson.encode(data), 'KEEPTTL')
return 1
"""
