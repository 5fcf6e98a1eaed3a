"""The session API on a 3-master Redis Cluster and behind sentinels, blocking and awaitable:
the basics, the per-user index (a key in another slot than the sessions it lists) and
``SessionAdmin``, from the multi-host URLs users write (every node, every sentinel)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from redis_session.admin import SessionAdmin
from redis_session.aio import AsyncSession
from redis_session.async_store import AsyncStore
from redis_session.protocol import session_handle, session_key, user_index_key
from redis_session.session import Session
from redis_session.settings import SessionSettings
from redis_session.store import Store
from tests import redis_topologies
from tests.redis_topologies import RedisCluster
from tests.support import RecordingCookie, keyslot, topology_settings

# The topology fixtures this module uses (see tests/redis_topologies.py).
redis_cluster = redis_topologies.redis_cluster
sentinel_setup = redis_topologies.sentinel_setup



@pytest.fixture(params=[
    pytest.param("cluster", marks=pytest.mark.cluster),
    pytest.param("sentinel", marks=pytest.mark.sentinel),
])
def topology(request: pytest.FixtureRequest) -> Any:
    """The same test on the 3-master cluster and behind the sentinels."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster")
    return request.getfixturevalue("sentinel_setup")


def test_registry_builds_a_store_for_a_multi_host_url(topology: Any) -> None:
    """Store.connect() accepts the URL naming every node / every sentinel."""
    settings = topology_settings(topology.url())
    store = Store.connect(settings)
    try:
        Session(store, settings, None, RecordingCookie()).set("name", "alice")
        assert store.name == settings.redis_url  # every host named; there is no password to hide
    finally:
        store.close()


def test_async_registry_builds_a_store_for_a_multi_host_url(topology: Any) -> None:
    """AsyncStore.connect() accepts the URL naming every node / every sentinel."""
    settings = topology_settings(topology.url())

    async def main() -> None:
        store = AsyncStore.connect(settings)
        try:
            await AsyncSession(store, settings, None, RecordingCookie()).set("name", "alice")
        finally:
            await store.aclose()

    asyncio.run(main())


# -- the basics, blocking ------------------------------------------------------------------


def check_basics(store: Store, settings: SessionSettings, cluster: RedisCluster | None) -> None:
    client = store.client
    cookie = RecordingCookie()
    session = Session(store, settings, None, cookie)
    assert session.get("name").none and session.session_id is None
    session.name = "alice"
    session_id = session.session_id
    assert session_id is not None and cookie.events == [("issue", session_id)]

    # a later request with the same cookie
    later = Session(store, settings, session_id, RecordingCookie())
    assert later.name.str == "alice"
    later.update({"a": 1, "b": [1, 2]}, c=True)
    assert [value.raw for value in later.get_many("a", "b", "c", "missing")] == [b"1", b"[1,2]", b"1", None]
    later["name"] = "bob"
    assert later.incr("visits") == 1 and later.incr("visits", 5) == 6 and later.incr("score", 0.5) == 0.5
    loaded = later.load()
    assert {name: value.raw for name, value in loaded.items()} == {
        "name": b"bob", "a": b"1", "b": b"[1,2]", "c": b"1", "visits": b"6", "score": b"0.5",
    }
    later.delete("a", "b")
    assert "a" not in later and "c" in later and len(later) == 4
    assert sorted(later) == ["c", "name", "score", "visits"]

    later.flash("hello")
    later.flash("careful", "warning")
    later.flash("again")
    assert later.flashes("warning") == [("warning", "careful")]
    assert later.flashes() == [("message", "hello"), ("message", "again")]
    assert later.flashes() == []

    # regenerate: new id, same data, old key gone and never revived
    old_id, old_key = later.session_id, session_key(settings.prefix, session_id)
    later.regenerate()
    assert later.session_id not in (None, old_id)
    assert later.load()["name"].str == "bob"
    assert client.exists(old_key) == 0
    stale = Session(store, settings, old_id, RecordingCookie())
    assert stale.name.none

    # clear: the fields go, the session and its id stay
    later.clear()
    assert later.load() == {} and later.session_id is not None
    assert client.exists(session_key(settings.prefix, later.session_id)) == 1

    # bind_user and the per-user index (another key, usually another slot, maybe another master)
    user = f"user-{uuid.uuid4().hex[:6]}"
    sessions = []
    for number in range(6):
        own = Session(store, settings, None, RecordingCookie())
        own.number = number
        own.bind_user(user)
        assert own.user_id == user
        sessions.append(own)
    index = user_index_key(settings.prefix, user)
    if cluster is not None:
        index_slot = keyslot(client, index)
        slots = {keyslot(client, session_key(settings.prefix, own.session_id)) for own in sessions}
        assert slots - {index_slot}, "every session key landed in the index's slot: no cross-slot case tested"
    admin = SessionAdmin(settings, store)
    listed = admin.sessions_for_user(user)
    assert sorted(info.handle for info in listed) == sorted(own.handle for own in sessions)
    assert all(info.created and info.expires > time.time() for info in listed)
    last_handle = sessions[-1].handle
    assert admin.revoke(user, last_handle) == 1
    assert admin.revoke_user(user, keep=sessions[0].session_id) == len(sessions) - 2
    assert [info.handle for info in admin.sessions_for_user(user)] == [sessions[0].handle]
    assert sessions[1].number.none and sessions[0].number.int == 0

    # destroy drops the key and the index entry; a later write starts a new session
    keep_id = sessions[0].session_id
    sessions[0].destroy()
    assert sessions[0].session_id is None and client.exists(session_key(settings.prefix, keep_id)) == 0
    assert admin.sessions_for_user(user) == [] and client.zcard(index) == 0
    sessions[0].note = "signed out"
    assert sessions[0].session_id not in (None, keep_id)
    revived = Session(store, settings, keep_id, RecordingCookie())
    revived.note = "late write"
    assert revived.session_id != keep_id and client.exists(session_key(settings.prefix, keep_id)) == 0


def test_session_basics_sync(topology: Any) -> None:
    """Every blocking session operation, SessionAdmin and the cross-slot user index work."""
    settings = topology_settings(topology.url())
    store = Store.connect(settings)
    try:
        check_basics(store, settings, topology if isinstance(topology, RedisCluster) else None)
    finally:
        store.close()


# -- the basics, asyncio -------------------------------------------------------------------


async def check_basics_async(settings: SessionSettings) -> dict[str, Any]:
    store = AsyncStore.connect(settings)
    try:
        client = store.client
        cookie = RecordingCookie()
        session = AsyncSession(store, settings, None, cookie)
        assert (await session.get("name")).none
        await session.set("name", "alice")
        session_id = session.session_id
        assert session_id is not None and cookie.events == [("issue", session_id)]
        later = AsyncSession(store, settings, session_id, RecordingCookie())
        assert (await later.name).str == "alice"
        await later.update({"a": 1}, b={"x": 1})
        assert [value.raw for value in await later.get_many("a", "b")] == [b"1", b'{"x":1}']
        assert await later.incr("visits") == 1 and await later.incr("visits", 2) == 3
        assert {name: value.raw for name, value in (await later.load()).items()} == {
            "name": b"alice", "a": b"1", "b": b'{"x":1}', "visits": b"3",
        }
        await later.delete("a")
        assert not await later.contains("a") and await later.length() == 3
        assert sorted(await later.keys()) == ["b", "name", "visits"]
        await later.flash("one")
        await later.flash("two", "info")
        assert await later.flashes("info") == [("info", "two")]
        assert await later.flashes() == [("message", "one")] and await later.flashes() == []

        old_id = later.session_id
        await later.regenerate()
        assert later.session_id not in (None, old_id)
        assert (await later.name).str == "alice"
        assert await client.exists(session_key(settings.prefix, old_id)) == 0

        await later.clear()
        assert await later.load() == {}

        user = f"user-{uuid.uuid4().hex[:6]}"
        bound = []
        for number in range(4):
            own = AsyncSession(store, settings, None, RecordingCookie())
            await own.set("number", number)
            await own.bind_user(user)
            assert await own.user_id == user
            bound.append(own.session_id)

        last = AsyncSession(store, settings, bound[-1], RecordingCookie())
        await last.destroy()
        assert last.session_id is None
        assert await client.exists(session_key(settings.prefix, bound[-1])) == 0
        await last.set("note", "signed out")
        assert last.session_id not in (None, bound[-1])
        return {"user": user, "bound": bound[:-1], "destroyed": bound[-1]}
    finally:
        await store.aclose()


def test_session_basics_async(topology: Any) -> None:
    """The awaitable session does the same on redis.asyncio's cluster and sentinel clients; a
    blocking SessionAdmin then sees the users it bound."""
    settings = topology_settings(topology.url())
    outcome = asyncio.run(check_basics_async(settings))
    store = Store.connect(settings)
    try:
        admin = SessionAdmin(settings, store)
        listed = admin.sessions_for_user(outcome["user"])
        assert sorted(info.handle for info in listed) == sorted(session_handle(session_id) for session_id in outcome["bound"])
        assert admin.revoke_user(outcome["user"]) == len(outcome["bound"])
        assert admin.sessions_for_user(outcome["user"]) == []
    finally:
        store.close()


