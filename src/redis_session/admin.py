"""Inspect and end sessions outside a request: a user's sessions, "log out everywhere".

:class:`AdminCore` says what each administrative operation does, as generators of store calls
like :class:`~redis_session.core.SessionCore`; sessions end through the same ``destroy`` script
(and so the same WAIT policy) as a logout, one round trip per session. :class:`SessionAdmin`
runs them with blocking calls, :class:`AsyncSessionAdmin` with ``await`` (a coroutine handler's
"your sessions" page never blocks the loop).

Sessions are listed through the per-user index that ``bind_user`` maintains; the index is cleaned
lazily here (dead entries are dropped when found), which needs no keyspace notifications.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import user_index
from .operation import Operation, T, drive, drive_async
from .protocol import (
    COMMANDS,
    CREATED_FIELD,
    USER_FIELD,
    Call,
    Command,
    Status,
    handle_of_stored,
    is_handle,
    session_handle,
    storage_name,
    stored_session_key,
    user_index_key,
)
from .settings import SessionSettings
from .store import Store

if TYPE_CHECKING:  # the asyncio store is only needed by the coroutine admin
    from .async_store import AsyncStore

__all__ = ["AdminCore", "AsyncSessionAdmin", "SessionAdmin", "SessionInfo", "session_handle"]


@dataclass(frozen=True)
class SessionInfo:
    """What an administrator (or the user, on a "your sessions" page) may see of a session: its
    handle (``session.handle`` of the request that holds it), never its id."""

    handle: str
    user_id: str
    created: float | None
    last_seen: float | None
    expires: float


class AdminCore:
    """The administrative operations on one store and prefix, without any I/O."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings

    def sessions_for_user(self, user_id: str) -> Operation[list[SessionInfo]]:
        """The user's live sessions, most recently active first; dead index entries are dropped."""
        settings = self.settings
        entries = yield from user_index.members(settings, user_id)
        listed = [name for name, _ in entries.listed]
        reads: list[Command] = []
        for name in listed:
            key = stored_session_key(settings.prefix, name)
            reads.extend((("hmget", (key, [CREATED_FIELD, USER_FIELD])), ("ttl", (key,))))
        replies = (yield Call(COMMANDS, "", tuple(reads), True)) if reads else []
        now = time.time()
        alive: list[tuple[SessionInfo, str]] = []
        dead: list[str] = list(entries.stale_pending)
        for name, fields, ttl in zip(listed, replies[0::2], replies[1::2]):
            if not isinstance(fields, list) or not isinstance(ttl, int) or ttl == -2 or fields[1] != user_id.encode():
                dead.append(name)  # expired, destroyed, regenerated away, rebound, or not a hash
                continue
            created_raw = fields[0]
            created = float(created_raw) if isinstance(created_raw, bytes) and created_raw.isdigit() else None
            ttl_left = max(ttl, 0)
            # The TTL was set to the idle timeout at the last access, unless the absolute
            # deadline was nearer; in that case this is the latest time it can have been.
            last_seen = now - (settings.expire - ttl_left)
            if created is not None:
                last_seen = max(last_seen, created)
            alive.append((SessionInfo(handle_of_stored(name), user_id, created, last_seen, now + ttl_left), name))
        yield from user_index.unlist(settings, user_id, *dead)
        if alive:
            refreshed = [part for info, name in alive for part in (name, repr(info.expires))]
            yield Call("user_index", user_index_key(settings.prefix, user_id), ("refresh", *refreshed), True)
        infos = sorted((info for info, _ in alive), key=lambda info: info.last_seen or 0, reverse=True)
        return infos

    def end(self, name: str, user_id: str = "") -> Operation[bool]:
        """End the session stored under ``name`` (see :func:`~redis_session.protocol.storage_name`)
        with the logout script, and drop it from its user's index; only if it is still bound to
        ``user_id`` when one is given. ``False``, touching nothing, when there is no session hash
        at its key (an administrator never deletes a key the library did not write)."""
        reply = yield Call("destroy", stored_session_key(self.settings.prefix, name), (user_id, "1"), True)
        if reply[0] != Status.OK:
            return False
        owner = user_index.user_of(reply[1], name)
        if owner is not None:
            yield from user_index.unlist(self.settings, owner, name)
        return True

    def revoke(self, user_id: str, keep: str | None = None, only: str | None = None) -> Operation[int]:
        """End the user's sessions: all, all but ``keep`` (a handle, or the id of the session to
        keep), or only the one whose handle is ``only``. A sign-in in flight (a pending entry) is
        cancelled by removing its entry, unless only one session is revoked: it then ends its new
        session itself (see ``SessionCore.regenerate``). Returns how many sessions were ended."""
        entries = yield from user_index.members(self.settings, user_id)
        kept = as_handle(keep) if keep else None
        chosen = [
            name for name, _ in entries.listed
            if (kept is None or handle_of_stored(name) != kept)
            and (only is None or only == handle_of_stored(name))
        ]
        ended = 0
        for name in chosen:
            reply = yield Call("destroy", stored_session_key(self.settings.prefix, name), (user_id, "1"), True)
            ended += reply[0] == Status.OK
        cancelled = [] if only is not None else entries.pending + entries.stale_pending
        yield from user_index.unlist(self.settings, user_id, *chosen, *cancelled)
        return ended


def as_handle(handle_or_id: str) -> str:
    """A handle as it is, an id as its handle (``revoke_user(keep=...)`` takes either)."""
    return handle_or_id if is_handle(handle_or_id) else session_handle(handle_or_id)


class SessionAdmin:
    """Per-user session management for one store and prefix (blocking)."""

    def __init__(self, settings: SessionSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._core = AdminCore(settings)

    def _run(self, operation: Operation[T]) -> T:
        return drive(operation, self.store.execute)

    def sessions_for_user(self, user_id: str) -> list[SessionInfo]:
        """The user's live sessions, most recently active first (one round trip for the index,
        one for the sessions; one more when it drops dead entries)."""
        return self._run(self._core.sessions_for_user(str(user_id)))

    def revoke_user(self, user_id: str, keep: str | None = None) -> int:
        """End every session of the user, except ``keep`` (a handle, such as ``session.handle``,
        or a session id: "log out everywhere else"). Returns how many sessions were ended."""
        return self._run(self._core.revoke(str(user_id), keep=keep))

    def revoke(self, user_id: str, handle: str) -> int:
        """End one session of the user, named by its public handle. Returns 1 if it was ended."""
        return self._run(self._core.revoke(str(user_id), only=handle))

    def delete(self, session_id: str) -> bool:
        """End one session by id (and drop it from its user's index). ``True`` if it existed;
        ``False``, touching nothing, when its key is missing or is not a hash."""
        return self._run(self._core.end(storage_name(session_id)))


class AsyncSessionAdmin:
    """:class:`SessionAdmin` for coroutine handlers: the same methods, awaited."""

    def __init__(self, settings: SessionSettings, store: AsyncStore) -> None:
        self.settings = settings
        self.store = store
        self._core = AdminCore(settings)

    async def _run(self, operation: Operation[T]) -> T:
        return await drive_async(operation, self.store.execute)

    async def sessions_for_user(self, user_id: str) -> list[SessionInfo]:
        """The user's live sessions, most recently active first."""
        return await self._run(self._core.sessions_for_user(str(user_id)))

    async def revoke_user(self, user_id: str, keep: str | None = None) -> int:
        """End every session of the user, except ``keep`` (a session id or handle)."""
        return await self._run(self._core.revoke(str(user_id), keep=keep))

    async def revoke(self, user_id: str, handle: str) -> int:
        """End one session of the user, named by its public handle. Returns 1 if it was ended."""
        return await self._run(self._core.revoke(str(user_id), only=handle))

    async def delete(self, session_id: str) -> bool:
        """End one session by id (and drop it from its user's index)."""
        return await self._run(self._core.end(storage_name(session_id)))

