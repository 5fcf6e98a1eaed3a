"""Every session under a prefix, primary by primary: what the admin command counts, lists, shows
and purges.

Whole-store work is SCAN based (never KEYS) and blocking, page by page: each SCAN page of a
primary is read in one pipelined round trip on that same primary, and ``on_page`` hears of it at
once (a progress display; nothing holds the whole keyspace). Sessions are named by their public
handle (the SHA-256 of the id), never by id: the key of a session minted for hashed keying holds
the handle itself; that of an older session holds its id, which is hashed here before it is
shown. Ending a session goes through :class:`~redis_session.admin.AdminCore`, the same script
and WAIT policy as a logout.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from .admin import AdminCore
from .clients import primaries
from .operation import drive
from .protocol import (
    CREATED_FIELD,
    USER_FIELD,
    handle_of_stored,
    is_handle,
    session_key_pattern,
    stored_session_key,
    user_index_key,
    user_index_pattern,
)
from .settings import SessionSettings
from .store import Store
from .store_errors import STORE_ERRORS
from .user_index import PENDING_PREFIX

T = TypeVar("T")
#: Keys asked for per SCAN call; each page is then read in one pipelined round trip.
SCAN_COUNT = 1000
#: ``on_page(count, detail)``: a page of ``count`` items is done (``detail``: which primary).
OnPage = Callable[[int, str], None]


def _ignore_page(count: int, detail: str) -> None:
    pass


@dataclass(frozen=True)
class SessionRow:
    """What a listing shows of one session."""

    handle: str
    user: str | None
    created: float | None
    ttl: int


@dataclass(frozen=True)
class SessionDetails:
    """Everything stored for one session, bookkeeping fields included."""

    handle: str
    ttl: int
    fields: dict[str, str]


class Inventory:
    """Whole-store views of one store and prefix, for the admin command."""

    def __init__(self, settings: SessionSettings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def _guard(self, action: Callable[[], T]) -> T:
        """Run one client call; an outage becomes SessionUnavailableError, as for any store call."""
        try:
            return action()
        except STORE_ERRORS as error:
            self.store.rules.fail(error)

    def primaries(self) -> list[Any]:
        """One client per primary (every master of a cluster, or the single server)."""
        return self._guard(lambda: primaries(self.store.client))

    def _scan_pages(self, primary: Any, pattern: str) -> Iterator[list[bytes]]:
        cursor = 0
        while True:
            cursor, keys = self._guard(partial(primary.scan, cursor, match=pattern, count=SCAN_COUNT))
            if keys:
                yield list(dict.fromkeys(keys))  # SCAN may name a key twice within a page
            if not int(cursor):
                return

    def _session_pages(self, primary: Any) -> Iterator[list[str]]:
        """The storage names (see :func:`~redis_session.protocol.storage_name`) of the sessions on
        one primary, one SCAN page at a time."""
        head = len(stored_session_key(self.settings.prefix, ""))
        for keys in self._scan_pages(primary, session_key_pattern(self.settings.prefix)):
            yield [key.decode("utf-8", "replace")[head:] for key in keys]

    def _pipelined(self, primary: Any, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        pipeline = primary.pipeline(transaction=False)
        for method, args in commands:
            getattr(pipeline, method)(*args)
        return self._guard(partial(pipeline.execute, raise_on_error=False))

    def _each_session(self, on_page: OnPage) -> Iterator[tuple[Any, list[str], str]]:
        """``(primary, page of new storage names, detail)`` for every SCAN page of every primary."""
        nodes = self.primaries()
        seen: set[str] = set()
        for number, primary in enumerate(nodes, 1):
            detail = f" (primary {number}/{len(nodes)})" if len(nodes) > 1 else ""
            for page in self._session_pages(primary):
                fresh = [name for name in page if name not in seen]
                seen.update(fresh)
                yield primary, fresh, detail
                on_page(len(fresh), detail)

    def stats(self, on_page: OnPage = _ignore_page) -> dict[str, Any]:
        """Sessions, memory, TTL spread and per-user counts, from one scan of every primary."""
        live: set[str] = set()
        ttls: list[int] = []
        memory = persistent = 0
        for primary, page, _ in self._each_session(on_page):
            keys = [stored_session_key(self.settings.prefix, name) for name in page]
            replies = self._pipelined(primary, [command for key in keys for command in (("ttl", (key,)), ("memory_usage", (key,)))])
            for name, key, ttl, used in zip(page, keys, replies[0::2], replies[1::2]):
                if isinstance(ttl, Exception):  # e.g. MOVED: the slot migrated since the scan
                    ttl = self._guard(partial(self.store.client.ttl, key))
                if ttl == -2:
                    continue  # expired or deleted since the scan
                live.add(name)
                memory += used if isinstance(used, int) else 0
                if ttl >= 0:
                    ttls.append(ttl)
                else:
                    persistent += 1
        per_user, in_flight, stale = self._user_counts(live)
        spread: dict[str, int] = {}
        if ttls:
            ordered = sorted(ttls)
            spread = {"min": ordered[0], "median": int(statistics.median(ordered)),
                      "p90": nearest_rank(ordered, 0.9), "max": ordered[-1]}
        return {
            "store": self.store.name, "prefix": self.settings.prefix, "primaries": len(self.primaries()),
            "sessions": len(live), "sessions_without_ttl": persistent, "memory_bytes": memory,
            "memory_per_session": round(memory / len(live)) if live else 0, "ttl_seconds": spread,
            "users": len(per_user), "sessions_per_user": per_user,
            "signins_in_flight": in_flight, "stale_index_entries": stale,
        }

    def _user_counts(self, live: set[str]) -> tuple[dict[str, int], int, int]:
        """Live sessions per user (index entries whose session the scan found), sign-ins in flight
        (``pending:`` entries) and index entries of sessions that are gone (pruned lazily)."""
        per_user: dict[str, int] = {}
        in_flight = stale = 0
        head = len(user_index_key(self.settings.prefix, ""))
        for primary in self.primaries():
            for keys in self._scan_pages(primary, user_index_pattern(self.settings.prefix)):
                for key, members in zip(keys, self._pipelined(primary, [("zrange", (key, 0, -1)) for key in keys])):
                    if isinstance(members, Exception):
                        continue  # another type, or moved away since the scan
                    user = key.decode("utf-8", "replace")[head:]
                    entries = [member.decode("utf-8", "replace") for member in members]
                    alive = sum(1 for entry in entries if entry in live)
                    pending = sum(1 for entry in entries if entry.startswith(PENDING_PREFIX))
                    in_flight += pending
                    stale += len(entries) - alive - pending
                    if alive:
                        per_user[user] = per_user.get(user, 0) + alive
        return per_user, in_flight, stale

    def rows(self, on_page: OnPage = _ignore_page) -> list[SessionRow]:
        """Every session still there: handle, bound user, creation time, TTL."""
        rows: list[SessionRow] = []
        for primary, page, _ in self._each_session(on_page):
            keys = [stored_session_key(self.settings.prefix, name) for name in page]
            replies = self._pipelined(
                primary, [command for key in keys for command in (("hmget", (key, [USER_FIELD, CREATED_FIELD])), ("ttl", (key,)))]
            )
            for name, fields, ttl in zip(page, replies[0::2], replies[1::2]):
                if isinstance(fields, Exception) or not isinstance(ttl, int) or ttl == -2:
                    continue  # gone since the scan, moved away, or not a hash
                user, created = fields
                rows.append(SessionRow(
                    handle_of_stored(name),
                    user.decode("utf-8", "replace") if user is not None else None,
                    float(created) if created is not None and created.isdigit() else None,
                    ttl,
                ))
        return rows

    def find(self, handle: str) -> str | None:
        """The storage name of the session whose handle is ``handle``: the handle itself for a
        session stored under its digest (one lookup), else the id of an older session whose
        digest it is (a scan: those are not stored by handle)."""
        if not is_handle(handle):
            return None
        if self._guard(partial(self.store.client.exists, stored_session_key(self.settings.prefix, handle))):
            return handle
        for primary in self.primaries():
            for page in self._session_pages(primary):
                for name in page:
                    if not is_handle(name) and handle_of_stored(name) == handle:
                        return name
        return None

    def show(self, handle: str) -> SessionDetails | None:
        """Everything stored for the session ``handle`` names, or ``None`` if there is none."""
        name = self.find(handle)
        if name is None:
            return None
        key = stored_session_key(self.settings.prefix, name)
        kind, fields, ttl = self._pipelined(self.store.client, [("type", (key,)), ("hgetall", (key,)), ("ttl", (key,))])
        if kind != b"hash" or isinstance(fields, Exception):
            return None
        decoded = {field.decode("utf-8", "replace"): value.decode("utf-8", "replace") for field, value in fields.items()}
        return SessionDetails(handle, int(ttl), decoded)

    def key_type(self, handle: str) -> str:
        """What the key of the session ``handle`` names holds (``"none"``: no such key), to say why
        :meth:`show` or :meth:`delete` found no session there."""
        name = self.find(handle)
        if name is None:
            return "none"
        kind = self._guard(partial(self.store.client.type, stored_session_key(self.settings.prefix, name)))
        return kind.decode("ascii", "replace") if isinstance(kind, bytes) else str(kind)

    def delete(self, handle: str) -> bool:
        """End the session ``handle`` names, as a logout would; ``False`` if there is none."""
        name = self.find(handle)
        return name is not None and drive(AdminCore(self.settings).end(name), self.store.execute)

    def purge(self, on_page: OnPage = _ignore_page) -> int:
        """Delete every session and user index under the prefix; returns how many keys went."""
        deleted = 0
        for pattern in (session_key_pattern(self.settings.prefix), user_index_pattern(self.settings.prefix)):
            for primary in self.primaries():
                # deleting while scanning is safe: SCAN still returns every key that stays
                for keys in self._scan_pages(primary, pattern):
                    # one key per DEL: keys of a cluster primary may still sit in different slots
                    gone = sum(int(result) for result in self._pipelined(primary, [("delete", (key,)) for key in keys]))
                    deleted += gone
                    on_page(gone, "")
        return deleted


def nearest_rank(ordered: list[int], fraction: float) -> int:
    """The nearest-rank percentile of sorted values: the smallest value with at least
    ``fraction`` of all values at or below it (p90 of [100, 200] is 200)."""
    rank = -(-len(ordered) * round(fraction * 100) // 100)  # ceil without float error
    return ordered[max(rank, 1) - 1]

