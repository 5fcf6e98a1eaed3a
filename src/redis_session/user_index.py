"""The per-user index behind ``bind_user()`` and :class:`~redis_session.SessionAdmin`: one sorted
set per user, ``{prefix}:users:{user_id}``, of session ids scored by when each was last known to
expire.

It is a key of its own (another cluster slot than the sessions it lists), so it is kept up to
date in separate single-key steps, each a generator of store calls like the rest of the session
core. Entries of sessions that expired are dropped lazily (at every bind and every listing): no
keyspace notifications needed, which managed Redis often forbids.

A session being bound is listed as ``pending:<id>`` *before* its key is written and confirmed
after, so that a concurrent ``revoke_user`` either sees (and cancels) the sign-in or ran before it.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Generator, List, Optional

from .identity import fingerprint
from .pipelines import LIVE_KEYS
from .settings import SessionSettings
from .store import Call, session_key, user_index_key

logger = logging.getLogger("redis_session")

#: A pending entry older than this is left over from a bind that never finished (its process died).
PENDING_PREFIX = "pending:"
PENDING_GRACE_SECONDS = 60.0


def list_pending(
    settings: SessionSettings, user_id: str, session_id: str, replacing: Optional[str]
) -> Generator[Call, Any, List[str]]:
    """List ``session_id`` as pending under ``user_id``, dropping entries of sessions that expired
    (and ``replacing``, the id it succeeds); returns the ids evicted past ``max_per_user``, oldest
    first, for the caller to end."""
    index = user_index_key(settings.prefix, user_id)
    flat = yield Call("user_index", index, ("members",), True)
    stale = _now() + settings.expire - PENDING_GRACE_SECONDS
    dead: List[str] = [replacing] if replacing is not None else []
    candidates: List[str] = []
    for raw, score in zip(flat[0::2], flat[1::2]):
        entry = raw.decode("ascii", "replace")
        if entry.startswith(PENDING_PREFIX):
            if float(score) <= stale:
                dead.append(entry)
        elif entry != replacing:
            candidates.append(entry)
    if candidates:
        alive = yield Call(LIVE_KEYS, index, tuple(session_key(settings.prefix, entry) for entry in candidates), True)
        dead.extend(entry for entry, live in zip(candidates, alive) if not live)
    evicted = yield Call(
        "user_index", index,
        ("add", session_id, repr(_now() + settings.expire), settings.max_per_user, settings.user_index_ttl, *dead),
        False,  # a retry after a lost reply would drop evicted ids without ending their sessions
    )
    return [member.decode("ascii", "replace") for member in evicted]


def confirm(settings: SessionSettings, user_id: str, session_id: str, replacing: Optional[str]) -> Generator[Call, Any, bool]:
    """Turn the pending entry into a listed one (dropping ``replacing``); ``False`` if a revoke
    removed the pending entry meanwhile, in which case the caller ends the new session."""
    listed = yield Call("user_index", user_index_key(settings.prefix, user_id), ("confirm", session_id, replacing or ""), True)
    return bool(listed)


def unlist(settings: SessionSettings, user_id: str, session_id: str) -> Generator[Call, Any, None]:
    """Drop ``session_id`` (listed or pending) from the user's index."""
    yield Call("user_index", user_index_key(settings.prefix, user_id), ("remove", session_id), True)
    return None


def user_of(raw: Optional[bytes], session_id: str) -> Optional[str]:
    """The user id stored in a session, or ``None`` (also for a damaged, non-UTF-8 one)."""
    if not raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        logger.warning("session %s: its bound user id is not UTF-8 text; ignoring it", fingerprint(session_id))
        return None


def _now() -> float:
    # sub-second precision: "oldest session" must be well ordered for sessions bound in one second
    return time.time()
