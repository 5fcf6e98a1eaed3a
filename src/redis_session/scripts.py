"""The Lua scripts behind every session operation.

Why scripts and not plain commands: each operation must (1) check that the session still exists
(a destroyed or expired session is never recreated by a late write), (2) enforce the absolute
deadline, (3) do the read or write and (4) refresh the TTL, all atomically and in one round trip.
A MULTI pipeline cannot branch on (1) and (2); a script can. Every script touches only KEYS[1],
so each runs on a single Redis Cluster slot.

Status codes, reserved field names and opening modes come from :mod:`redis_session.protocol`:
:data:`CONSTANTS` declares them as Lua locals at the top of every script, so each is written
once, in Python.
"""

from __future__ import annotations

from .protocol import (
    CREATED_FIELD,
    FLASH_PREFIX,
    FLASH_SEQUENCE_FIELD,
    RESERVED_PREFIX,
    SIZE_FIELD,
    USER_FIELD,
    Opening,
    Status,
    constants,
)
from .user_index import USER_INDEX


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_NAMED = {
    **{name: str(value) for name, value in constants(Status).items()},
    **{f"OPEN_{name}": _lua_string(value) for name, value in constants(Opening).items()},
    "RESERVED": _lua_string(RESERVED_PREFIX),
    "CREATED": _lua_string(CREATED_FIELD),
    "USER": _lua_string(USER_FIELD),
    "FLASH": _lua_string(FLASH_PREFIX),
    "FLASH_SEQUENCE": _lua_string(FLASH_SEQUENCE_FIELD),
    "SIZE": _lua_string(SIZE_FIELD),
    "NUMBER_BYTES": "32",
}
#: The protocol's names as Lua locals, the first lines of every script.
CONSTANTS = "".join(f"local {name} = {value}\n" for name, value in _NAMED.items())

# ARGV[1] idle seconds, ARGV[2] absolute lifetime seconds (0: none), ARGV[3] an Opening.
# open() refreshes the TTL and returns the number of fields in the hash (> 0), or a Status
# (<= 0): GONE, TAKEN or CORRUPT.
#
# Every redis.call() inside a script costs the server several times what the same command costs
# outside one, so the common path (no absolute lifetime, an existing session) is two calls:
# HLEN (which tells missing, not-a-hash and the field count the limits need, all at once) and
# EXPIRE. Only with an absolute lifetime does a script read the clock and the creation time.
PRELUDE = CONSTANTS + """
local key = KEYS[1]
local idle = tonumber(ARGV[1])
local lifetime = tonumber(ARGV[2])

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
  if ARGV[3] == OPEN_NEW then
    if redis.call('EXISTS', key) == 1 then return TAKEN end
    local now = redis.call('TIME')[1]
    -- the creation time is the new session's only field: SIZE starts at its exact bytes
    redis.call('HSET', key, CREATED, now, SIZE, #CREATED + #now)
    local ttl = idle
    if lifetime > 0 and lifetime < idle then ttl = lifetime end
    redis.call('EXPIRE', key, ttl)
    return 1
  end
  local length = redis.pcall('HLEN', key)
  if type(length) ~= 'number' then return CORRUPT end
  if length == 0 then return GONE end
  if ARGV[3] == OPEN_EXISTING_FRESH then return length end
  local ttl = ttl_for_existing()
  if ttl <= 0 then return GONE end
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

local function is_reserved(name)
  return string.sub(name, 1, #RESERVED) == RESERVED
end

-- session-max-session-bytes, enforced before a write that adds `incoming` bytes (names and
-- values), where `removing(name)` says whether the write replaces or deletes that field. SIZE
-- holds an upper bound of the session's bytes: it grows by what each write adds (one HINCRBY, the
-- common path) and is counted exactly (one HGETALL) only when the bound would pass the limit,
-- or when no bound was kept (a session of redis-session 0.2.1 or of an earlier release). An
-- overwrite or a delete never lowers the bound; the exact count then brings it back down.
local function within_size(max_bytes, incoming, removing)
  local bound = redis.call('HINCRBY', key, SIZE, incoming)
  if bound <= max_bytes and bound > incoming then return true end
  local current, removed = 0, 0
  local flat = redis.call('HGETALL', key)
  for index = 1, #flat, 2 do
    local name = flat[index]
    if name ~= SIZE then
      local bytes = #name + #flat[index + 1]
      current = current + bytes
      if removing(name) then removed = removed + bytes end
    end
  end
  local after = current - removed + incoming
  if after > max_bytes then
    redis.call('HSET', key, SIZE, current)
    return false
  end
  redis.call('HSET', key, SIZE, after)
  return true
end

-- A refused write writes nothing: a key this very call created is deleted again.
local function refuse(status)
  if ARGV[3] == OPEN_NEW then redis.call('DEL', key) end
  return {status}
end

local function user_field_count()
  local count = 0
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if not is_reserved(name) then count = count + 1 end
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
if what == 'fields' then return {OK, in_slices('HMGET', 5, #ARGV)} end
if what == 'all' then return {OK, redis.call('HGETALL', key)} end
return {OK, redis.call('HKEYS', key)}
"""

# ARGV[4] max fields, ARGV[5] max session bytes, ARGV[6] '1' to clear user fields first, ARGV[7]
# number of pairs to set, then the pairs, then the names to delete. Both limits apply to the
# session as it would be after the whole write, so swapping one field for another at the limit
# is allowed; a write past either writes nothing.
WRITE = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local max_fields = tonumber(ARGV[4])
local clearing = ARGV[6] == '1'
local pairs_end = 8 + 2 * tonumber(ARGV[7]) - 1
local setting = (pairs_end - 7) / 2
local changing = nil
local function changed()
  if changing == nil then
    changing = {}
    for i = 8, pairs_end, 2 do changing[ARGV[i]] = true end
    for i = pairs_end + 1, #ARGV do changing[ARGV[i]] = true end
  end
  return changing
end
-- HLEN counts the library's own fields too, so passing this test proves the limit holds
if setting > 0 and (clearing and setting > max_fields or not clearing and length + setting > max_fields) then
  local after = setting
  if not clearing then
    after = after + user_field_count()
    for name, _ in pairs(changed()) do
      if redis.call('HEXISTS', key, name) == 1 then after = after - 1 end
    end
  end
  if after > max_fields then return refuse(TOO_MANY_FIELDS) end
end
if setting > 0 then
  local incoming = 0
  for i = 8, pairs_end do incoming = incoming + #ARGV[i] end
  local function removing(name) return changed()[name] or clearing and not is_reserved(name) end
  if not within_size(tonumber(ARGV[5]), incoming, removing) then return refuse(TOO_BIG) end
end
if clearing then
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if not is_reserved(name) then redis.call('HDEL', key, name) end
  end
end
if #ARGV > pairs_end then in_slices('HDEL', pairs_end + 1, #ARGV) end
if setting > 0 then in_slices('HSET', 8, pairs_end) end
return {OK}
"""

# ARGV[4] max fields, ARGV[5] max session bytes, ARGV[6] field, ARGV[7] amount, ARGV[8] 'int' or
# 'float'. The new value is returned as text: a Lua number is a double, which would round a
# 64-bit counter beyond 2^53.
INCR = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local field = ARGV[6]
local max_fields = tonumber(ARGV[4])
if length >= max_fields and redis.call('HEXISTS', key, field) == 0 and user_field_count() >= max_fields then
  return refuse(TOO_MANY_FIELDS)
end
-- the number written is at most NUMBER_BYTES long (HINCRBYFLOAT's %.17Lg included)
local function removing(name) return name == field end
if not within_size(tonumber(ARGV[5]), #field + NUMBER_BYTES, removing) then return refuse(TOO_BIG) end
local command = 'HINCRBY'
if ARGV[8] == 'float' then command = 'HINCRBYFLOAT' end
local result = redis.pcall(command, key, field, ARGV[7])
if type(result) == 'table' and result['err'] then
  -- full memory is the store's problem (a 503), not the field's
  if string.sub(tostring(result['err']), 1, 3) == 'OOM' then return result end
  return {FIELD_ERROR, result['err']}
end
if type(result) == 'number' and (result >= 9007199254740992 or result <= -9007199254740992) then
  result = redis.call('HGET', key, field)
end
return {OK, result}
"""

# The first half of regenerate(): read every field and delete the key in one atomic step, so a
# logout (or revoke) that lands while the session moves cannot be undone by the copy, and a
# write that lands after it goes to a new session instead of into a key about to vanish.
# KEYS[2] (same slot) gets ARGV[4], a mark saying where the session went, for ARGV[5] seconds:
# a second regenerate of the same session a moment later (a double-submitted login) finds it
# there instead of starting a second session. Returns {OK, flat field/value list}, {MOVED, mark},
# or a status (GONE, CORRUPT).
TAKE = PRELUDE + """
local length = open()
if length == GONE then
  local mark = redis.call('GET', KEYS[2])
  if mark then return {MOVED, mark} end
end
if length <= 0 then return {length} end
local fields = redis.call('HGETALL', key)
redis.call('DEL', key)
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[5])
return {OK, fields}
"""

# The second half of regenerate(): write what TAKE returned under the new id (a separate step,
# since RENAME fails across cluster slots). ARGV[4] how long KEYS[2] (same slot) says the data is
# here, ARGV[5..] the field/value pairs of the old session, creation time included, so
# regeneration never extends the absolute deadline. SIZE is counted
# afresh: the fields are all here, and bind_user() may have changed one.
COPY = PRELUDE + """
if redis.call('EXISTS', key) == 1 then return {TAKEN} end
in_slices('HSET', 5, #ARGV)
-- the data is there: a request following this move (see SessionLifecycle._follow) may go on
redis.call('RPUSH', KEYS[2], 1)
redis.call('EXPIRE', KEYS[2], ARGV[4])
-- a session created by bind_user() on a first visit starts its lifetime now
redis.call('HSETNX', key, CREATED, redis.call('TIME')[1])
local size = 0
local flat = redis.call('HGETALL', key)
for index = 1, #flat, 2 do
  if flat[index] ~= SIZE then size = size + #flat[index] + #flat[index + 1] end
end
redis.call('HSET', key, SIZE, size)
local ttl = ttl_for_existing()
if ttl <= 0 then return {GONE} end
redis.call('EXPIRE', key, ttl)
return {OK}
"""

# End a session: {OK, bound user or false}, or {GONE} when there was nothing to end.
# ARGV[1] the user the session must be bound to ('' for any: a logout); an administrator
# revoking a user's sessions never ends one that was rebound to someone else meanwhile.
# ARGV[2] '1' to end only a hash: an administrator never deletes a key this library did not
# write; a request ending its own session clears whatever sits at its key.
DESTROY = CONSTANTS + """
local key = KEYS[1]
if redis.call('TYPE', key)['ok'] ~= 'hash' then
  if ARGV[2] == '1' then return {GONE} end
  if redis.call('DEL', key) == 1 then return {OK, false} end
  return {GONE}
end
local user = redis.call('HGET', key, USER)
if ARGV[1] ~= '' and user ~= ARGV[1] then return {GONE} end
redis.call('DEL', key)
return {OK, user}
"""

# Flash messages are fields FLASH .. '<sequence>' holding '<category>\\0<message>': in the
# session hash (one key, one slot), hidden from load() and iteration.
# ARGV[4] max pending messages, ARGV[5] max session bytes, ARGV[6] the entry,
# '<category>\\0<message>' (see value.encode_flash).
FLASH = PRELUDE + """
local length = open()
if length <= 0 then return {length} end
local function is_flash(name) return string.sub(name, 1, #FLASH) == FLASH end
local pending = 0
for _, name in ipairs(redis.call('HKEYS', key)) do
  if is_flash(name) then pending = pending + 1 end
end
if pending >= tonumber(ARGV[4]) then return refuse(TOO_MANY_FIELDS) end
-- the entry's field name is FLASH and a 12-digit sequence; the sequence field may be new too
local incoming = #ARGV[6] + #FLASH + 12 + #FLASH_SEQUENCE + NUMBER_BYTES
if not within_size(tonumber(ARGV[5]), incoming, function() return false end) then return refuse(TOO_BIG) end
local sequence = redis.pcall('HINCRBY', key, FLASH_SEQUENCE, 1)
if type(sequence) ~= 'number' then
  -- a damaged counter (not an integer): continue after the newest message still waiting
  sequence = 0
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if is_flash(name) then
      sequence = math.max(sequence, tonumber(string.sub(name, #FLASH + 1)) or 0)
    end
  end
  sequence = sequence + 1
  redis.call('HSET', key, FLASH_SEQUENCE, sequence)
end
redis.call('HSET', key, FLASH .. string.format('%012d', sequence), ARGV[6])
return {OK}
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
  if string.sub(name, 1, #FLASH) == FLASH then table.insert(names, name) end
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
if remaining == 0 then redis.call('HDEL', key, FLASH_SEQUENCE) end
return {OK, popped}
"""

#: Every script without its first line (see redis_session.script_sets, which adds it).
SOURCES: dict[str, str] = {
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

