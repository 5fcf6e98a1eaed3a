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
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import redis

from .errors import SessionUnavailableError
from .scripts import CREATED_FIELD, USER_FIELD
from .settings import SessionSettings
from .store import STORE_ERRORS, Store, is_unavailable, session_key, stores, user_index_key
from .user_index import PENDING_GRACE_SECONDS, PENDING_PREFIX

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
        except STORE_ERRORS as error:
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
        """One client per primary: every master of a cluster, or the single server.

        Each client talks to its own node only, so a pipeline sent on it reads that node's keys
        in one round trip (what SCAN on that node found lives there, barring a slot migration).
        """
        client = self._client()
        get_primaries = getattr(client, "get_primaries", None)
        if get_primaries is None:
            return [client]
        return self._guard(lambda: [client.get_redis_connection(node) for node in get_primaries()])

    def scan_session_ids(self, count: int = 1000) -> Iterator[str]:
        """Every session id under the prefix, scanning each primary in turn (never KEYS); ids come
        out as each SCAN page arrives. SCAN may name a key twice."""
        for primary in self.primaries():
            for page in self.session_id_pages(primary, count):
                yield from page

    def session_id_pages(self, primary: Any, count: int = 1000) -> Iterator[List[str]]:
        """The session ids on one primary, one SCAN page at a time."""
        head = f"{self.settings.prefix}:sessions:"
        for keys in self._scan_pages(primary, glob_escape(head) + "*", count):
            yield [key.decode("utf-8", "replace")[len(head):] for key in keys]

    def _scan_pages(self, primary: Any, pattern: str, count: int = 1000) -> Iterator[List[bytes]]:
        """SCAN one primary page by page, each call guarded: a page is handed on as soon as it
        arrives (a caller can show progress, and nothing holds the whole keyspace)."""
        cursor = 0
        while True:
            cursor, keys = self._guard(partial(primary.scan, cursor, match=pattern, count=count))
            if keys:
                yield list(keys)
            if not int(cursor):
                return

    def session_stats(self, primary: Any, session_ids: Sequence[str]) -> List[Tuple[int, int]]:
        """``(ttl, bytes)`` of each session, read from ``primary`` in one round trip. A TTL of -2:
        gone (or not readable); -1: no expiry. Bytes are 0 where MEMORY USAGE is not offered."""
        keys = [session_key(self.settings.prefix, session_id) for session_id in session_ids]
        if not keys:
            return []
        pipeline = primary.pipeline(transaction=False)
        for key in keys:
            pipeline.ttl(key)
            pipeline.memory_usage(key)
        replies = self._guard(lambda: pipeline.execute(raise_on_error=False))
        ttls, used = replies[0::2], replies[1::2]
        for position, key in enumerate(keys):
            if isinstance(ttls[position], Exception):
                # e.g. MOVED: the slot migrated since the scan; ask through the routing client
                ttls[position] = self._guard(partial(self._client().ttl, key))
        return [
            (int(ttl) if isinstance(ttl, int) else -2, int(size) if isinstance(size, int) else 0)
            for ttl, size in zip(ttls, used)
        ]

    def session_rows(self, primary: Any, session_ids: Sequence[str]) -> List[Dict[str, Any]]:
        """What ``list`` shows of each session still there, read from ``primary`` in one round trip."""
        keys = [session_key(self.settings.prefix, session_id) for session_id in session_ids]
        if not keys:
            return []
        pipeline = primary.pipeline(transaction=False)
        for key in keys:
            pipeline.hmget(key, [USER_FIELD, CREATED_FIELD])
            pipeline.ttl(key)
        replies = self._guard(lambda: pipeline.execute(raise_on_error=False))
        rows = []
        for session_id, fields, ttl in zip(session_ids, replies[0::2], replies[1::2]):
            if isinstance(fields, Exception) or not isinstance(ttl, int) or ttl == -2:
                continue  # gone since the scan, moved away, or not a hash
            user, created = fields
            rows.append({
                "session_id": session_id,
                "handle": session_handle(session_id),
                "user": user.decode("utf-8", "replace") if user is not None else None,
                "created": float(created) if created is not None and created.isdigit() else None,
                "ttl": int(ttl),
            })
        return rows

    def user_index_pages(self, primary: Any, count: int = 1000) -> Iterator[List[Tuple[str, List[str]]]]:
        """``(user id, index members)`` of the user indexes on one primary, a SCAN page at a time.
        Members are session ids, or ``pending:...`` for a sign-in in flight."""
        head = f"{self.settings.prefix}:users:"
        for keys in self._scan_pages(primary, glob_escape(head) + "*", count):
            pipeline = primary.pipeline(transaction=False)
            for key in keys:
                pipeline.zrange(key, 0, -1)
            replies = self._guard(partial(pipeline.execute, raise_on_error=False))
            yield [
                (key.decode("utf-8", "replace")[len(head):], [member.decode("utf-8", "replace") for member in members])
                for key, members in zip(keys, replies)
                if not isinstance(members, Exception)  # another type, or moved away since the scan
            ]

    def key_type(self, session_id: str) -> str:
        """The Redis type of the key a session id names (``"none"`` if no such key), to explain
        why :meth:`show` or :meth:`delete` did not find a session there."""
        key = session_key(self.settings.prefix, session_id)
        kind = self._guard(partial(self._client().type, key))
        return kind.decode("ascii", "replace") if isinstance(kind, bytes) else str(kind)

    def show(self, session_id: str) -> Optional[Dict[str, Any]]:
        """Everything stored for one session (bookkeeping fields included), or ``None`` if there
        is no hash at its key (:meth:`key_type` says what is there instead)."""
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
        """End one session by id (and drop it from its user's index). ``True`` if it existed;
        ``False``, touching nothing, when its key is missing or is not a hash (as :meth:`show`)."""
        def delete() -> bool:
            client = self._client()
            key = session_key(self.settings.prefix, session_id)
            if client.type(key) != b"hash":
                return False  # not a session: never delete a key this library did not write
            user = client.hget(key, USER_FIELD)
            existed = bool(self.store.delete(key))
            if user:
                client.zrem(user_index_key(self.settings.prefix, user.decode("utf-8", "replace")), session_id)
            return existed
        return self._guard(delete)

    def purge(self, on_page: Optional[Callable[[int], None]] = None) -> int:
        """Delete every session and user index under the prefix. Returns how many keys went;
        ``on_page(n)`` hears of each page of ``n`` deleted keys (for a progress display)."""
        deleted = 0
        for pattern in (f"{self.settings.prefix}:sessions:", f"{self.settings.prefix}:users:"):
            for primary in self.primaries():
                # deleting while scanning is safe: SCAN still returns every key that stays
                for batch in self._scan_pages(primary, glob_escape(pattern) + "*", 500):
                    # one key per DEL: keys of a cluster primary may still sit in different slots
                    pipeline = primary.pipeline(transaction=False)
                    for key in batch:
                        pipeline.delete(key)
                    gone = sum(int(result) for result in self._guard(pipeline.execute))
                    deleted += gone
                    if on_page is not None:
                        on_page(gone)
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
