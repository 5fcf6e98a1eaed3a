"""Redis Cluster and Sentinel: the session API on real topologies, sync and asyncio.

Spawned topologies (``tests/redis_topologies.py``): a 3-master cluster, a 3-master cluster with a
replica per master (failover), and a master + replica + 3 sentinels. What is checked:

* the session basics on a cluster and behind sentinels, blocking and awaitable, including the
  per-user index (a key in another slot than the session keys) and ``SessionAdmin``;
* sessions spread over every master; ``regenerate()`` moves a session to another slot and master;
* a slot migrated (IMPORTING / MIGRATING / MIGRATE / SETSLOT NODE) under 20 writing threads
  loses no write;
* failovers (SENTINEL FAILOVER, a killed sentinel master, a killed cluster master) give each call
  (``incr``, never retried; ``get`` and ``set``, retried once after a dropped connection) either a
  success or ``SessionUnavailableError`` within its bound, and the same store object works again
  afterwards. The outage windows seen are printed (``-s``) and recorded as user properties;
* a cluster whose every node stops answering (frozen, then stopped), and a cluster URL whose
  nodes are down when the store is first built, give only ``SessionUnavailableError`` within the
  bound, sync and asyncio, and work again once the nodes are back.

Stores are built from the multi-host URLs users write (every node, every sentinel). Behind
sentinels a warm store follows a failover to the new master, and with ``redis-wait-replicas``
a logout returns only once the replicas have it.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
import traceback
import uuid
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import redis

from redis_session.admin import SessionAdmin
from redis_session.aio import AsyncSession, AsyncStore, AsyncStoreRegistry
from redis_session.errors import SessionUnavailableError
from redis_session.session import Session
from redis_session.settings import SessionSettings
from redis_session.store import MASTER_CHECK_SECONDS, Store, StoreRegistry, session_key, user_index_key
from tests import redis_topologies
from tests.redis_topologies import RedisCluster, SentinelSetup

# The topology fixtures (module scope; a killable sentinel setup and a stoppable cluster per test).
redis_cluster = redis_topologies.redis_cluster
redis_cluster_with_replicas = redis_topologies.redis_cluster_with_replicas
redis_cluster_to_stop = redis_topologies.redis_cluster_to_stop
sentinel_setup = redis_topologies.sentinel_setup
sentinel_setup_to_kill = redis_topologies.sentinel_setup_to_kill

FAILOVER_TIMEOUT = 0.5  # redis_timeout of the stores hammered through failovers
# "never a hang": one attempt may wait for a connect and a reply; allow scheduling slack on 2 cores
CALL_BOUND = 2 * FAILOVER_TIMEOUT + 0.5
# reads and plain writes are sent once more after a dropped connection: two attempts
RETRIED_CALL_BOUND = 2 * (2 * FAILOVER_TIMEOUT) + 0.5


class Cookie:
    """The cookie sink: remembers what the session asked the web layer to do."""

    def __init__(self) -> None:
        self.events: List[Tuple[str, ...]] = []

    def issue(self, session_id: str) -> None:
        self.events.append(("issue", session_id))

    def expire(self) -> None:
        self.events.append(("expire",))


def new_prefix() -> str:
    return f"s{uuid.uuid4().hex[:12]}"


def make_settings(url: str, **changes: Any) -> SessionSettings:
    return SessionSettings(redis_url=url, prefix=new_prefix(), cookie_secure=False).replace(**changes)


#: The sentinel clients of each store opened here, listed when it is opened. redis-py's
#: ``discover_master`` moves the sentinel that answered to the front of its list with a swap that
#: is not safe for concurrent callers (threads, or tasks across an await): two racing lookups can
#: leave one client in the list twice and drop another, which closing the list would then miss.
_sentinel_clients: weakref.WeakKeyDictionary[Any, List[Any]] = weakref.WeakKeyDictionary()


def sentinel_clients_of(store: Any) -> List[Any]:
    """The clients a sentinel store keeps on the sentinels (none for other stores)."""
    manager = getattr(getattr(store.client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", []))


def open_store(settings: SessionSettings) -> Store:
    """A store of the test's own, built as the web glue builds it (a fresh registry)."""
    store = StoreRegistry().store_for(settings)
    _sentinel_clients[store] = sentinel_clients_of(store)
    return store


def open_async_store(settings: SessionSettings) -> AsyncStore:
    """An asyncio store of the test's own (inside a running loop), as the web glue builds it."""
    store = AsyncStoreRegistry().store_for(settings)
    _sentinel_clients[store] = sentinel_clients_of(store)
    return store


def sentinels_to_close(store: Any) -> List[Any]:
    """Every sentinel client the store had when opened or has now, each once."""
    unique: Dict[int, Any] = {}
    for sentinel in _sentinel_clients.pop(store, []) + sentinel_clients_of(store):
        unique.setdefault(id(sentinel), sentinel)
    return list(unique.values())


def close_store(store: Store) -> None:
    """Close the store's client and, behind sentinels, the clients of the sentinels too."""
    sentinels = sentinels_to_close(store)
    store.client.close()
    for sentinel in sentinels:
        sentinel.close()


async def aclose_store(store: AsyncStore) -> None:
    sentinels = sentinels_to_close(store)
    await store.client.aclose()
    for sentinel in sentinels:
        await sentinel.aclose()


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
    """StoreRegistry().store_for() accepts the URL naming every node / every sentinel."""
    settings = make_settings(topology.url())
    store = StoreRegistry().store_for(settings)
    try:
        Session(store, settings, None, Cookie()).set("name", "alice")
        assert store.name == settings.redis_url  # every host named; there is no password to hide
    finally:
        close_store(store)


def test_async_registry_builds_a_store_for_a_multi_host_url(topology: Any) -> None:
    """AsyncStoreRegistry().store_for() accepts the URL naming every node / every sentinel."""
    settings = make_settings(topology.url())

    async def main() -> None:
        store = AsyncStoreRegistry().store_for(settings)
        try:
            await AsyncSession(store, settings, None, Cookie()).set("name", "alice")
        finally:
            await aclose_store(store)

    asyncio.run(main())


def keyslot(client: Any, key: str) -> int:
    return int(client.execute_command("CLUSTER KEYSLOT", key))


# -- the basics, blocking ------------------------------------------------------------------


def check_basics(store: Store, settings: SessionSettings, cluster: Optional[RedisCluster]) -> None:
    client = store.client
    cookie = Cookie()
    session = Session(store, settings, None, cookie)
    assert session.get("name").none and session.session_id is None
    session.name = "alice"
    session_id = session.session_id
    assert session_id is not None and cookie.events == [("issue", session_id)]

    # a later request with the same cookie
    later = Session(store, settings, session_id, Cookie())
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
    stale = Session(store, settings, old_id, Cookie())
    assert stale.name.none

    # clear: the fields go, the session and its id stay
    later.clear()
    assert later.load() == {} and later.session_id is not None
    assert client.exists(session_key(settings.prefix, later.session_id)) == 1

    # bind_user and the per-user index (another key, usually another slot, maybe another master)
    user = f"user-{uuid.uuid4().hex[:6]}"
    sessions = []
    for number in range(6):
        own = Session(store, settings, None, Cookie())
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
    assert sorted(info.session_id for info in listed) == sorted(own.session_id for own in sessions)
    assert all(info.created and info.expires > time.time() for info in listed)
    last_handle = next(info.handle for info in listed if info.session_id == sessions[-1].session_id)
    assert admin.revoke(user, last_handle) == 1
    assert admin.revoke_user(user, keep=sessions[0].session_id) == len(sessions) - 2
    assert [info.session_id for info in admin.sessions_for_user(user)] == [sessions[0].session_id]
    assert sessions[1].number.none and sessions[0].number.int == 0

    # destroy drops the key and the index entry; a later write starts a new session
    keep_id = sessions[0].session_id
    sessions[0].destroy()
    assert sessions[0].session_id is None and client.exists(session_key(settings.prefix, keep_id)) == 0
    assert admin.sessions_for_user(user) == [] and client.zcard(index) == 0
    sessions[0].note = "signed out"
    assert sessions[0].session_id not in (None, keep_id)
    revived = Session(store, settings, keep_id, Cookie())
    revived.note = "late write"
    assert revived.session_id != keep_id and client.exists(session_key(settings.prefix, keep_id)) == 0


def test_session_basics_sync(topology: Any) -> None:
    """Every blocking session operation, SessionAdmin and the cross-slot user index work."""
    settings = make_settings(topology.url())
    store = open_store(settings)
    try:
        check_basics(store, settings, topology if isinstance(topology, RedisCluster) else None)
    finally:
        close_store(store)


# -- the basics, asyncio -------------------------------------------------------------------


async def check_basics_async(settings: SessionSettings) -> Dict[str, Any]:
    store = open_async_store(settings)
    try:
        client = store.client
        cookie = Cookie()
        session = AsyncSession(store, settings, None, cookie)
        assert (await session.get("name")).none
        await session.set("name", "alice")
        session_id = session.session_id
        assert session_id is not None and cookie.events == [("issue", session_id)]
        later = AsyncSession(store, settings, session_id, Cookie())
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
            own = AsyncSession(store, settings, None, Cookie())
            await own.set("number", number)
            await own.bind_user(user)
            assert await own.user_id() == user
            bound.append(own.session_id)

        last = AsyncSession(store, settings, bound[-1], Cookie())
        await last.destroy()
        assert last.session_id is None
        assert await client.exists(session_key(settings.prefix, bound[-1])) == 0
        await last.set("note", "signed out")
        assert last.session_id not in (None, bound[-1])
        return {"user": user, "bound": bound[:-1], "destroyed": bound[-1]}
    finally:
        await aclose_store(store)


def test_session_basics_async(topology: Any) -> None:
    """The awaitable session does the same on redis.asyncio's cluster and sentinel clients; a
    blocking SessionAdmin then sees the users it bound."""
    settings = make_settings(topology.url())
    outcome = asyncio.run(check_basics_async(settings))
    store = open_store(settings)
    try:
        admin = SessionAdmin(settings, store)
        listed = admin.sessions_for_user(outcome["user"])
        assert sorted(info.session_id for info in listed) == sorted(outcome["bound"])
        assert admin.revoke_user(outcome["user"]) == len(outcome["bound"])
        assert admin.sessions_for_user(outcome["user"]) == []
    finally:
        close_store(store)


@pytest.mark.sentinel
def test_sentinel_url_database_is_used(sentinel_setup: SentinelSetup) -> None:
    """redis+sentinel://.../mymaster/3 keeps the sessions in database 3 of the master."""
    sentinel_setup.wait_healthy()
    settings = make_settings(sentinel_setup.url(db=3))
    store = open_store(settings)
    try:
        session = Session(store, settings, None, Cookie())
        session.name = "alice"
        key = session_key(settings.prefix, session.session_id)
        master = sentinel_setup.master()
        database_3 = redis.Redis(host="127.0.0.1", port=master.port, db=3, socket_timeout=5)
        database_0 = master.client()
        try:
            assert database_3.hget(key, "name") == b"alice" and database_0.exists(key) == 0
        finally:
            database_3.close()
            database_0.close()
    finally:
        close_store(store)


# -- cluster layout ------------------------------------------------------------------------


@pytest.mark.cluster
def test_a_thousand_sessions_spread_over_every_master(redis_cluster: RedisCluster) -> None:
    """1000 sessions created through the library land on all three masters, each key on the
    master that owns its slot, and the admin scan finds every one of them."""
    settings = make_settings(redis_cluster.url())
    store = open_store(settings)
    try:
        ids = []
        for number in range(1000):
            session = Session(store, settings, None, Cookie())
            session.number = number
            ids.append(session.session_id)
        per_master: Dict[int, List[bytes]] = {}
        for master in redis_cluster.masters():
            client = master.client()
            try:
                keys = list(client.scan_iter(match=f"{settings.prefix}:sessions:*", count=1000))
                per_master[master.port] = keys
                for key in keys[:50]:
                    assert redis_cluster.master_for_slot(keyslot(client, key.decode())) is master
            finally:
                client.close()
        counts = {port: len(keys) for port, keys in per_master.items()}
        assert len(counts) == 3 and all(count > 100 for count in counts.values()), counts
        assert sum(counts.values()) == 1000
        assert sorted(SessionAdmin(settings, store).scan_session_ids()) == sorted(ids)
    finally:
        close_store(store)


@pytest.mark.cluster
def test_regenerate_moves_a_session_to_another_slot_and_master(redis_cluster: RedisCluster) -> None:
    """regenerate() copies to a key in another slot (here: on another master), keeps the data
    and deletes the old key; no CROSSSLOT, no RENAME."""
    settings = make_settings(redis_cluster.url())
    store = open_store(settings)
    try:
        session = Session(store, settings, None, Cookie())
        session.update(name="alice", items=[1, 2, 3])
        session.incr("visits", 7)
        for _ in range(50):
            old_id = session.session_id
            old_key = session_key(settings.prefix, old_id)
            old_slot = redis_cluster.keyslot(old_key)
            session.regenerate()
            new_key = session_key(settings.prefix, session.session_id)
            new_slot = redis_cluster.keyslot(new_key)
            assert store.client.exists(old_key) == 0
            assert {name: value.raw for name, value in session.load().items()} == {
                "name": b"alice", "items": b"[1,2,3]", "visits": b"7",
            }
            if new_slot != old_slot and redis_cluster.master_for_slot(new_slot) is not redis_cluster.master_for_slot(old_slot):
                break
        else:
            pytest.fail("50 regenerations never moved the session to another master")
        assert Session(store, settings, old_id, Cookie()).name.none
    finally:
        close_store(store)


# -- a slot migrated under writers -------------------------------------------------------------


@dataclass
class WriterLog:
    fields: Dict[str, int] = field(default_factory=dict)
    increments: int = 0
    unavailable: List[str] = field(default_factory=list)
    ambiguous_increments: int = 0
    unexpected: List[str] = field(default_factory=list)
    ids_seen: set = field(default_factory=set)


def cluster_command(server: Any, *args: Any) -> Any:
    client = server.client()
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def asking_calls(server: Any) -> int:
    stats = cluster_command(server, "INFO", "commandstats")
    return int(stats.get("cmdstat_asking", {}).get("calls", 0))


def migrate_slot(cluster: RedisCluster, slot: int, source: Any, target: Any, pause: float) -> int:
    """Move ``slot`` from ``source`` to ``target`` the way redis-cli --cluster reshard does,
    pausing in each phase so that writers meet every redirect. Returns how many keys moved."""
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    cluster_command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    cluster_command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    time.sleep(pause)  # the keys are still on the source: it serves them
    moved = 0
    while True:
        keys = cluster_command(source, "CLUSTER", "GETKEYSINSLOT", slot, 100)
        if not keys:
            break
        cluster_command(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        moved += len(keys)
    time.sleep(pause)  # the keys are on the target: the source answers ASK
    others = [node for node in cluster.masters() if node not in (source, target)]
    for node in [target, source, *others]:
        cluster_command(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved


def writer(store: Store, settings: SessionSettings, session_id: str, number: int, stop: threading.Event,
           log: WriterLog) -> None:
    """Write own fields and increment the shared counter until stopped; retry what raised."""
    session = Session(store, settings, session_id, Cookie())
    sequence = 0
    try:
        while not stop.is_set():
            name = f"w{number}_{sequence}"
            while True:
                try:
                    session[name] = sequence
                    log.fields[name] = sequence
                    break
                except SessionUnavailableError as error:
                    log.unavailable.append(f"set: {type(error.cause).__name__}: {error.cause}")
                    time.sleep(0.005)
            while True:
                try:
                    session.incr("counter")
                    log.increments += 1
                    break
                except SessionUnavailableError as error:
                    log.unavailable.append(f"incr: {type(error.cause).__name__}: {error.cause}")
                    if isinstance(error.cause, redis.exceptions.TimeoutError):
                        log.ambiguous_increments += 1  # sent, maybe applied: retried anyway
                    time.sleep(0.005)
            log.ids_seen.add(session.session_id)
            sequence += 1
    except Exception as error:  # noqa: BLE001 - reported by the test, not lost in a thread
        log.unexpected.append(f"{type(error).__name__}: {error}")


@pytest.mark.cluster
def test_slot_migration_under_twenty_writers_loses_nothing(redis_cluster: RedisCluster, record_property: Any) -> None:
    """The slot holding a session moves to another master while 20 threads write their own
    fields and increment one counter: every acknowledged write is there afterwards."""
    settings = make_settings(redis_cluster.url(), max_fields=100_000)
    store = open_store(settings)
    try:
        seed = Session(store, settings, None, Cookie())
        seed.counter = 0
        session_id = seed.session_id
        assert session_id is not None
        slot = redis_cluster.keyslot(session_key(settings.prefix, session_id))
        source = redis_cluster.master_for_slot(slot)
        target = next(node for node in redis_cluster.masters() if node is not source)
        asking_before = asking_calls(target)

        stop = threading.Event()
        logs = [WriterLog() for _ in range(20)]
        threads = [
            threading.Thread(target=writer, args=(store, settings, session_id, number, stop, log), daemon=True)
            for number, log in enumerate(logs)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        moved = migrate_slot(redis_cluster, slot, source, target, pause=0.4)
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads), "a writer hung"
        redis_cluster.wait_healthy(10)

        assert redis_cluster.master_for_slot(slot) is target and moved >= 1
        unexpected = [problem for log in logs for problem in log.unexpected]
        assert unexpected == []
        assert {session_id} == set().union(*(log.ids_seen for log in logs)), "a writer lost its session"
        stored = Session(store, settings, session_id, Cookie()).load()
        expected = {name: value for log in logs for name, value in log.fields.items()}
        missing = sorted(name for name, value in expected.items() if stored.get(name) is None or stored[name].int != value)
        assert missing == []
        increments = sum(log.increments for log in logs)
        ambiguous = sum(log.ambiguous_increments for log in logs)
        assert increments <= stored["counter"].int <= increments + ambiguous
        unavailable = [problem for log in logs for problem in log.unavailable]
        asked = asking_calls(target) - asking_before
        summary = (f"slot {slot}: {moved} keys moved, {len(expected)} fields and {increments} increments "
                   f"acknowledged, {len(unavailable)} SessionUnavailableError, {asked} ASKING on the target")
        print(summary, sorted(set(unavailable))[:5])
        record_property("migration", summary)
        assert len(expected) > 200 and increments > 200, summary
        assert asked > 0, "no write ever followed an ASK redirect: the migration window was missed"
    finally:
        close_store(store)


# -- WAIT: logouts the replicas have confirmed ------------------------------------------------


def wait_calls(server: Any) -> int:
    """How many WAIT commands ``server`` has run (``INFO commandstats``)."""
    client = server.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def holds(server: Any, key: str) -> bool:
    """Whether ``server`` (a replica too, cluster or not) holds ``key`` right now."""
    client = server.client()
    try:
        client.execute_command("READONLY") if server_is_clustered(client) else None
        return bool(client.exists(key))
    finally:
        client.close()


def server_is_clustered(client: Any) -> bool:
    return str(client.info("cluster").get("cluster_enabled", 0)) == "1"


def replicated(server: Any, key: str, deadline_seconds: float = 5.0) -> None:
    """Wait until the replica ``server`` has ``key`` (so that a later check that it is gone means
    the delete reached it)."""
    deadline = time.monotonic() + deadline_seconds
    while not holds(server, key):
        assert time.monotonic() < deadline, f"{key} never reached the replica on port {server.port}"
        time.sleep(0.01)


def new_session(store: Store, settings: SessionSettings, name: str = "alice") -> Session:
    session = Session(store, settings, None, Cookie())
    session.name = name
    assert session.session_id is not None
    return session


@pytest.mark.sentinel
def test_destroy_returns_only_once_the_replica_dropped_the_session(sentinel_setup: SentinelSetup) -> None:
    """With redis-wait-replicas=1, destroy() and regenerate() return only once the replica no
    longer has the ended key, even when the replica is late; each sends one WAIT."""
    sentinel_setup.wait_healthy()
    settings = make_settings(sentinel_setup.url(), redis_wait_replicas=1, redis_wait_timeout=1.5)
    master, replica = sentinel_setup.master(), sentinel_setup.replicas()[0]
    store = open_store(settings)
    try:
        session = new_session(store, settings)
        key = session_key(settings.prefix, session.session_id or "")
        replicated(replica, key)
        before = wait_calls(master)
        replica.pause()  # the replica is late: it applies the delete only once resumed
        resume = threading.Timer(0.3, replica.resume)
        resume.start()
        started = time.monotonic()
        try:
            session.destroy()
        finally:
            resume.join()
        waited = time.monotonic() - started
        assert not holds(replica, key)  # checked at once: no sleep between the logout and this
        assert waited >= 0.25, f"destroy() returned after {waited:.2f}s, before the paused replica acknowledged"
        assert wait_calls(master) == before + 1

        moving = new_session(store, settings, "bob")
        old_key = session_key(settings.prefix, moving.session_id or "")
        replicated(replica, old_key)
        before = wait_calls(master)
        moving.regenerate()
        assert not holds(replica, old_key)
        assert moving.name.str == "bob" and wait_calls(master) == before + 1
    finally:
        close_store(store)


@pytest.mark.sentinel
def test_without_wait_replicas_no_wait_is_sent(sentinel_setup: SentinelSetup) -> None:
    """With redis-wait-replicas=0 (the default) logouts, regenerate, bind_user and the admin's
    deletes send no WAIT at all."""
    sentinel_setup.wait_healthy()
    settings = make_settings(sentinel_setup.url())
    assert settings.redis_wait_replicas == 0
    master = sentinel_setup.master()
    store = open_store(settings)
    try:
        before = wait_calls(master)
        new_session(store, settings).destroy()
        new_session(store, settings).regenerate()
        bound = new_session(store, settings)
        bound.bind_user("carol")
        admin = SessionAdmin(settings, store)
        assert admin.delete(new_session(store, settings).session_id or "")
        new_session(store, settings).bind_user("dave")
        assert admin.revoke_user("dave") == 1
        bound.destroy()
        assert wait_calls(master) == before
    finally:
        close_store(store)


@pytest.mark.sentinel
def test_too_few_replicas_log_a_warning_and_the_logout_still_succeeds(
    sentinel_setup: SentinelSetup, caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting for 2 replicas with only 1: destroy() returns after the wait timeout, the session
    is gone, and one warning names the acknowledgements and the setting."""
    sentinel_setup.wait_healthy()
    settings = make_settings(sentinel_setup.url(), redis_wait_replicas=2, redis_wait_timeout=0.2)
    store = open_store(settings)
    try:
        session = new_session(store, settings)
        session_id = session.session_id or ""
        with caplog.at_level("WARNING", logger="redis_session"):
            started = time.monotonic()
            session.destroy()
            waited = time.monotonic() - started
        assert session.session_id is None and waited >= 0.15
        assert Session(store, settings, session_id, Cookie()).name.none
        assert not holds(sentinel_setup.master(), session_key(settings.prefix, session_id))
        warnings = [record.getMessage() for record in caplog.records if record.name == "redis_session"]
        assert len(warnings) == 1, warnings
        assert "1 of 2 replicas" in warnings[0] and "session-redis-wait-replicas" in warnings[0]
        assert session_id not in warnings[0]
    finally:
        close_store(store)


@pytest.mark.sentinel
def test_admin_deletes_wait_for_the_replica(sentinel_setup: SentinelSetup) -> None:
    """SessionAdmin.delete/revoke_user and ``redis-session delete`` with
    --session-redis-wait-replicas=1 return once the replica no longer has the sessions."""
    from redis_session.__main__ import run

    sentinel_setup.wait_healthy()
    settings = make_settings(sentinel_setup.url(), redis_wait_replicas=1)
    master, replica = sentinel_setup.master(), sentinel_setup.replicas()[0]
    store = open_store(settings)
    try:
        admin = SessionAdmin(settings, store)
        doomed = new_session(store, settings)
        key = session_key(settings.prefix, doomed.session_id or "")
        replicated(replica, key)
        before = wait_calls(master)
        assert admin.delete(doomed.session_id or "")
        assert not holds(replica, key) and wait_calls(master) == before + 1

        user = f"user-{uuid.uuid4().hex[:6]}"
        keys = []
        for _ in range(2):
            own = new_session(store, settings)
            own.bind_user(user)
            keys.append(session_key(settings.prefix, own.session_id or ""))
        for own_key in keys:
            replicated(replica, own_key)
        before = wait_calls(master)
        assert admin.revoke_user(user) == 2
        assert not any(holds(replica, own_key) for own_key in keys) and wait_calls(master) == before + 2

        by_command = new_session(store, settings)
        key = session_key(settings.prefix, by_command.session_id or "")
        replicated(replica, key)
        before = wait_calls(master)
        flags = [f"--session-redis={settings.redis_url}", f"--session-redis-prefix={settings.prefix}",
                 "--session-redis-wait-replicas=1"]
        assert run([*flags, "delete", by_command.session_id or ""], out=io.StringIO(), err=io.StringIO()) == 0
        assert not holds(replica, key) and wait_calls(master) == before + 1
    finally:
        close_store(store)


@pytest.mark.sentinel
def test_async_destroy_waits_for_the_replica(sentinel_setup: SentinelSetup) -> None:
    """The awaitable destroy() sends the same one WAIT and returns once the replica has it."""
    sentinel_setup.wait_healthy()
    settings = make_settings(sentinel_setup.url(), redis_wait_replicas=1)
    master, replica = sentinel_setup.master(), sentinel_setup.replicas()[0]

    async def main() -> None:
        store = open_async_store(settings)
        try:
            session = AsyncSession(store, settings, None, Cookie())
            await session.set("name", "alice")
            key = session_key(settings.prefix, session.session_id or "")
            replicated(replica, key)
            before = wait_calls(master)
            await session.destroy()
            assert not holds(replica, key) and wait_calls(master) == before + 1
        finally:
            await aclose_store(store)

    asyncio.run(main())


@pytest.mark.cluster
def test_cluster_wait_goes_to_the_master_that_owns_the_session(redis_cluster_with_replicas: RedisCluster) -> None:
    """On a cluster the WAIT after a logout runs on the master owning the session's slot (the
    connection that deleted it), blocking and awaitable; no other master sees a WAIT."""
    cluster = redis_cluster_with_replicas
    cluster.wait_healthy()
    settings = make_settings(cluster.url(), redis_wait_replicas=1)
    store = open_store(settings)
    try:
        for _ in range(3):
            session = new_session(store, settings)
            key = session_key(settings.prefix, session.session_id or "")
            owner = cluster.master_for_slot(cluster.keyslot(key))
            replica = cluster.replica_of(owner)
            assert replica is not None
            replicated(replica, key)
            before = {master.port: wait_calls(master) for master in cluster.masters()}
            session.destroy()
            assert not holds(replica, key)
            after = {master.port: wait_calls(master) for master in cluster.masters()}
            assert after == {port: calls + (port == owner.port) for port, calls in before.items()}
    finally:
        close_store(store)

    async def main() -> None:
        async_store = open_async_store(settings)
        try:
            session = AsyncSession(async_store, settings, None, Cookie())
            await session.set("name", "alice")
            key = session_key(settings.prefix, session.session_id or "")
            owner = cluster.master_for_slot(cluster.keyslot(key))
            before = {master.port: wait_calls(master) for master in cluster.masters()}
            await session.destroy()
            after = {master.port: wait_calls(master) for master in cluster.masters()}
            assert after == {port: calls + (port == owner.port) for port, calls in before.items()}
        finally:
            await aclose_store(async_store)

    asyncio.run(main())


# -- failovers -------------------------------------------------------------------------------

#: The slowest a call may be under a fault, per operation. ``incr`` is sent once: one attempt may
#: wait for a connect and for a reply. Reads and plain writes are sent a second time after a
#: dropped connection, so they may take two attempts. Both get half a second of scheduling slack
#: (2 cores shared with the Redis processes).
CALL_BOUNDS = {"incr": CALL_BOUND, "set": RETRIED_CALL_BOUND, "get": RETRIED_CALL_BOUND}
#: What each hammer does in a loop: ``incr("hits")`` (never retried) or ``set("note", n)`` then
#: ``get("note")`` (each retried once after a dropped connection).
HAMMER_KINDS = ("incr", "get/set")


@dataclass
class CallRecord:
    started: float
    seconds: float
    operation: str  # "incr", "set" or "get"
    outcome: str  # "ok", "unavailable" or the unexpected exception
    value: Optional[int] = None  # what incr returned, the number set wrote, or what get read


@dataclass
class HammerLog:
    kind: str
    records: List[CallRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    final_session_id: Optional[str] = None
    first_traceback: Optional[str] = None  # of the first unexpected exception, for the report

    def add(self, started: float, operation: str, outcome: str, value: Any = None) -> None:
        with self.lock:
            self.records.append(CallRecord(started, time.monotonic() - started, operation, outcome, value))

    def unexpected(self, started: float, operation: str, error: BaseException) -> None:
        with self.lock:
            if self.first_traceback is None:
                self.first_traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__)[-12:])
        self.add(started, operation, f"{type(error).__name__}: {error}")

    def snapshot(self) -> List[CallRecord]:
        with self.lock:
            return list(self.records)


def as_number(raw: Optional[bytes]) -> Optional[int]:
    return None if raw is None else int(raw)


def attempt(log: HammerLog, operation: str, call: Callable[[], Any], written: Optional[int] = None) -> None:
    """Make one call and record its outcome and duration."""
    started = time.monotonic()
    try:
        result = call()
    except SessionUnavailableError:
        log.add(started, operation, "unavailable", written)
    except Exception as error:  # noqa: BLE001 - the property under test: nothing else
        log.unexpected(started, operation, error)
    else:
        log.add(started, operation, "ok", written if operation == "set" else result)


async def attempt_async(log: HammerLog, operation: str, call: Callable[[], Any], written: Optional[int] = None) -> None:
    started = time.monotonic()
    try:
        result = await call()
    except SessionUnavailableError:
        log.add(started, operation, "unavailable", written)
    except Exception as error:  # noqa: BLE001
        log.unexpected(started, operation, error)
    else:
        log.add(started, operation, "ok", written if operation == "set" else result)


def hammer_sync(store: Store, settings: SessionSettings, session_id: str, stop: threading.Event, log: HammerLog) -> None:
    session = Session(store, settings, session_id, Cookie())
    number = 0
    while not stop.is_set():
        number += 1
        if log.kind == "incr":
            attempt(log, "incr", partial(session.incr, "hits"))
        else:
            attempt(log, "set", partial(session.set, "note", number), number)
            attempt(log, "get", lambda: as_number(session.get("note").raw))
        time.sleep(0.01)
    log.final_session_id = session.session_id


def hammer_async(settings: SessionSettings, session_ids: Dict[str, str], stop: threading.Event,
                 logs: Dict[str, HammerLog]) -> None:
    """One event loop running a task per log, all on one AsyncStore (as one process of an app)."""
    async def hammer(store: AsyncStore, session_id: str, log: HammerLog) -> None:
        session = AsyncSession(store, settings, session_id, Cookie())

        async def get() -> Optional[int]:
            return as_number((await session.get("note")).raw)

        number = 0
        while not stop.is_set():
            number += 1
            if log.kind == "incr":
                await attempt_async(log, "incr", partial(session.incr, "hits"))
            else:
                await attempt_async(log, "set", partial(session.set, "note", number), number)
                await attempt_async(log, "get", get)
            await asyncio.sleep(0.01)
        log.final_session_id = session.session_id

    async def main() -> None:
        store = open_async_store(settings)
        try:
            await asyncio.gather(*(hammer(store, session_ids[name], log) for name, log in logs.items()))
        finally:
            await aclose_store(store)

    try:
        asyncio.run(main())
    except Exception as error:  # noqa: BLE001
        for log in logs.values():
            log.add(time.monotonic(), "loop", f"hammer crashed: {type(error).__name__}: {error}")


class Hammers:
    """Blocking threads and one asyncio thread, each hammering its own session through the same
    long-lived store objects (no restart, no new client) with ``incr`` and with ``set``/``get``,
    recording every call."""

    def __init__(self, url: str) -> None:
        self.settings = make_settings(url, redis_timeout=FAILOVER_TIMEOUT)
        self.store = open_store(self.settings)
        self.stop = threading.Event()
        self.logs = {f"{mode} {kind}": HammerLog(kind) for mode in ("sync", "async") for kind in HAMMER_KINDS}
        self.threads: List[threading.Thread] = []
        self.session_ids: Dict[str, str] = {}

    def start(self, session_id_for: Callable[[str], str]) -> Hammers:
        self.session_ids = {name: session_id_for(name) for name in self.logs}
        self.threads = [
            threading.Thread(target=hammer_sync, daemon=True,
                             args=(self.store, self.settings, self.session_ids[name], self.stop, log))
            for name, log in self.logs.items() if name.startswith("sync ")
        ]
        asynchronous = {name: log for name, log in self.logs.items() if name.startswith("async ")}
        self.threads.append(threading.Thread(target=hammer_async, daemon=True,
                                             args=(self.settings, self.session_ids, self.stop, asynchronous)))
        for thread in self.threads:
            thread.start()
        return self

    def wait_for_successes(self, since: float, count: int = 5, deadline_seconds: float = 20.0) -> None:
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if all(sum(1 for record in log.snapshot() if record.started >= since and record.outcome == "ok") >= count
                   for log in self.logs.values()):
                return
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        close_store(self.store)

    def check(self, fault_started: float, recovered: float, label: str, record_property: Any,
              stored: Callable[[str, str], Optional[int]]) -> Dict[str, float]:
        """Only successes or SessionUnavailableError, each within its CALL_BOUNDS; successes again
        after recovery, where a get reads what the set before it wrote, and the last write of each
        hammer is on the current master (``stored(session_id, field)`` reads it there).
        Returns the outage window of each hammer: first failure to the next success after the
        last failure."""
        assert not any(thread.is_alive() for thread in self.threads), "a hammer hung"
        windows: Dict[str, float] = {}
        for name, log in self.logs.items():
            records = log.snapshot()
            unexpected = sorted({f"{record.operation}: {record.outcome}" for record in records
                                 if record.outcome not in ("ok", "unavailable")})
            assert unexpected == [], f"{label} ({name}): {unexpected}; the first:\n{log.first_traceback}"
            slowest: Dict[str, float] = {}
            for record in records:
                slowest[record.operation] = max(slowest.get(record.operation, 0.0), record.seconds)
            for operation, seconds in slowest.items():
                assert seconds <= CALL_BOUNDS[operation], (
                    f"{label} ({name}): a {operation} took {seconds:.2f}s, over its bound of {CALL_BOUNDS[operation]}s"
                )
            assert any(record.outcome == "ok" and record.started < fault_started for record in records)
            after = [record for record in records if record.started >= recovered]
            assert after and all(record.outcome == "ok" for record in after[-5:]), (
                f"{label} ({name}): no success after recovery: {[record.outcome for record in after[-10:]]}"
            )
            failures = [record for record in records if record.outcome != "ok"]
            if failures:
                next_success = next(
                    (record.started for record in records if record.outcome == "ok" and record.started > failures[-1].started),
                    records[-1].started,
                )
                windows[name] = next_success - failures[0].started
            else:
                windows[name] = 0.0
            # after recovery the acknowledged writes are on the current master
            assert log.final_session_id is not None
            if log.kind == "incr":
                acknowledged = [record.value for record in records if record.outcome == "ok"]
                held = stored(log.final_session_id, "hits")
                assert held == acknowledged[-1], f"{label} ({name}): last incr returned {acknowledged[-1]}, master holds {held}"
                same_session = log.final_session_id == self.session_ids[name]
                lost = (1 + len(acknowledged) - held) if held is not None and same_session else None
                detail = f"acknowledged increments lost: {lost}"
            else:
                written = [record.value for record in records if record.operation == "set" and record.outcome == "ok"]
                held = stored(log.final_session_id, "note")
                assert held == written[-1], f"{label} ({name}): last set wrote {written[-1]}, master holds {held}"
                pairs = list(zip(records, records[1:]))
                stale = [(first.value, second.value) for first, second in pairs
                         if first.started >= recovered and first.operation == "set" and second.operation == "get"
                         and first.outcome == second.outcome == "ok" and second.value != first.value]
                assert stale == [], f"{label} ({name}): after recovery a get did not read the set before it: {stale[:5]}"
                detail = f"{len(written)} sets acknowledged"
            timings = ", ".join(f"slowest {operation} {seconds:.2f}s" for operation, seconds in sorted(slowest.items()))
            summary = (f"{label} ({name}): outage {windows[name]:.2f}s, {len(failures)} of {len(records)} calls "
                       f"unavailable, {timings}, {detail}")
            print(summary)
            record_property(f"{label}-{name}", summary)
        return windows


def hits_on(server: Any, settings: SessionSettings, session_id: str, name: str = "hits") -> Optional[int]:
    """The session's field ``name`` as a number, as stored on ``server`` (read directly, not
    through the library)."""
    client = server.client()
    try:
        raw = client.hget(session_key(settings.prefix, session_id), name)
    finally:
        client.close()
    return None if raw is None else int(raw)


def caught_up(setup: SentinelSetup, settings: SessionSettings, session_id: str, hits: int) -> None:
    """Wait until the replica holds the session's ``hits``: these tests are about where writes go
    after a failover, not about the writes asynchronous replication loses in one."""
    replica = setup.replicas()[0]
    deadline = time.monotonic() + 10
    while hits_on(replica, settings, session_id) != hits:
        assert time.monotonic() < deadline, f"the replica never caught up with hits={hits}"
        time.sleep(0.01)


def sentinel_seeds(hammers: Hammers) -> Callable[[str], str]:
    def seed(name: str) -> str:
        session = Session(hammers.store, hammers.settings, None, Cookie())
        session.incr("hits")
        assert session.session_id is not None
        return session.session_id
    return seed


@pytest.mark.sentinel
def test_sentinel_failover_answers_unavailable_then_recovers(sentinel_setup: SentinelSetup, record_property: Any) -> None:
    """SENTINEL FAILOVER under load: each incr, get and set succeeds or raises
    SessionUnavailableError within its bound, and the same stores serve the new master afterwards."""
    sentinel_setup.wait_healthy()
    hammers = Hammers(sentinel_setup.url())
    try:
        hammers.start(sentinel_seeds(hammers))
        time.sleep(0.5)
        old_master = sentinel_setup.master()
        fault = time.monotonic()
        promoted_after = sentinel_setup.failover()
        # the old master keeps answering as a master until the sentinels demote it
        sentinel_setup.wait_healthy()
        recovered = time.monotonic()
        assert sentinel_setup.master() is not old_master
        hammers.wait_for_successes(recovered)
        time.sleep(0.3)
    finally:
        hammers.finish()
    print(f"sentinel failover: new master named after {promoted_after:.2f}s, old master demoted after "
          f"{recovered - fault:.2f}s")
    hammers.check(fault, recovered, "sentinel-failover", record_property,
                  lambda session_id, name: hits_on(sentinel_setup.master(), hammers.settings, session_id, name))


@pytest.mark.sentinel
def test_writes_after_a_sentinel_failover_reach_the_new_master(sentinel_setup: SentinelSetup) -> None:
    """Once every sentinel names the new master (and the store's once-a-second master check is
    due), an acknowledged write is on the new master, not on the old one still taking writes."""
    sentinel_setup.wait_healthy()
    settings = make_settings(sentinel_setup.url(), redis_timeout=FAILOVER_TIMEOUT)
    store = open_store(settings)
    try:
        session = Session(store, settings, None, Cookie())
        for _ in range(5):
            session.incr("hits")  # a warm pool: connections to the current master
        warm = time.monotonic()
        old_master = sentinel_setup.master()
        caught_up(sentinel_setup, settings, session.session_id or "", 5)
        sentinel_setup.failover()
        new_master = sentinel_setup.wait_sentinels_agree()
        assert new_master is not old_master
        time.sleep(max(0.0, MASTER_CHECK_SECONDS - (time.monotonic() - warm)))
        written = None
        for _ in range(20):
            try:
                written = session.incr("hits")
                break
            except SessionUnavailableError:
                time.sleep(0.05)
        assert written == 6
        assert hits_on(new_master, settings, session.session_id) == written, (
            f"incr returned {written} but the new master holds {hits_on(new_master, settings, session.session_id)}; "
            f"the old master holds {hits_on(old_master, settings, session.session_id)}"
        )
    finally:
        close_store(store)
        sentinel_setup.wait_healthy()


@pytest.mark.sentinel
def test_async_writes_after_a_sentinel_failover_reach_the_new_master(sentinel_setup: SentinelSetup) -> None:
    """The awaitable store follows the failover too: the next acknowledged write is on the new master."""
    sentinel_setup.wait_healthy()
    settings = make_settings(sentinel_setup.url(), redis_timeout=FAILOVER_TIMEOUT)

    async def main() -> Tuple[Optional[int], str, Any, Any]:
        store = open_async_store(settings)
        try:
            session = AsyncSession(store, settings, None, Cookie())
            for _ in range(5):
                await session.incr("hits")
            warm = time.monotonic()
            old_master = sentinel_setup.master()
            caught_up(sentinel_setup, settings, session.session_id or "", 5)  # blocks the loop, as below
            sentinel_setup.failover()
            new_master = sentinel_setup.wait_sentinels_agree()
            await asyncio.sleep(max(0.0, MASTER_CHECK_SECONDS - (time.monotonic() - warm)))
            written = None
            for _ in range(20):
                try:
                    written = await session.incr("hits")
                    break
                except SessionUnavailableError:
                    await asyncio.sleep(0.05)
            return written, session.session_id or "", old_master, new_master
        finally:
            await aclose_store(store)

    try:
        written, session_id, old_master, new_master = asyncio.run(main())
        assert new_master is not old_master and written == 6
        assert hits_on(new_master, settings, session_id) == written, (
            f"the new master holds {hits_on(new_master, settings, session_id)}, "
            f"the old one {hits_on(old_master, settings, session_id)}"
        )
    finally:
        sentinel_setup.wait_healthy()


@pytest.mark.sentinel
def test_sentinel_master_killed_answers_unavailable_then_recovers(
    sentinel_setup_to_kill: SentinelSetup, record_property: Any
) -> None:
    """The master process dies: incr, get and set fail fast with SessionUnavailableError until the
    sentinels promote the replica, then the same stores succeed again."""
    setup = sentinel_setup_to_kill
    hammers = Hammers(setup.url())
    try:
        hammers.start(sentinel_seeds(hammers))
        time.sleep(0.5)
        fault = time.monotonic()
        promoted_after = setup.kill_master()
        recovered = time.monotonic()
        hammers.wait_for_successes(recovered)
        time.sleep(0.3)
    finally:
        hammers.finish()
    print(f"sentinel master killed: replica promoted after {promoted_after:.2f}s")
    hammers.check(fault, recovered, "sentinel-kill", record_property,
                  lambda session_id, name: hits_on(setup.master(), hammers.settings, session_id, name))


@pytest.mark.cluster
def test_cluster_master_killed_answers_unavailable_then_recovers(
    redis_cluster_with_replicas: RedisCluster, record_property: Any
) -> None:
    """A cluster master dies and its replica takes over: incr, get and set on its slots fail fast
    with SessionUnavailableError, then the same stores succeed again."""
    cluster = redis_cluster_with_replicas
    hammers = Hammers(cluster.url())
    victim = cluster.masters()[1]

    def seed_on_victim(name: str) -> str:
        for _ in range(500):
            session = Session(hammers.store, hammers.settings, None, Cookie())
            session.incr("hits")
            assert session.session_id is not None
            if cluster.master_for_slot(cluster.keyslot(session_key(hammers.settings.prefix, session.session_id))) is victim:
                return session.session_id
        raise AssertionError("no session key landed on the victim master")

    try:
        hammers.start(seed_on_victim)
        time.sleep(0.5)
        fault = time.monotonic()
        promoted_after = cluster.kill_master(1)
        recovered = time.monotonic()
        hammers.wait_for_successes(recovered)
        time.sleep(0.3)
    finally:
        hammers.finish()
    print(f"cluster master killed: replica promoted and cluster ok after {promoted_after:.2f}s")

    def on_owner(session_id: str, name: str) -> Optional[int]:
        owner = cluster.master_for_slot(cluster.keyslot(session_key(hammers.settings.prefix, session_id)))
        return hits_on(owner, hammers.settings, session_id, name)

    hammers.check(fault, recovered, "cluster-kill", record_property, on_owner)


# -- every cluster node unreachable ---------------------------------------------------------


def unreachable_cluster_bound(cluster: RedisCluster) -> float:
    """The slowest a call may be while no node of ``cluster`` answers.

    After a command fails, redis-py asks every node it knows for the slot table before it gives
    up, each ask bounded by the timeout (a frozen node accepts the connect, as the kernel does,
    and never replies). So a call costs up to its own attempt (a read's pipeline: two) plus one
    timeout per node, and half a second of scheduling slack: bounded, though it grows with the
    nodes, unlike a single node's outage.
    """
    return (len(cluster.nodes) + 2) * FAILOVER_TIMEOUT + 0.5


def check_all_unavailable(logs: Dict[str, HammerLog], bound: float, label: str, record_property: Any) -> None:
    """Every recorded call raised SessionUnavailableError, none took longer than ``bound``."""
    for name, log in logs.items():
        records = log.snapshot()
        assert records, f"{label} ({name}): no call was made"
        outcomes = sorted({f"{record.operation}: {record.outcome}" for record in records if record.outcome != "unavailable"})
        assert outcomes == [], f"{label} ({name}): {outcomes}; the first unexpected:\n{log.first_traceback}"
        slowest = max(records, key=lambda record: record.seconds)
        assert slowest.seconds <= bound, f"{label} ({name}): a {slowest.operation} took {slowest.seconds:.2f}s, over {bound:.2f}s"
        timings = ", ".join(f"{record.operation} {record.seconds:.2f}s" for record in records)
        summary = f"{label} ({name}): every call unavailable within {bound:.2f}s: {timings}"
        print(summary)
        record_property(f"{label}-{name}", summary)


def until_it_works(call: Callable[[], Any], deadline_seconds: float = 15.0) -> Any:
    """``call()`` once it stops raising SessionUnavailableError (the nodes are back, the client
    is catching up); any other error fails at once."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return call()
        except SessionUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def opened_async_store(settings: SessionSettings) -> AsyncStore:
    return open_async_store(settings)


@pytest.mark.cluster
@pytest.mark.parametrize("outage", ["frozen", "stopped"])
def test_a_cluster_with_every_node_unreachable_answers_unavailable_then_recovers(
    redis_cluster_to_stop: RedisCluster, outage: str, record_property: Any
) -> None:
    """Every cluster node frozen or stopped: each sync and asyncio call raises only
    SessionUnavailableError (a 503) within the bound, and the same stores work once the nodes are back."""
    cluster = redis_cluster_to_stop
    settings = make_settings(cluster.url(), redis_timeout=FAILOVER_TIMEOUT)
    bound = unreachable_cluster_bound(cluster)
    loop = asyncio.new_event_loop()
    store = open_store(settings)
    async_store = loop.run_until_complete(opened_async_store(settings))
    logs = {"sync": HammerLog("outage"), "async": HammerLog("outage")}
    try:
        session = Session(store, settings, None, Cookie())
        session.set("name", "alice")
        async_session = AsyncSession(async_store, settings, None, Cookie())
        loop.run_until_complete(async_session.set("name", "bob"))
        session_ids = (session.session_id, async_session.session_id)

        cluster.freeze_all() if outage == "frozen" else cluster.stop_all()
        attempt(logs["sync"], "get", lambda: as_number(session.get("hits").raw))
        attempt(logs["sync"], "set", partial(session.set, "note", 1), 1)
        attempt(logs["sync"], "incr", partial(session.incr, "hits"))

        async def async_calls() -> None:
            async def get() -> Optional[int]:
                return as_number((await async_session.get("hits")).raw)

            await attempt_async(logs["async"], "get", get)
            await attempt_async(logs["async"], "set", partial(async_session.set, "note", 1), 1)
            await attempt_async(logs["async"], "incr", partial(async_session.incr, "hits"))

        loop.run_until_complete(async_calls())
        assert (session.session_id, async_session.session_id) == session_ids, "an outage dropped a session id"

        cluster.thaw_all() if outage == "frozen" else cluster.restart_all()
        # the same store objects, no restart: the nodes are back, so calls succeed again
        until_it_works(partial(session.set, "note", 2))
        assert session.get("note").int == 2
        loop.run_until_complete(async_until_it_works(partial(async_session.set, "note", 2)))
        assert loop.run_until_complete(async_session.get("note")).int == 2
        if outage == "frozen":  # nothing was lost: the nodes only paused
            assert session.name.str == "alice" and loop.run_until_complete(async_session.get("name")).str == "bob"
            assert (session.session_id, async_session.session_id) == session_ids
    finally:
        close_store(store)
        loop.run_until_complete(aclose_store(async_store))
        loop.close()
    check_all_unavailable(logs, bound, f"cluster-{outage}", record_property)


async def async_until_it_works(call: Callable[[], Any], deadline_seconds: float = 15.0) -> Any:
    """The awaitable :func:`until_it_works`."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return await call()
        except SessionUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.cluster
def test_a_cluster_down_at_first_use_answers_unavailable_then_works(
    redis_cluster_to_stop: RedisCluster, record_property: Any
) -> None:
    """A redis+cluster:// store first used while every node is down gives SessionUnavailableError
    (a 503), not a crash, sync and asyncio; once the nodes are back the same registries serve sessions."""
    cluster = redis_cluster_to_stop
    settings = make_settings(cluster.url(), redis_timeout=FAILOVER_TIMEOUT)
    bound = unreachable_cluster_bound(cluster)
    registry, async_registry = StoreRegistry(), AsyncStoreRegistry()
    logs = {"sync": HammerLog("first use"), "async": HammerLog("first use")}
    loop = asyncio.new_event_loop()
    stores: List[Any] = []

    def sync_write() -> None:
        store = registry.store_for(settings)  # building the client already needs a node
        stores.append(store)
        Session(store, settings, None, Cookie()).set("name", "alice")

    async def async_write() -> None:
        store = async_registry.store_for(settings)
        stores.append(store)
        await AsyncSession(store, settings, None, Cookie()).set("name", "bob")

    try:
        cluster.stop_all()
        for _ in range(2):  # a failed first use is not cached: the next request tries again
            attempt(logs["sync"], "set", sync_write)
            loop.run_until_complete(attempt_async(logs["async"], "set", async_write))

        cluster.restart_all()
        until_it_works(sync_write)
        loop.run_until_complete(async_until_it_works(async_write))
        assert len({id(store) for store in stores}) == 2, "a registry built more than one store per kind"
    finally:
        for store in {id(store): store for store in stores}.values():
            if isinstance(store, AsyncStore):
                loop.run_until_complete(aclose_store(store))
            else:
                close_store(store)
        loop.close()
    check_all_unavailable(logs, bound, "cluster-first-use", record_property)
