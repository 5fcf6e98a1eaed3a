"""The per-user index behind ``bind_user()`` and the admin API: one sorted set per user,
``{prefix}:users:{user_id}``, of the sessions' storage names (the handle of a session stored
under its digest, so no id sits there; the id of an older one) scored by when each was last
known to expire.

It is a key of its own (another cluster slot than the sessions it lists), so it is kept up to
date in separate single-key steps, each a generator of store calls like the rest of the core.
Entries of sessions that expired are dropped lazily (at every bind and every listing): no
keyspace notifications needed, which managed Redis often forbids.

A session being bound is listed as ``pending:<id>`` *before* its key is written and confirmed
after, so that a concurrent ``revoke_user`` either sees (and cancels) the sign-in or ran before it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any, NamedTuple

from .identity import fingerprint
from .protocol import COMMANDS, Call, stored_session_key, user_index_key
from .settings import SessionSettings

logger = logging.getLogger("redis_session")

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
#   'remove', entries...      -> drops the entries (and the 'pending:' form of each)
#   'refresh', id, score, ... -> sets the score of entries still listed (what a listing found)
# A key of another type (damaged, or written by someone else) is replaced, never an error.
USER_INDEX = """
local key = KEYS[1]
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then redis.call('DEL', key) end
local step = ARGV[1]
if step == 'members' then return redis.call('ZRANGE', key, 0, -1, 'WITHSCORES') end
if step == 'remove' then
  for index = 2, #ARGV do redis.call('ZREM', key, ARGV[index], 'pending:' .. ARGV[index]) end
  return {}
end
if step == 'refresh' then
  for index = 2, #ARGV, 2 do redis.call('ZADD', key, 'XX', ARGV[index + 1], ARGV[index]) end
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

PENDING_PREFIX = "pending:"
#: A pending entry older than this is left over from a bind that never finished (its process died).
PENDING_GRACE_SECONDS = 60.0


class IndexEntries(NamedTuple):
    """A user's index, sorted out: listed sessions, sign-ins in flight, and stale entries."""

    listed: list[tuple[str, float]]
    pending: list[str]
    stale_pending: list[str]


def members(settings: SessionSettings, user_id: str) -> Generator[Call, Any, IndexEntries]:
    """Read the user's index. The one place that says which pending entries are stale: those of
    a bind that started longer ago than PENDING_GRACE_SECONDS (their process died)."""
    flat = yield Call("user_index", user_index_key(settings.prefix, user_id), ("members",), True)
    stale_score = now() + settings.expire - PENDING_GRACE_SECONDS
    entries = IndexEntries([], [], [])
    for raw, score in zip(flat[0::2], flat[1::2]):
        entry = raw.decode("ascii", "replace")
        if not entry.startswith(PENDING_PREFIX):
            entries.listed.append((entry, float(score)))
        elif float(score) <= stale_score:
            entries.stale_pending.append(entry)
        else:
            entries.pending.append(entry)
    return entries


def list_pending(
    settings: SessionSettings, user_id: str, name: str, replacing: str | None
) -> Generator[Call, Any, list[str]]:
    """List the session stored under ``name`` as pending under ``user_id``, dropping entries of
    sessions that expired (and ``replacing``, the one it succeeds); returns the storage names
    evicted past ``max_per_user``, oldest first, for the caller to end."""
    entries = yield from members(settings, user_id)
    dead: list[str] = [replacing] if replacing is not None else []
    dead.extend(entries.stale_pending)
    candidates = [entry for entry, _ in entries.listed if entry != replacing]
    if candidates:
        exists = tuple(("exists", (stored_session_key(settings.prefix, entry),)) for entry in candidates)
        alive = yield Call(COMMANDS, "", exists, True)
        dead.extend(entry for entry, live in zip(candidates, alive) if live == 0)
    evicted = yield Call(
        "user_index", user_index_key(settings.prefix, user_id),
        ("add", name, repr(now() + settings.expire), settings.max_per_user, settings.user_index_ttl, *dead),
        False,  # a retry after a lost reply would drop evicted ids without ending their sessions
    )
    return [member.decode("ascii", "replace") for member in evicted]


def confirm(settings: SessionSettings, user_id: str, name: str, replacing: str | None) -> Generator[Call, Any, bool]:
    """Turn the pending entry into a listed one (dropping ``replacing``); ``False`` if a revoke
    removed the pending entry meanwhile, in which case the caller ends the new session."""
    listed = yield Call("user_index", user_index_key(settings.prefix, user_id), ("confirm", name, replacing or ""), True)
    return bool(listed)


def unlist(settings: SessionSettings, user_id: str, *entries: str) -> Generator[Call, Any, None]:
    """Drop ``entries`` (each listed or pending) from the user's index."""
    if entries:
        yield Call("user_index", user_index_key(settings.prefix, user_id), ("remove", *entries), True)
    return None


def user_of(raw: bytes | None, session_id: str) -> str | None:
    """The user id stored in a session, or ``None`` (also for a damaged, non-UTF-8 one)."""
    if not raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        logger.warning("session %s: its bound user id is not UTF-8 text; ignoring it", fingerprint(session_id))
        return None


def now() -> float:
    """Index scores have sub-second precision: "oldest session" must be well ordered for sessions
    bound within one second."""
    return time.time()
