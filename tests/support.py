"""Helpers the tests share: cookie sinks, stores a test opens and closes, settings of a test app,
and the load ("hammers") the topology tests drive through a fault.

Fixtures live in conftest.py; everything here is plain code a test may import.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from redis_session.aio import AsyncSession
from redis_session.async_store import AsyncStore
from redis_session.clients import memory_server
from redis_session.errors import SessionUnavailableError
from redis_session.protocol import session_key
from redis_session.session import Session
from redis_session.settings import SessionSettings
from redis_session.store import Store
from tests.redis_topologies import SentinelSetup

COOKIE_SECRET = "test-secret-" + "x" * 32


class RecordingCookie:
    """A cookie sink that remembers what the session asked the web layer to do."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

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
        self._stores: dict[SessionSettings, Store] = {}

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


def app_settings(store_url: str, prefix: str, **overrides: Any) -> dict[str, Any]:
    """The ``redis_session`` Application setting tests use: their store, their prefix, no Secure."""
    values: dict[str, Any] = {"redis": store_url, "redis-prefix": prefix, "cookie-secure": False}
    values.update(overrides)
    return values


def make_settings(store_url: str, prefix: str, **changes: Any) -> SessionSettings:
    """Settings on a test's store and prefix, without the Secure cookie attribute."""
    return SessionSettings(redis_url=store_url, prefix=prefix, cookie_secure=False).replace(**changes)


# -- Redis Cluster and Sentinel topologies ------------------------------------------------------

FAILOVER_TIMEOUT = 0.5  # redis_timeout of the stores hammered through failovers
# "never a hang": one attempt may wait for a connect and a reply; allow scheduling slack on 2 cores
CALL_BOUND = 2 * FAILOVER_TIMEOUT + 0.5
# reads and plain writes are sent once more after a dropped connection: two attempts
RETRIED_CALL_BOUND = 2 * (2 * FAILOVER_TIMEOUT) + 0.5


def keyslot(client: Any, key: str) -> int:
    """The cluster slot of ``key``, as the cluster computes it."""
    return int(client.execute_command("CLUSTER KEYSLOT", key))


def new_prefix() -> str:
    """A key prefix no other test uses, so tests never need to flush anything."""
    return f"s{uuid.uuid4().hex[:12]}"


def topology_settings(url: str, **changes: Any) -> SessionSettings:
    """Settings on a spawned topology's URL, under a prefix of their own."""
    return SessionSettings(redis_url=url, prefix=new_prefix(), cookie_secure=False).replace(**changes)

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
    session = Session(store, settings, None, RecordingCookie())
    session.name = name
    assert session.session_id is not None
    return session




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
    value: int | None = None  # what incr returned, the number set wrote, or what get read


@dataclass
class HammerLog:
    kind: str
    records: list[CallRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    final_session_id: str | None = None
    first_traceback: str | None = None  # of the first unexpected exception, for the report

    def add(self, started: float, operation: str, outcome: str, value: Any = None) -> None:
        with self.lock:
            self.records.append(CallRecord(started, time.monotonic() - started, operation, outcome, value))

    def unexpected(self, started: float, operation: str, error: BaseException) -> None:
        with self.lock:
            if self.first_traceback is None:
                self.first_traceback = "".join(traceback.format_exception(type(error), error, error.__traceback__)[-12:])
        self.add(started, operation, f"{type(error).__name__}: {error}")

    def snapshot(self) -> list[CallRecord]:
        with self.lock:
            return list(self.records)


def as_number(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


def attempt(log: HammerLog, operation: str, call: Callable[[], Any], written: int | None = None) -> None:
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


async def attempt_async(log: HammerLog, operation: str, call: Callable[[], Any], written: int | None = None) -> None:
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
    session = Session(store, settings, session_id, RecordingCookie())
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


def hammer_async(settings: SessionSettings, session_ids: dict[str, str], stop: threading.Event,
                 logs: dict[str, HammerLog]) -> None:
    """One event loop running a task per log, all on one AsyncStore (as one process of an app)."""
    async def hammer(store: AsyncStore, session_id: str, log: HammerLog) -> None:
        session = AsyncSession(store, settings, session_id, RecordingCookie())

        async def get() -> int | None:
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
        store = AsyncStore.connect(settings)
        try:
            await asyncio.gather(*(hammer(store, session_ids[name], log) for name, log in logs.items()))
        finally:
            await store.aclose()

    try:
        asyncio.run(main())
    except Exception as error:  # noqa: BLE001
        for log in logs.values():
            log.add(time.monotonic(), "loop", f"hammer crashed: {type(error).__name__}: {error}")


class Hammers:
    """Blocking threads and one asyncio thread, each hammering its own session through the same
    long-lived store objects (no restart, no new client) with ``incr`` and with ``set``/``get``,
    recording every call."""

    def __init__(self, url: str, **settings: Any) -> None:
        self.settings = topology_settings(url, redis_timeout=FAILOVER_TIMEOUT, **settings)
        #: Per incr hammer, after check(): acknowledged increments the store no longer holds
        #: (negative: increments it holds that were answered 503, which is allowed).
        self.lost: dict[str, int] = {}
        self.store = Store.connect(self.settings)
        self.stop = threading.Event()
        self.logs = {f"{mode} {kind}": HammerLog(kind) for mode in ("sync", "async") for kind in HAMMER_KINDS}
        self.threads: list[threading.Thread] = []
        self.session_ids: dict[str, str] = {}

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
        self.store.close()

    def check(self, fault_started: float, recovered: float, label: str, record_property: Any,
              stored: Callable[[str, str], int | None]) -> dict[str, float]:
        """Only successes or SessionUnavailableError, each within its CALL_BOUNDS; successes again
        after recovery, where a get reads what the set before it wrote, and the last write of each
        hammer is on the current master (``stored(session_id, field)`` reads it there).
        Returns the outage window of each hammer: first failure to the next success after the
        last failure."""
        assert not any(thread.is_alive() for thread in self.threads), "a hammer hung"
        windows: dict[str, float] = {}
        for name, log in self.logs.items():
            records = log.snapshot()
            unexpected = sorted({f"{record.operation}: {record.outcome}" for record in records
                                 if record.outcome not in ("ok", "unavailable")})
            assert unexpected == [], f"{label} ({name}): {unexpected}; the first:\n{log.first_traceback}"
            slowest: dict[str, float] = {}
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
                if lost is not None:
                    self.lost[name] = lost
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


def hits_on(server: Any, settings: SessionSettings, session_id: str, name: str = "hits") -> int | None:
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
        session = Session(hammers.store, hammers.settings, None, RecordingCookie())
        session.incr("hits")
        assert session.session_id is not None
        return session.session_id
    return seed


