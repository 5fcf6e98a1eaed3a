"""What one web application owns: its settings, and the stores built from them on first use.

Each Tornado Application and each Flask app holds its own :class:`SessionBackend` (no registry
in the library keeps it alive), so its connections go when it goes and :meth:`close` ends them
cleanly. Two applications that should share one connection pool hand the library the same client
(see ``redis_client``).

Stores are built on first use, not when the application starts: coroutine handlers never need
the blocking store, and building a cluster client already talks to the cluster, which would
block (or, with the cluster down, fail) where nobody can answer a 503.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from typing import Any, TypeVar

from .admin import AsyncSessionAdmin, SessionAdmin
from .async_store import AsyncStore
from .operation import drive
from .settings import SessionSettings
from .start_up import probe
from .store import Store

#: A misconfiguration every request meets is logged at most once per this many seconds.
MISCONFIGURATION_LOG_INTERVAL = 60.0

BackendT = TypeVar("BackendT", bound="SessionBackend")


def report_due(holder: dict[str, Any], message: str) -> bool:
    """Whether to log ``message`` now: once per MISCONFIGURATION_LOG_INTERVAL per application
    (``holder`` is a dict the application owns). Every request would meet the same error, and
    the first line says all there is to say."""
    logged: dict[str, float] = holder.setdefault("_redis_session_logged", {})
    now = time.monotonic()
    if now - logged.get(message, -MISCONFIGURATION_LOG_INTERVAL) < MISCONFIGURATION_LOG_INTERVAL:
        return False
    logged[message] = now
    return True


class SessionBackend:
    """The settings of one application and its stores: one blocking, one per event loop."""

    def __init__(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._async_stores: dict[asyncio.AbstractEventLoop, AsyncStore] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The blocking store, built by the first request that needs it.

        :raises SessionUnavailableError: when building the client already needs the store and it
            does not answer. Nothing is remembered then: the next request tries again.
        """
        store = self._store
        if store is None:
            # Concurrent first requests (Flask threads) wait for one build instead of each
            # building a client and a connection pool.
            with self._lock:
                store = self._store
                if store is None:
                    store = self._store = Store.connect(self.settings)
        return store

    @property
    def async_store(self) -> AsyncStore:
        """The asyncio store of the running event loop (an asyncio connection belongs to the loop
        that opened it). Stores of loops that have been closed are dropped here: their
        connections died with their loop."""
        loop = asyncio.get_running_loop()
        store = self._async_stores.get(loop)
        if store is None:
            with self._lock:
                for old_loop in [old_loop for old_loop in self._async_stores if old_loop.is_closed()]:
                    del self._async_stores[old_loop]
                store = self._async_stores[loop] = AsyncStore.connect(self.settings)
        return store

    def with_settings(self: BackendT, settings: SessionSettings) -> BackendT:
        """A copy of this backend on other settings, with no store built yet; what a framework's
        subclass adds (Flask's cookie serializer) comes along. Tests move an application to a
        store of their own with it (see :func:`redis_session.testing.use_store`)."""
        twin = copy.copy(self)
        SessionBackend.__init__(twin, settings)
        return twin

    def check_store(self) -> None:
        """Ask the blocking store for a reply now, then send it every kind of command a request
        will, on a probe session (see :mod:`redis_session.start_up`); a start-up check: it blocks.

        :raises SessionUnavailableError: when the store does not answer.
        :raises StoreRefusedError: when it answers but refuses this configuration (a wrong
            password, a missing ACL permission or key pattern, a read-only replica).
        """
        store = self.store
        store.check()
        drive(probe(self.settings), store.execute)

    def admin(self) -> SessionAdmin:
        """Per-user session management on the blocking store."""
        return SessionAdmin(self.settings, self.store)

    def async_admin(self) -> AsyncSessionAdmin:
        """Per-user session management on the running loop's asyncio store."""
        return AsyncSessionAdmin(self.settings, self.async_store)

    def close(self) -> None:
        """Close the blocking store's connections; a later request opens new ones."""
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    async def aclose(self) -> None:
        """Close the running loop's asyncio store (and the blocking one); later use opens new ones."""
        with self._lock:
            store = self._async_stores.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.aclose()
        self.close()
