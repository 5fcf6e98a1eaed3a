"""Behind sentinels: the database in the URL, WAIT after a logout (``redis-wait-replicas``), and
failovers (SENTINEL FAILOVER, a killed master) that give each call a success or
``SessionUnavailableError`` within its bound, after which a warm store follows the new master.
The outage windows seen are printed (``-s``) and recorded as user properties."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from redis_session.admin import SessionAdmin
from redis_session.aio import AsyncSession
from redis_session.async_store import AsyncStore
from redis_session.errors import SessionUnavailableError
from redis_session.protocol import session_handle, session_key
from redis_session.session import Session
from redis_session.store import Store
from redis_session.store_rules import MASTER_CHECK_SECONDS, REPLICA_COOL_DOWN_SECONDS
from tests import redis_topologies
from tests.redis_topologies import SentinelSetup
from tests.support import (
    FAILOVER_TIMEOUT,
    Hammers,
    RecordingCookie,
    caught_up,
    hits_on,
    holds,
    new_session,
    replicated,
    sentinel_seeds,
    topology_settings,
    wait_calls,
)

# The topology fixtures this module uses (see tests/redis_topologies.py).
sentinel_setup = redis_topologies.sentinel_setup
sentinel_setup_to_kill = redis_topologies.sentinel_setup_to_kill



@pytest.mark.sentinel
def test_sentinel_url_database_is_used(sentinel_setup: SentinelSetup) -> None:
    """redis+sentinel://.../mymaster/3 keeps the sessions in database 3 of the master."""
    sentinel_setup.wait_healthy()
    settings = topology_settings(sentinel_setup.url(db=3))
    store = Store.connect(settings)
    try:
        session = Session(store, settings, None, RecordingCookie())
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
        store.close()




@pytest.mark.sentinel
def test_destroy_returns_only_once_the_replica_dropped_the_session(sentinel_setup: SentinelSetup) -> None:
    """With redis-wait-replicas=1, destroy() and regenerate() return only once the replica no
    longer has the ended key, even when the replica is late; each sends one WAIT."""
    sentinel_setup.wait_healthy()
    settings = topology_settings(sentinel_setup.url(), redis_wait_replicas=1, redis_wait_timeout=1.5)
    master, replica = sentinel_setup.master(), sentinel_setup.replicas()[0]
    store = Store.connect(settings)
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
        store.close()


@pytest.mark.sentinel
def test_without_wait_replicas_no_wait_is_sent(sentinel_setup: SentinelSetup) -> None:
    """With redis-wait-replicas=0 (the default) logouts, regenerate, bind_user and the admin's
    deletes send no WAIT at all."""
    sentinel_setup.wait_healthy()
    settings = topology_settings(sentinel_setup.url())
    assert settings.redis_wait_replicas == 0
    master = sentinel_setup.master()
    store = Store.connect(settings)
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
        store.close()


@pytest.mark.sentinel
def test_too_few_replicas_log_a_warning_and_the_logout_still_succeeds(
    sentinel_setup: SentinelSetup, caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting for 2 replicas with only 1: destroy() returns after the wait timeout, the session
    is gone, and one warning names the acknowledgements and the setting."""
    sentinel_setup.wait_healthy()
    settings = topology_settings(sentinel_setup.url(), redis_wait_replicas=2, redis_wait_timeout=0.2)
    store = Store.connect(settings)
    try:
        session = new_session(store, settings)
        session_id = session.session_id or ""
        with caplog.at_level("WARNING", logger="redis_session"):
            started = time.monotonic()
            session.destroy()
            waited = time.monotonic() - started
        assert session.session_id is None and waited >= 0.15
        assert Session(store, settings, session_id, RecordingCookie()).name.none
        assert not holds(sentinel_setup.master(), session_key(settings.prefix, session_id))
        warnings = [record.getMessage() for record in caplog.records if record.name == "redis_session"]
        assert len(warnings) == 1, warnings
        assert "1 of 2 replicas" in warnings[0] and "session-redis-wait-replicas" in warnings[0]
        assert session_id not in warnings[0]
    finally:
        store.close()


@pytest.mark.sentinel
def test_a_missing_replica_costs_one_wait_timeout_then_a_cool_down(
    sentinel_setup: SentinelSetup, caplog: pytest.LogCaptureFixture
) -> None:
    """With the replica frozen, the first logout waits out the WAIT timeout and starts a cool-down
    (one warning): the next logouts return at once (unreplicated, counted) and durable writes
    answer 503 at once, instead of each blocking for the timeout. After the cool-down, with the
    replica back, WAIT is used again and one line reports what the cool-down cost."""
    sentinel_setup.wait_healthy()
    timeout = 0.4
    settings = topology_settings(sentinel_setup.url(), redis_wait_replicas=1, redis_wait_timeout=timeout,
                                 redis_durable_writes=True)
    store = Store.connect(settings)
    replica = sentinel_setup.replicas()[0]
    try:
        sessions = [new_session(store, settings) for _ in range(6)]
        with caplog.at_level("WARNING", logger="redis_session"):
            replica.pause()
            try:
                started = time.monotonic()
                sessions[0].destroy()
                first = time.monotonic() - started
                started = time.monotonic()
                for session in sessions[1:4]:
                    session.destroy()
                rest = time.monotonic() - started
                started = time.monotonic()
                with pytest.raises(SessionUnavailableError, match="durable writes are refused"):
                    sessions[4].note = "not confirmed"
                refused_after = time.monotonic() - started
            finally:
                replica.resume()
            assert first >= timeout * 0.9
            assert rest < timeout and refused_after < timeout
            assert all(session.session_id is None for session in sessions[:4])
            warnings = [record.getMessage() for record in caplog.records if record.name == "redis_session"]
            assert len(warnings) == 1 and "0 of 1 replicas" in warnings[0], warnings
            time.sleep(REPLICA_COOL_DOWN_SECONDS)
            sessions[5].note = "confirmed"  # the replica is back: the write waits and succeeds
        warnings = [record.getMessage() for record in caplog.records if record.name == "redis_session"]
        assert len(warnings) == 2
        assert "3 logout(s) went unreplicated" in warnings[1] and "1 durable write(s) answered 503" in warnings[1]
    finally:
        store.close()


@pytest.mark.sentinel
def test_admin_deletes_wait_for_the_replica(sentinel_setup: SentinelSetup) -> None:
    """SessionAdmin.delete/revoke_user and ``redis-session delete`` with
    --session-redis-wait-replicas=1 return once the replica no longer has the sessions."""
    from redis_session.__main__ import run

    sentinel_setup.wait_healthy()
    settings = topology_settings(sentinel_setup.url(), redis_wait_replicas=1)
    master, replica = sentinel_setup.master(), sentinel_setup.replicas()[0]
    store = Store.connect(settings)
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
        assert run([*flags, "delete", session_handle(by_command.session_id or "")], out=io.StringIO(), err=io.StringIO()) == 0
        assert not holds(replica, key) and wait_calls(master) == before + 1
    finally:
        store.close()


@pytest.mark.sentinel
def test_async_destroy_waits_for_the_replica(sentinel_setup: SentinelSetup) -> None:
    """The awaitable destroy() sends the same one WAIT and returns once the replica has it."""
    sentinel_setup.wait_healthy()
    settings = topology_settings(sentinel_setup.url(), redis_wait_replicas=1)
    master, replica = sentinel_setup.master(), sentinel_setup.replicas()[0]

    async def main() -> None:
        store = AsyncStore.connect(settings)
        try:
            session = AsyncSession(store, settings, None, RecordingCookie())
            await session.set("name", "alice")
            key = session_key(settings.prefix, session.session_id or "")
            replicated(replica, key)
            before = wait_calls(master)
            await session.destroy()
            assert not holds(replica, key) and wait_calls(master) == before + 1
        finally:
            await store.aclose()

    asyncio.run(main())




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
@pytest.mark.parametrize("durable", [False, True], ids=["durable-writes-off", "durable-writes-on"])
def test_durable_writes_lose_no_acknowledged_increment_in_a_failover(
    sentinel_setup: SentinelSetup, record_property: Any, durable: bool
) -> None:
    """SENTINEL FAILOVER under load, counting acknowledged increments the new master does not
    hold. With --session-redis-durable-writes every write waits for the replica, so none is lost
    (an increment the replica did not confirm answered 503 instead); without it the count is
    printed (asynchronous replication loses what the old master acknowledged last)."""
    sentinel_setup.wait_healthy()
    hammers = Hammers(sentinel_setup.url(), redis_wait_replicas=1, redis_wait_timeout=0.3, redis_durable_writes=durable)
    try:
        hammers.start(sentinel_seeds(hammers))
        time.sleep(0.5)
        fault = time.monotonic()
        sentinel_setup.failover()
        sentinel_setup.wait_healthy()
        recovered = time.monotonic()
        hammers.wait_for_successes(recovered)
        time.sleep(0.3)
    finally:
        hammers.finish()
    label = "durable-failover" if durable else "async-replication-failover"
    hammers.check(fault, recovered, label, record_property,
                  lambda session_id, name: hits_on(sentinel_setup.master(), hammers.settings, session_id, name))
    assert hammers.lost, "no incr hammer kept its session through the failover"
    if durable:
        assert max(hammers.lost.values()) <= 0, f"acknowledged increments lost with durable writes: {hammers.lost}"


@pytest.mark.sentinel
def test_writes_after_a_sentinel_failover_reach_the_new_master(sentinel_setup: SentinelSetup) -> None:
    """Once every sentinel names the new master (and the store's once-a-second master check is
    due), an acknowledged write is on the new master, not on the old one still taking writes."""
    sentinel_setup.wait_healthy()
    settings = topology_settings(sentinel_setup.url(), redis_timeout=FAILOVER_TIMEOUT)
    store = Store.connect(settings)
    try:
        session = Session(store, settings, None, RecordingCookie())
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
        store.close()
        sentinel_setup.wait_healthy()


@pytest.mark.sentinel
def test_async_writes_after_a_sentinel_failover_reach_the_new_master(sentinel_setup: SentinelSetup) -> None:
    """The awaitable store follows the failover too: the next acknowledged write is on the new master."""
    sentinel_setup.wait_healthy()
    settings = topology_settings(sentinel_setup.url(), redis_timeout=FAILOVER_TIMEOUT)

    async def main() -> tuple[int | None, str, Any, Any]:
        store = AsyncStore.connect(settings)
        try:
            session = AsyncSession(store, settings, None, RecordingCookie())
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
            await store.aclose()

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


