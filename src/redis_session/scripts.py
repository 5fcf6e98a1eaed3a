"""The Lua scripts behind every session operation.

Why scripts and not plain commands: each operation must (1) check that the session still exists
(a destroyed or expired session is never recreated by a late write), (2) enforce the absolute
deadline, (3) do the read or write and (4) refresh the TTL, all atomically and in one round trip.
A MULTI pipeline cannot branch on (1) and (2); a script can. Every script touches only KEYS[1],
so each runs on a single Redis Cluster slot.

Status codes (first element of every reply) are mirrored by :mod:`redis_session.operations`.
"""

from __future__ import annotations

import hashlib

RESERVED_PREFIX = "__rs:"
CREATED_FIELD = RESERVED_PREFIX + "created"
USER_FIELD = RESERVED_PREFIX + "user"

# ARGV[1] idle seconds, ARGV[2] absolute lifetime seconds (0: none), ARGV[3] 'new', 'old' or
# 'warm' (old, and its TTL was set by the same request a moment ago).
# open() refreshes the TTL and returns the number of fields in the hash (> 0), or a status
# (<= 0): 0 gone, -1 id taken, -4 corrupt (the key is not a hash).
#
# Every redis.call() inside a script costs the server several times what the same command costs
# outside one, so the common path (no absolute lifetime, an existing session) is two calls:
# HLEN (which tells missing, not-a-hash and the field count the limits need, all at once) and
# EXPIRE. Only with an absolute lifetime does a script read the clock and the creation time.
PRELUDE = """
local key = KEYS[1]
local idle = tonumber(ARGV[1])
local lifetime = tonumber(ARGV[2])
local CREATED = '__rs:created'

-- TTL for an existing session hash: the idle timeout, capped by the absolute deadline.
-- Returns 0 (after deleting the key) once the deadline has passed.
local function ttl_for_existing()
  if lifetime <= 0 then return idle end
  local now = tonumber(redis.call('TIME')[1])
  local created = tonumber(redis.call('HGET', key, CREATED))
  if created == nil or created ~= created or created > now then
    -- sessions written by redis-session 0.2.1 carry no creation time, and a damaged one
    -- (not a number, or in the future) is no creation time either: the deadline starts now
    -- rather than never
    created = now
    redis.call('HSET', key, CREATED, now)
  end
  local left = math.floor(created + lifetime - now)
  if left <= 0 then
    redis.call('DEL', key)
    return 0
  end
  if left < idle then return left end
  return idle
end

local function open()
  if ARGV[3] == 'new' then
    if redis.call('EXISTS', key) == 1 then return -1 end
    redis.call('HSET', key, CREATED, redis.call('TIME')[1])
    local ttl = idle
    if lifetime > 0 and lifetime < idle then ttl = lifetime end
    redis.call('EXPIRE', key, ttl)
    return 1
  end
  local length = redis.pcall('HLEN', key)
  if type(length) ~= 'number' then return -4 end
  if length == 0 then return 0 end
  -- 'warm': this request set the TTL a moment ago (no absolute lifetime); setting it again
  -- would change nothing
  if ARGV[3] == 'warm' then return length end
  local ttl = ttl_for_existing()
  if ttl <= 0 then return 0 end
  redis.call('EXPIRE', key, ttl)
  return length
end

-- redis.call(command, key, ARGV[first..last]) in slices: Lua's unpack() fails past a few
-- thousand values, and session-max-fields may be set that high. Slices hold an even number of
-- arguments, so field/value pairs are never split. Returns the replies joined (for HMGET).
local function in_slices(command, first, last)
  local joined = {}
  for start = first, last, 1000 do
    local reply = redis.call(command, key, unpack(ARGV, start, math.min(start + 999, last)))
    if type(reply) == 'table' then
      for index = 1, #reply do joined[#joined + 1] = reply[index] end
    end
  end
  return joined
end

local function user_field_count()
  local count = 0
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if string.sub(name, 1, 5) ~= '__rs:' then count = count + 1 end
  end
  return count
end
"""

# ARGV[4] 'fields' (then field names), 'all' or 'names'. Used only with an absolute lifetime:
# without one, a read is a plain EXPIRE + HMGET/HGETALL/HKEYS pipeline (see pipelines.py).
READ = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local what = ARGV[4]
if what == 'fields' then return {1, in_slices('HMGET', 5, #ARGV)} end
if what == 'all' then return {1, redis.call('HGETALL', key)} end
return {1, redis.call('HKEYS', key)}
"""

# ARGV[4] max fields, ARGV[5] '1' to clear user fields first, ARGV[6] number of pairs to set,
# then the pairs, then the names to delete. The limit applies to the session as it would be
# after the whole write, so swapping one field for another at the limit is allowed.
WRITE = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local max_fields = tonumber(ARGV[4])
local clearing = ARGV[5] == '1'
local pairs_end = 6 + 2 * tonumber(ARGV[6])
local setting = (pairs_end - 6) / 2
-- HLEN counts the library's own fields too, so passing this test proves the limit holds
if pairs_end > 6 and (clearing and setting > max_fields or not clearing and length + setting > max_fields) then
  local after = setting
  if not clearing then
    local changing = {}
    for i = 7, pairs_end, 2 do changing[ARGV[i]] = true end
    for i = pairs_end + 1, #ARGV do changing[ARGV[i]] = true end
    after = after + user_field_count()
    for name, _ in pairs(changing) do
      if redis.call('HEXISTS', key, name) == 1 then after = after - 1 end
    end
  end
  if after > max_fields then return {-2} end
end
if clearing then
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if string.sub(name, 1, 5) ~= '__rs:' then redis.call('HDEL', key, name) end
  end
end
if #ARGV > pairs_end then in_slices('HDEL', pairs_end + 1, #ARGV) end
if pairs_end > 6 then in_slices('HSET', 7, pairs_end) end
return {1}
"""

# ARGV[4] max fields, ARGV[5] field, ARGV[6] amount, ARGV[7] 'int' or 'float'.
# The new value is returned as text: a Lua number is a double, which would round a 64-bit
# counter beyond 2^53.
INCR = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local field = ARGV[5]
local max_fields = tonumber(ARGV[4])
if length >= max_fields and redis.call('HEXISTS', key, field) == 0 and user_field_count() >= max_fields then
  return {-2}
end
local command = 'HINCRBY'
if ARGV[7] == 'float' then command = 'HINCRBYFLOAT' end
local result = redis.pcall(command, key, field, ARGV[6])
if type(result) == 'table' and result['err'] then return {-3, result['err']} end
if type(result) == 'number' and (result >= 9007199254740992 or result <= -9007199254740992) then
  result = redis.call('HGET', key, field)
end
return {1, result}
"""

# The first half of regenerate(): read every field and delete the key in one atomic step, so a
# logout (or revoke) that lands while the session moves cannot be undone by the copy, and a
# write that lands after it goes to a new session instead of into a key about to vanish.
# ARGV[3] is 'old'. Returns {1, flat field/value list}, or a status (0 gone, -4 corrupt).
TAKE = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local fields = redis.call('HGETALL', key)
redis.call('DEL', key)
return {1, fields}
"""

# The second half of regenerate(): write what TAKE returned under the new id (a separate step,
# since RENAME fails across cluster slots). ARGV[3] is 'copy'; ARGV[4..] the field/value pairs
# of the old session, creation time included, so regeneration never extends the absolute deadline.
COPY = PRELUDE + """
if redis.call('EXISTS', key) == 1 then return {-1} end
in_slices('HSET', 4, #ARGV)
-- a session created by bind_user() on a first visit starts its lifetime now
redis.call('HSETNX', key, CREATED, redis.call('TIME')[1])
local ttl = ttl_for_existing()
if ttl <= 0 then return {0} end
redis.call('EXPIRE', key, ttl)
return {1}
"""

# Returns the user the session was bound to (so the caller can drop it from that user's index).
DESTROY = """
local key = KEYS[1]
if redis.call('TYPE', key)['ok'] ~= 'hash' then return {redis.call('DEL', key), false} end
local user = redis.call('HGET', key, '__rs:user')
return {redis.call('DEL', key), user}
"""

# Flash messages are fields '__rs:flash:<sequence>' holding '<category>\\0<message>': in the
# session hash (one key, one slot), hidden from load() and iteration.
# ARGV[4] max pending messages, ARGV[5] category, ARGV[6] message.
FLASH = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local pending = 0
for _, name in ipairs(redis.call('HKEYS', key)) do
  if string.sub(name, 1, 11) == '__rs:flash:' then pending = pending + 1 end
end
if pending >= tonumber(ARGV[4]) then return {-2} end
local sequence = redis.pcall('HINCRBY', key, '__rs:flashseq', 1)
if type(sequence) ~= 'number' then
  -- a damaged counter (not an integer): continue after the newest message still waiting
  sequence = 0
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if string.sub(name, 1, 11) == '__rs:flash:' then
      sequence = math.max(sequence, tonumber(string.sub(name, 12)) or 0)
    end
  end
  sequence = sequence + 1
  redis.call('HSET', key, '__rs:flashseq', sequence)
end
redis.call('HSET', key, string.format('__rs:flash:%012d', sequence), ARGV[5] .. '\\0' .. ARGV[6])
return {1}
"""

# Pop the pending messages (all, or those of the categories in ARGV[4..]) oldest first, in one
# atomic step, so two concurrent requests never both show the same message.
FLASHES = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local wanted = nil
if #ARGV >= 4 then
  wanted = {}
  for i = 4, #ARGV do wanted[ARGV[i]] = true end
end
local names = {}
for _, name in ipairs(redis.call('HKEYS', key)) do
  if string.sub(name, 1, 11) == '__rs:flash:' then table.insert(names, name) end
end
table.sort(names)
local popped = {}
local remaining = 0
for _, name in ipairs(names) do
  local entry = redis.call('HGET', key, name)
  local split = string.find(entry, '\\0', 1, true)
  if split == nil then
    -- not written by flash(): a damaged entry is dropped, never shown, never an error
    redis.call('HDEL', key, name)
  else
    local category = string.sub(entry, 1, split - 1)
    if wanted == nil or wanted[category] then
      table.insert(popped, category)
      table.insert(popped, string.sub(entry, split + 1))
      redis.call('HDEL', key, name)
    else
      remaining = remaining + 1
    end
  end
end
if remaining == 0 then redis.call('HDEL', key, '__rs:flashseq') end
return {1, popped}
"""

# The per-user index: a sorted set of session ids scored by when each was last known to expire.
# A session being bound is listed as 'pending:<id>' until its key exists (see
# SessionCore.regenerate), so a concurrent revoke can see, and cancel, a login in flight.
# ARGV[1] names the step:
#   'members'                 -> {entry, score, entry, score, ...}
#   'add', id, score, limit, ttl, dead entries...
#                             -> drops the dead entries, lists 'pending:<id>', and returns the ids
#                                evicted (oldest first) to keep at most limit entries (0: no
#                                limit); ttl > 0 sets the index's TTL
#   'confirm', id, old id     -> drops old id (if given) and turns 'pending:<id>' into id; 1 if it
#                                was still listed, 0 if a revoke removed it meanwhile
#   'remove', id              -> drops id (and 'pending:<id>')
# A key of another type (damaged, or written by someone else) is replaced, never an error.
USER_INDEX = """
local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then redis.call('DEL', key) end
local step = ARGV[1]
if step == 'members' then return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES') end
if step == 'remove' then
  redis.call('ZREM', key, ARGV[2], 'pending:' .. ARGV[2])
  return {}
end
if step == 'confirm' then
  if ARGV[3] ~= '' then redis.call('ZREM', key, ARGV[3]) end
  local score = redis.call('ZSCORE', key, 'pending:' .. ARGV[2])
  if not score then return 0 end
  -- add before removing: removing the only entry first would drop the key and its TTL
  redis.call('ZADD', key, score, ARGV[2])
  redis.call('ZREM', key, 'pending:' .. ARGV[2])
  return 1
end
for index = 6, #ARGV do redis.call('ZREM', key, ARGV[index]) end
redis.call('ZADD', key, ARGV[3], 'pending:' .. ARGV[2])
local evicted = {}
local limit = tonumber(ARGV[4])
if limit > 0 then
  local excess = redis.call('ZCARD', key) - limit
  if excess > 0 then
    for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if excess <= 0 then break end
      if string.sub(member, 1, 8) ~= 'pending:' then
        redis.call('ZREM', key, member)
        table.insert(evicted, member)
        excess = excess - 1
      end
    end
  end
end
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', key, ARGV[5]) end
return evicted
"""

SCRIPTS = {
    "read": READ,
    "write": WRITE,
    "incr": INCR,
    "take": TAKE,
    "copy": COPY,
    "destroy": DESTROY,
    "flash": FLASH,
    "flashes": FLASHES,
    "user_index": USER_INDEX,
}

#: The SHA1 each script is known by to EVALSHA (what SCRIPT LOAD answers).
SHAS = {name: hashlib.sha1(source.encode("utf-8")).hexdigest() for name, source in SCRIPTS.items()}
