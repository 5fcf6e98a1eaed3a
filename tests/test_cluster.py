"""Redis Cluster: sessions spread over every master, ``regenerate()`` across slots, a slot migrated
under 20 writers (and key by key under coroutine and blocking clients), WAIT on the master that
owns a session, a killed master, and a cluster whose every node stops answering (or is down when
the store is first built): only ``SessionUnavailableError`` within the bound, sync and asyncio,
and the same store works again once the nodes are back."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import redis

from redis_session.aio import AsyncSession
from redis_session.async_store import AsyncStore
from redis_session.backend import SessionBackend
from redis_session.errors import SessionUnavailableError
from redis_session.inventory import Inventory
from redis_session.protocol import session_handle, session_key
from redis_session.session import Session
from redis_session.settings import SessionSettings
from redis_session.store import Store
from tests import redis_topologies
from tests.redis_topologies import RedisCluster
from tests.support import (
    FAILOVER_TIMEOUT,
    HammerLog,
    Hammers,
    RecordingCookie,
    as_number,
    attempt,
    attempt_async,
    hits_on,
    holds,
    keyslot,
    new_session,
    replicated,
    topology_settings,
    wait_calls,
)

# The topology fixtures this module uses (see tests/redis_topologies.py).
redis_cluster = redis_topologies.redis_cluster
redis_cluster_with_replicas = redis_topologies.redis_cluster_with_replicas
redis_cluster_to_stop = redis_topologies.redis_cluster_to_stop



# -- cluster layout ------------------------------------------------------------------------


@pytest.mark.cluster
def test_a_thousand_sessions_spread_over_every_master(redis_cluster: RedisCluster) -> None:
    """1000 sessions created through the library land on all three masters, each key on the
    master that owns its slot, and the admin scan finds every one of them."""
    settings = topology_settings(redis_cluster.url())
    store = Store.connect(settings)
    try:
        ids = []
        for number in range(1000):
            session = Session(store, settings, None, RecordingCookie())
            session.number = number
            ids.append(session.session_id)
        per_master: dict[int, list[bytes]] = {}
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
        listed = Inventory(settings, store).rows()
        assert sorted(row.handle for row in listed) == sorted(session_handle(session_id) for session_id in ids)
    finally:
        store.close()


@pytest.mark.cluster
def test_a_session_stored_under_its_id_moves_to_a_hashed_key_on_a_cluster(redis_cluster: RedisCluster) -> None:
    """Sessions an older release stored under their id (32 characters) move, on first use, to a
    new id stored under its digest: usually another slot on another master, by take-then-copy,
    with every field and the user binding, and exactly one key left."""
    settings = topology_settings(redis_cluster.url())
    store = Store.connect(settings)
    client = store.client  # the store's own cluster client, to plant and inspect keys
    try:
        masters_changed = 0
        for number in range(12):
            old_id = secrets.token_urlsafe(24)
            old_key = session_key(settings.prefix, old_id)
            client.hset(old_key, mapping={"number": number, "name": "old", "__rs:user": "dana"})
            client.expire(old_key, 600)
            cookie = RecordingCookie()
            session = Session(store, settings, old_id, cookie)
            assert (session.number.int, session.name.str, session.user_id) == (number, "old", "dana")
            new_key = session_key(settings.prefix, session.session_id or "")
            assert session.session_id != old_id and cookie.events == [("issue", session.session_id)]
            assert client.exists(old_key) == 0 and client.hget(new_key, "number") == str(number).encode()
            masters_changed += redis_cluster.master_for_slot(client.keyslot(old_key)) is not \
                redis_cluster.master_for_slot(client.keyslot(new_key))
        assert masters_changed > 0, "every move stayed on its master: no cross-slot case tested"
        keys = [key for master in redis_cluster.masters() for key in master.client().scan_iter(match=f"{settings.prefix}:sessions:*")]
        assert len(keys) == 12
    finally:
        store.close()


@pytest.mark.cluster
def test_regenerate_moves_a_session_to_another_slot_and_master(redis_cluster: RedisCluster) -> None:
    """regenerate() copies to a key in another slot (here: on another master), keeps the data
    and deletes the old key; no CROSSSLOT, no RENAME."""
    settings = topology_settings(redis_cluster.url())
    store = Store.connect(settings)
    try:
        session = Session(store, settings, None, RecordingCookie())
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
        assert Session(store, settings, old_id, RecordingCookie()).name.none
    finally:
        store.close()


# -- a slot migrated under writers -------------------------------------------------------------


@dataclass
class WriterLog:
    fields: dict[str, int] = field(default_factory=dict)
    increments: int = 0
    unavailable: list[str] = field(default_factory=list)
    ambiguous_increments: int = 0
    unexpected: list[str] = field(default_factory=list)
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


def migrate_slot(cluster: RedisCluster, slot: int, source: Any, target: Any, pause: float,
                 batch: int = 100, key_pause: float = 0.0, first: tuple[str, ...] = ()) -> int:
    """Move ``slot`` from ``source`` to ``target`` the way redis-cli --cluster reshard does,
    pausing in each phase so that writers meet every redirect. ``batch`` keys go per MIGRATE,
    ``key_pause`` seconds apart (while some keys of the slot are on each node), the keys
    ``first`` before the others. Returns how many keys moved."""
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    cluster_command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    cluster_command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    time.sleep(pause)  # the keys are still on the source: it serves them
    moved = 0
    for key in first:
        cluster_command(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key)
        moved += 1
        time.sleep(key_pause)
    while True:
        keys = cluster_command(source, "CLUSTER", "GETKEYSINSLOT", slot, batch)
        if not keys:
            break
        cluster_command(source, "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        moved += len(keys)
        time.sleep(key_pause)
    time.sleep(pause)  # the keys are on the target: the source answers ASK
    others = [node for node in cluster.masters() if node not in (source, target)]
    for node in [target, source, *others]:
        cluster_command(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved


def writer(store: Store, settings: SessionSettings, session_id: str, number: int, stop: threading.Event,
           log: WriterLog) -> None:
    """Write own fields and increment the shared counter until stopped; retry what raised."""
    session = Session(store, settings, session_id, RecordingCookie())
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
    settings = topology_settings(redis_cluster.url(), max_fields=100_000)
    store = Store.connect(settings)
    try:
        seed = Session(store, settings, None, RecordingCookie())
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
        stored = Session(store, settings, session_id, RecordingCookie()).load()
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
        store.close()




@dataclass
class CounterLog:
    """What the clients of one session's counter saw: increments acknowledged, the operations
    that failed (and how), and the session ids they ended with."""

    acknowledged: int = 0
    operations: int = 0
    failures: list[str] = field(default_factory=list)
    ids_seen: set = field(default_factory=set)


def count_blocking(store: Store, settings: SessionSettings, session_id: str, stop: threading.Event,
                   log: CounterLog) -> None:
    """Requests of a blocking app: a new session object each time, one read, one increment."""
    while not stop.is_set():
        session = Session(store, settings, session_id, RecordingCookie())
        try:
            log.operations += 1
            session.get("counter")
            log.operations += 1
            session.incr("counter")
            log.acknowledged += 1
        except SessionUnavailableError as error:
            log.failures.append(f"sync: {type(error.cause).__name__}: {error.cause}")
        except Exception as error:  # noqa: BLE001 - reported by the test, not lost in a thread
            log.failures.append(f"sync, unexpected: {type(error).__name__}: {error}")
        log.ids_seen.add(session.session_id)


def count_async(settings: SessionSettings, session_id: str, tasks: int, stop: threading.Event,
                log: CounterLog) -> None:
    """``tasks`` coroutine clients on one AsyncStore (one process of a coroutine app), each
    request a new session object: a read (EXPIRE + HMGET in one cluster pipeline), then an
    increment (EVALSHA). The load comes in bursts: every other quarter second one client runs
    alone, on a pool the burst left with several idle connections to each node."""
    def quiet() -> bool:
        return int(time.monotonic() / 0.25) % 2 == 1

    async def requests(number: int) -> None:
        while not stop.is_set():
            if number and quiet():
                await asyncio.sleep(0.01)
                continue
            session = AsyncSession(store, settings, session_id, RecordingCookie())
            try:
                log.operations += 1
                await session.get("counter")
                log.operations += 1
                await session.incr("counter")
                log.acknowledged += 1
            except SessionUnavailableError as error:
                log.failures.append(f"async: {type(error.cause).__name__}: {error.cause}")
            except Exception as error:  # noqa: BLE001
                log.failures.append(f"async, unexpected: {type(error).__name__}: {error}")
            log.ids_seen.add(session.session_id)

    async def main() -> None:
        nonlocal store
        store = AsyncStore.connect(settings)
        try:
            await asyncio.gather(*(requests(number) for number in range(tasks)))
        finally:
            await store.aclose()

    store: Any = None
    asyncio.run(main())


@pytest.mark.cluster
def test_slot_migrated_key_by_key_under_async_and_blocking_clients_answers_every_request(
    redis_cluster: RedisCluster, record_property: Any
) -> None:
    """The slot of one session moves to another master key by key (one MIGRATE per key: the
    session hash first, then 20 other keys of its slot) while 20 coroutine clients on one
    AsyncStore and 4 blocking threads read and increment one counter in it: every operation
    succeeds (ASK redirects are the client's business, never a 503) and the counter equals the
    increments acknowledged, nothing lost, nothing doubled.

    redis.asyncio's cluster client sent ASKING and the redirected command on different pooled
    connections, so the importing node answered MOVED back, until ``ClusterError: TTL
    exhausted`` (issue 17; see ``redis_session.clients.AsyncClusterClient``)."""
    settings = topology_settings(redis_cluster.url())
    store = Store.connect(settings)
    try:
        seed = Session(store, settings, None, RecordingCookie())
        seed.counter = 0
        session_id = seed.session_id
        assert session_id is not None
        key = session_key(settings.prefix, session_id)
        slot = redis_cluster.keyslot(key)
        for number in range(20):  # other keys of the slot, so that it moves in 21 steps
            store.client.set(f"{{{key}}}:other:{number}", number)
        source = redis_cluster.master_for_slot(slot)
        target = next(node for node in redis_cluster.masters() if node is not source)
        # 21, unless a key another test left happens to share the slot
        keys_in_slot = cluster_command(source, "CLUSTER", "COUNTKEYSINSLOT", slot)
        asking_before = asking_calls(target)

        stop = threading.Event()
        sync_logs, async_log = [CounterLog() for _ in range(4)], CounterLog()  # a log per thread: += is not atomic
        threads = [
            threading.Thread(target=count_blocking, args=(store, settings, session_id, stop, log), daemon=True)
            for log in sync_logs
        ]
        threads.append(threading.Thread(target=count_async, args=(settings, session_id, 20, stop, async_log), daemon=True))
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        # the session moves first: requests meet ASK redirects while the other keys follow
        moved = migrate_slot(redis_cluster, slot, source, target, pause=0.5, batch=1, key_pause=0.05, first=(key,))
        migration = time.monotonic() - started
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads), "a client hung"
        redis_cluster.wait_healthy(10)

        assert redis_cluster.master_for_slot(slot) is target and moved == keys_in_slot >= 21
        sync_log = CounterLog(
            acknowledged=sum(log.acknowledged for log in sync_logs), operations=sum(log.operations for log in sync_logs),
            failures=[failure for log in sync_logs for failure in log.failures],
            ids_seen=set().union(*(log.ids_seen for log in sync_logs)),
        )
        asked = asking_calls(target) - asking_before
        counter = Session(store, settings, session_id, RecordingCookie()).get("counter").int
        acknowledged = sync_log.acknowledged + async_log.acknowledged
        summary = (
            f"slot {slot}: {moved} keys moved one by one in {migration:.2f}s, {asked} ASKING on the target; "
            f"async: {len(async_log.failures)} of {async_log.operations} operations failed, "
            f"{async_log.acknowledged} increments acknowledged; sync: {len(sync_log.failures)} of "
            f"{sync_log.operations} failed, {sync_log.acknowledged} acknowledged; counter {counter}"
        )
        print(summary, sorted(set(async_log.failures + sync_log.failures))[:5])
        record_property("migration-key-by-key", summary)
        assert async_log.failures == [] and sync_log.failures == [], summary
        assert counter == acknowledged, summary
        assert {session_id} == sync_log.ids_seen | async_log.ids_seen, "a client lost its session"
        assert async_log.acknowledged > 200 and sync_log.acknowledged > 50, summary
        assert asked > 0, "no request ever followed an ASK redirect: the migration window was missed"
    finally:
        store.close()


@pytest.mark.cluster
def test_cluster_wait_goes_to_the_master_that_owns_the_session(redis_cluster_with_replicas: RedisCluster) -> None:
    """On a cluster the WAIT after a logout runs on the master owning the session's slot (the
    connection that deleted it), blocking and awaitable; no other master sees a WAIT."""
    cluster = redis_cluster_with_replicas
    cluster.wait_healthy()
    settings = topology_settings(cluster.url(), redis_wait_replicas=1)
    store = Store.connect(settings)
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
        store.close()

    async def main() -> None:
        async_store = AsyncStore.connect(settings)
        try:
            session = AsyncSession(async_store, settings, None, RecordingCookie())
            await session.set("name", "alice")
            key = session_key(settings.prefix, session.session_id or "")
            owner = cluster.master_for_slot(cluster.keyslot(key))
            before = {master.port: wait_calls(master) for master in cluster.masters()}
            await session.destroy()
            after = {master.port: wait_calls(master) for master in cluster.masters()}
            assert after == {port: calls + (port == owner.port) for port, calls in before.items()}
        finally:
            await async_store.aclose()

    asyncio.run(main())




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
            session = Session(hammers.store, hammers.settings, None, RecordingCookie())
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

    def on_owner(session_id: str, name: str) -> int | None:
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


def check_all_unavailable(logs: dict[str, HammerLog], bound: float, label: str, record_property: Any) -> None:
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
    return AsyncStore.connect(settings)


@pytest.mark.cluster
@pytest.mark.parametrize("outage", ["frozen", "stopped"])
def test_a_cluster_with_every_node_unreachable_answers_unavailable_then_recovers(
    redis_cluster_to_stop: RedisCluster, outage: str, record_property: Any
) -> None:
    """Every cluster node frozen or stopped: each sync and asyncio call raises only
    SessionUnavailableError (a 503) within the bound, and the same stores work once the nodes are back."""
    cluster = redis_cluster_to_stop
    settings = topology_settings(cluster.url(), redis_timeout=FAILOVER_TIMEOUT)
    bound = unreachable_cluster_bound(cluster)
    loop = asyncio.new_event_loop()
    store = Store.connect(settings)
    async_store = loop.run_until_complete(opened_async_store(settings))
    logs = {"sync": HammerLog("outage"), "async": HammerLog("outage")}
    try:
        session = Session(store, settings, None, RecordingCookie())
        session.set("name", "alice")
        async_session = AsyncSession(async_store, settings, None, RecordingCookie())
        loop.run_until_complete(async_session.set("name", "bob"))
        session_ids = (session.session_id, async_session.session_id)

        cluster.freeze_all() if outage == "frozen" else cluster.stop_all()
        attempt(logs["sync"], "get", lambda: as_number(session.get("hits").raw))
        attempt(logs["sync"], "set", partial(session.set, "note", 1), 1)
        attempt(logs["sync"], "incr", partial(session.incr, "hits"))

        async def async_calls() -> None:
            async def get() -> int | None:
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
        store.close()
        loop.run_until_complete(async_store.aclose())
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
    (a 503), not a crash, sync and asyncio; once the nodes are back the same application serves sessions."""
    cluster = redis_cluster_to_stop
    settings = topology_settings(cluster.url(), redis_timeout=FAILOVER_TIMEOUT)
    bound = unreachable_cluster_bound(cluster)
    backend = SessionBackend(settings)
    logs = {"sync": HammerLog("first use"), "async": HammerLog("first use")}
    loop = asyncio.new_event_loop()
    stores: list[Any] = []

    def sync_write() -> None:
        store = backend.store  # building the client already needs a node
        stores.append(store)
        Session(store, settings, None, RecordingCookie()).set("name", "alice")

    async def async_write() -> None:
        store = backend.async_store
        stores.append(store)
        await AsyncSession(store, settings, None, RecordingCookie()).set("name", "bob")

    try:
        cluster.stop_all()
        for _ in range(2):  # a failed first use is not cached: the next request tries again
            attempt(logs["sync"], "set", sync_write)
            loop.run_until_complete(attempt_async(logs["async"], "set", async_write))

        cluster.restart_all()
        until_it_works(sync_write)
        loop.run_until_complete(async_until_it_works(async_write))
        assert len({id(store) for store in stores}) == 2, "the application built more than one store per kind"
    finally:
        for store in {id(store): store for store in stores}.values():
            if isinstance(store, AsyncStore):
                loop.run_until_complete(store.aclose())
            else:
                store.close()
        loop.close()
    check_all_unavailable(logs, bound, "cluster-first-use", record_property)

