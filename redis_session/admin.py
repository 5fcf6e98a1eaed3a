"""Inspect and end sessions outside a request: a user's sessions, "log out everywhere".

Built from the same :class:`~redis_session.settings.SessionSettings` as the web glue, so it sees
the same store and prefix. Sessions are listed through the per-user index that
:meth:`Session.bind_user` maintains; the index is cleaned lazily here (dead members are dropped
when found), which needs no keyspace notifications (managed Redis often blocks CONFIG).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import redis

from .errors import SessionUnavailableError
from .operations import PENDING_GRACE_SECONDS, PENDING_PREFIX
from .scripts import CREATED_FIELD, USER_FIELD
from .settings import SessionSettings
from .store import Store, is_unavailable, session_key, stores, user_index_key

T = TypeVar("T")


def session_handle(session_id: str) -> str:
    """A stable public name for a session: safe to show a user and to post back to revoke one,
    useless for taking the session over (it is a one-way digest of the id)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class SessionInfo:
    """What an administrator (or the user, on a "your sessions" page) may see of a session."""

    handle: str
    user_id: str
    created: Optional[float]
    last_seen: Optional[float]
    expires: float
    session_id: str

    def __repr__(self) -> str:  # never print the raw id
        return f"SessionInfo(handle={self.handle!r}, user_id={self.user_id!r}, created={self.created}, last_seen={self.last_seen})"


class SessionAdmin:
    """Per-user session management for one store and prefix."""

    def __init__(self, settings: SessionSettings, store: Optional[Store] = None) -> None:
        self.settings = settings
        self.store = store or stores.store_for(settings)

    def _client(self) -> Any:
        return self.store.client

    def _guard(self, action: Callable[[], T]) -> T:
        try:
            self.store.follow_master_when_due()
            return action()
        except redis.exceptions.RedisError as error:
            if is_unavailable(error):
                raise SessionUnavailableError(self.store.name, error) from None
            raise

    def sessions_for_user(self, user_id: str) -> List[SessionInfo]:
        """The user's live sessions, most recently active first; dead index entries are dropped."""
        return self._guard(lambda: self._sessions_for_user(str(user_id)))

    def _index_entries(self, index: str) -> List[Tuple[str, float]]:
        """``(session id, score)`` of every index entry; a key of another type holds none."""
        try:
            entries = self._client().zrange(index, 0, -1, withscores=True)
        except redis.exceptions.ResponseError as error:
            if str(error).startswith("WRONGTYPE"):
                return []
            raise
        return [(member.decode("ascii", "replace"), float(score)) for member, score in entries]

    def _sessions_for_user(self, user_id: str) -> List[SessionInfo]:
        client = self._client()
        index = user_index_key(self.settings.prefix, user_id)
        stale = time.time() + self.settings.expire - PENDING_GRACE_SECONDS
        entries: List[Tuple[str, float]] = []
        dead: List[str] = []
        for entry, score in self._index_entries(index):
            if not entry.startswith(PENDING_PREFIX):
                entries.append((entry, score))
            elif score <= stale:
                dead.append(entry)  # a bind_user() that never finished; fresh ones are not shown yet
        pipeline = client.pipeline(transaction=False)
        for session_id, _ in entries:
            key = session_key(self.settings.prefix, session_id)
            pipeline.hget(key, CREATED_FIELD)
            pipeline.ttl(key)
            pipeline.hget(key, USER_FIELD)
        replies = pipeline.execute(raise_on_error=False) if entries else []
        now = time.time()
        alive: List[SessionInfo] = []
        for position, (session_id, _) in enumerate(entries):
            created_raw, ttl, owner = replies[3 * position: 3 * position + 3]
            if isinstance(ttl, Exception) or ttl is None or ttl == -2 or owner != user_id.encode():
                dead.append(session_id)  # expired, destroyed, regenerated away, or rebound
                continue
            created = float(created_raw) if isinstance(created_raw, bytes) and created_raw.isdigit() else None
            ttl_left = max(int(ttl), 0)
            # The TTL was set to the idle timeout at the last access, unless the absolute
            # deadline was nearer; in that case this is the latest time it can have been.
            last_seen = now - (self.settings.expire - ttl_left)
            if created is not None:
                last_seen = max(last_seen, created)
            alive.append(SessionInfo(session_handle(session_id), user_id, created, last_seen, now + ttl_left, session_id))
        if dead:
            client.zrem(index, *dead)
        if alive:
            client.zadd(index, {info.session_id: info.expires for info in alive}, xx=True)
        alive.sort(key=lambda info: info.last_seen or 0, reverse=True)
        return alive

    # -- the whole store (what the admin command uses) ------------------------------------

    def primaries(self) -> List[Any]:
        """One client per primary: every master of a cluster, or the single server."""
        client = self._client()
        get_primaries = getattr(client, "get_primaries", None)
        if get_primaries is None:
            return [client]
        return [client.get_redis_connection(node) for node in get_primaries()]

    def scan_session_ids(self, count: int = 1000) -> Iterator[str]:
        """Every session id under the prefix, scanning each primary in turn (never KEYS)."""
        head = f"{self.settings.prefix}:sessions:"
        pattern = glob_escape(head) + "*"
        for primary in self.primaries():
            for key in self._scan(primary, pattern, count):
                yield key.decode("utf-8", "replace")[len(head):]

    def _scan(self, primary: Any, pattern: str, count: int = 1000) -> List[bytes]:
        return self._guard(lambda: list(primary.scan_iter(match=pattern, count=count)))

    def show(self, session_id: str) -> Optional[Dict[str, Any]]:
        """Everything stored for one session (bookkeeping fields included), or ``None``."""
        def read() -> Optional[Dict[str, Any]]:
            client = self._client()
            key = session_key(self.settings.prefix, session_id)
            if client.type(key) != b"hash":
                return None
            fields = client.hgetall(key)
            return {
                "session_id": session_id,
                "ttl": client.ttl(key),
                "fields": {name.decode("utf-8", "replace"): value.decode("utf-8", "replace") for name, value in fields.items()},
            }
        return self._guard(read)

    def delete(self, session_id: str) -> bool:
        """End one session by id (and drop it from its user's index). ``True`` if it existed."""
        def delete() -> bool:
            client = self._client()
            key = session_key(self.settings.prefix, session_id)
            user = client.hget(key, USER_FIELD) if client.type(key) == b"hash" else None
            existed = bool(self.store.delete(key))
            if user:
                client.zrem(user_index_key(self.settings.prefix, user.decode("utf-8", "replace")), session_id)
            return existed
        return self._guard(delete)

    def purge(self) -> int:
        """Delete every session and user index under the prefix. Returns how many keys went."""
        deleted = 0
        for pattern in (f"{self.settings.prefix}:sessions:", f"{self.settings.prefix}:users:"):
            for primary in self.primaries():
                keys = self._scan(primary, glob_escape(pattern) + "*")
                for start in range(0, len(keys), 500):
                    batch = keys[start:start + 500]
                    # one key per DEL: keys of a cluster primary may still sit in different slots
                    pipeline = primary.pipeline(transaction=False)
                    for key in batch:
                        pipeline.delete(key)
                    deleted += sum(int(result) for result in self._guard(pipeline.execute))
        return deleted

    def revoke_user(self, user_id: str, keep: Optional[str] = None) -> int:
        """End every session of the user, except ``keep`` (a session id or handle: "log out
        everywhere else"). Returns how many sessions were ended."""
        return self._guard(lambda: self._revoke(str(user_id), keep, None))

    def revoke(self, user_id: str, handle: str) -> int:
        """End one session of the user, named by its public handle. Returns 1 if it was ended."""
        return self._guard(lambda: self._revoke(str(user_id), None, handle))

    def _revoke(self, user_id: str, keep: Optional[str], only: Optional[str]) -> int:
        client = self._client()
        index = user_index_key(self.settings.prefix, user_id)
        entries = [entry for entry, _ in self._index_entries(index)]
        # A bind_user() in flight (a pending entry) is cancelled by removing its entry: it then
        # ends its new session itself (see SessionCore.regenerate). Only revoking one session by
        # its handle leaves other logins alone.
        pending = [entry for entry in entries if entry.startswith(PENDING_PREFIX) and only is None]
        chosen = [
            session_id for session_id in entries
            if not session_id.startswith(PENDING_PREFIX)
            and (keep is None or keep not in (session_id, session_handle(session_id)))
            and (only is None or only == session_handle(session_id))
        ]
        if not chosen and not pending:
            return 0
        owners: List[Any] = []
        if chosen:
            pipeline = client.pipeline(transaction=False)
            for session_id in chosen:
                pipeline.hget(session_key(self.settings.prefix, session_id), USER_FIELD)
            owners = pipeline.execute(raise_on_error=False)
        ended = 0
        for session_id, owner in zip(chosen, owners):
            # only sessions still bound to this user: one rebound to another user is not theirs
            if owner == user_id.encode():
                ended += self.store.delete(session_key(self.settings.prefix, session_id))
        client.zrem(index, *chosen, *pending)
        return ended


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
