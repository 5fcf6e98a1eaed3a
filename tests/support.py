"""Helpers the tests share: cookie sinks, stores a test opens and closes, settings of a test app.

Fixtures live in conftest.py; everything here is plain code a test may import.
"""

from __future__ import annotations

from typing import Any, Dict, List

from redis_session.clients import memory_server
from redis_session.settings import SessionSettings
from redis_session.store import Store

COOKIE_SECRET = "test-secret-" + "x" * 32


class RecordingCookie:
    """A cookie sink that remembers what the session asked the web layer to do."""

    def __init__(self) -> None:
        self.events: List[tuple] = []

    def issue(self, session_id: str) -> None:
        self.events.append(("issue", session_id))

    def expire(self) -> None:
        self.events.append(("expire",))

    def check_can_change(self, action: str, issuing: bool) -> None:
        pass  # a test's response can always take a cookie


class TestStores:
    """The stores a test opens, one per settings, built as the web glue builds them and closed
    when the test ends (a sentinel or cluster client left to the garbage collector can drop a
    socket unclosed)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self) -> None:
        self._stores: Dict[SessionSettings, Store] = {}

    def store_for(self, settings: SessionSettings) -> Store:
        store = self._stores.get(settings)
        if store is None:
            store = self._stores[settings] = Store.connect(settings)
        return store

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()


def memory_client(url: str) -> Any:
    """A blocking fakeredis client on the in-process server a ``memory://`` URL names."""
    import fakeredis

    return fakeredis.FakeRedis(server=memory_server(url))


def app_settings(store_url: str, prefix: str, **overrides: Any) -> Dict[str, Any]:
    """The ``redis_session`` Application setting tests use: their store, their prefix, no Secure."""
    values: Dict[str, Any] = {"redis": store_url, "redis-prefix": prefix, "cookie-secure": False}
    values.update(overrides)
    return values


def make_settings(store_url: str, prefix: str, **changes: Any) -> SessionSettings:
    """Settings on a test's store and prefix, without the Secure cookie attribute."""
    return SessionSettings(redis_url=store_url, prefix=prefix, cookie_secure=False).replace(**changes)

