"""The session over ``redis.asyncio``: every Redis operation is awaited, never blocking the loop.

``AsyncSession`` drives the very same operation generators as the blocking
:class:`~redis_session.session.Session` (:mod:`redis_session.operations`), so the key layout,
encoding, scripts, TTL policy, lazy creation, no-resurrection and limits are shared, not copied,
and sessions written by one are read by the other.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import traceback
from typing import Any, AsyncIterator, Dict, Iterable, List, Mapping, NoReturn, Optional, Tuple, Union
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import pipelines
from .addresses import CLUSTER_SCHEMES, SENTINEL_SCHEMES, NodesAddress, parse_nodes_url
from .errors import SessionTypeError
from .identity import fingerprint
from .operations import CookieSink, Number, Operation, SessionCore, T, categories_of, merge_updates
from .replication import ENDING_SCRIPTS, NO_WAIT, WaitPolicy, sentinel_pool, wait_target
from .scripts import SCRIPTS, SHAS
from .settings import SessionSettings
from .store import (
    ASYNC_MAX_CONNECTIONS,
    MASTER_CHECK_SECONDS,
    STORE_ERRORS,
    Call,
    check_retry,
    describe_url,
    memory_server,
    raise_translated,
    standalone_client,
    store_identity,
)
from .value import Value


class AsyncStore:
    """An asyncio client with the session scripts registered once on it."""

    def __init__(self, url: str, client: Any, wait: WaitPolicy = NO_WAIT) -> None:
        self.url = url
        self.name = describe_url(url)
        self.client = client
        self.wait = wait
        self._sentinel_pool = sentinel_pool(client)
        self._next_master_check = 0.0 if self._sentinel_pool is not None else math.inf

    async def execute(self, call: Call) -> Any:
        """Run one call; the same retry, outage, WAIT and failover rules as the blocking store."""
        if self._next_master_check <= time.monotonic():
            await self.follow_master()
        run = self._end_and_wait if self.wait.replicas and call.script in ENDING_SCRIPTS else self._run_script
        try:
            return await run(call)
        except STORE_ERRORS as error:
            check_retry(self.name, call, error)
        try:
            return await run(call)
        except STORE_ERRORS as error:
            raise_translated(self.name, error)
            raise

    async def _run_script(self, call: Call) -> Any:
        try:
            if call.script in pipelines.PIPELINES:
                return await pipelines.run_async(self.client, call.script, call.key, call.args)
            sha = SHAS[call.script]  # EVALSHA by hand, as the blocking store does
            try:
                return await self.client.evalsha(sha, 1, call.key, *call.args)
            except redis.exceptions.NoScriptError:
                await self.client.script_load(SCRIPTS[call.script])
                return await self.client.evalsha(sha, 1, call.key, *call.args)
        except (AttributeError, TypeError) as error:
            raise_if_dropped_connection(error)
            raise

    async def _end_and_wait(self, call: Call) -> Any:
        """The script, then WAIT, on one connection in one round trip (see Store._end_and_wait)."""
        pipeline = self.client.pipeline(transaction=False)
        pipeline.execute_command("EVAL", SCRIPTS[call.script], 1, call.key, *call.args)  # as the blocking store
        pipeline.execute_command(*self.wait.command(), **wait_target(self.client, call.key))
        reply, acknowledged = await pipeline.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        self.wait.check(self.name, acknowledged)
        return reply

    async def aclose(self) -> None:
        """Close the client's connections (and, behind sentinels, those to the sentinels)."""
        manager = getattr(self._sentinel_pool, "sentinel_manager", None)
        await self.client.aclose()
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()

    async def follow_master(self) -> None:
        """Behind sentinels, move the pool to a new master (see Store.follow_master).

        Unlike the blocking pool, the asyncio pool takes back a busy connection without checking
        where it points, so the ones still talking to the old master are marked to reconnect.
        """
        self._next_master_check = time.monotonic() + MASTER_CHECK_SECONDS
        pool = self._sentinel_pool
        if pool is None:
            return
        try:
            address = await pool.get_master_address()
        except redis.exceptions.RedisError:
            return  # no sentinel answered: the command itself says whether the master still does
        # redis-py keeps no public list of busy connections; without one (or without the marker,
        # in older versions) they move over the next time they are opened again
        for connection in list(getattr(pool, "_in_use_connections", ())):
            mark_for_reconnect = getattr(connection, "mark_for_reconnect", None)
            if mark_for_reconnect is not None and (connection.host, connection.port) != tuple(address):
                mark_for_reconnect()


def raise_if_dropped_connection(error: Exception) -> None:
    """Raise ``ConnectionError`` for an AttributeError/TypeError that redis-py's asyncio
    connection code raised on a connection closed under it; return for any other.

    During a cluster failover redis-py's asyncio client closes "free" connections another task
    has already taken (redis/redis-py#4287), and that task then fails inside redis-py with
    ``'NoneType' object has no attribute 'writelines'``. For the session that is a dropped
    connection (a 503, or one more try for an idempotent call), not a bug in the application.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if frames and f"{os.sep}redis{os.sep}asyncio{os.sep}" in frames[-1].filename:
        raise redis.exceptions.ConnectionError(f"connection closed while in use: {error}") from error


def make_async_client(settings: SessionSettings) -> Any:
    scheme = urlsplit(settings.redis_url).scheme.lower()
    if scheme == "memory":
        import fakeredis  # memory_server() has already told the user how to install it

        return fakeredis.FakeAsyncRedis(server=memory_server(settings.redis_url))
    if scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES:
        return async_nodes_client(parse_nodes_url(settings.redis_url), settings)
    return standalone_client(
        redis.asyncio.Redis, redis.asyncio.BlockingConnectionPool, Retry, settings,
        max_connections=ASYNC_MAX_CONNECTIONS, timeout=settings.redis_timeout,
    )


def async_nodes_client(address: NodesAddress, settings: SessionSettings) -> Any:
    """redis-py's asyncio Cluster or Sentinel client."""
    timeouts = {"socket_timeout": settings.redis_timeout, "socket_connect_timeout": settings.redis_timeout}
    if address.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
            retry=Retry(NoBackoff(), 0),
            **timeouts, **address.connection_options(),  # type: ignore[arg-type]
        )
    from redis.asyncio.sentinel import Sentinel

    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(address.nodes), sentinel_kwargs={**timeouts, **address.sentinel_options()}, **timeouts
    )
    return sentinel.master_for(
        address.service_name, db=address.db, retry=Retry(NoBackoff(), 0), **address.connection_options()
    )


class AsyncStoreRegistry:
    """One asyncio store per URL, timeout and WAIT policy *per event loop*: an asyncio
    connection belongs to the loop that opened it, so a pool cannot be shared between loops.

    Entries of loops that have been closed are dropped when a new loop first asks for a store
    (their connections died with the loop). :meth:`aclose` closes the running loop's stores
    cleanly, for code that makes and ends loops repeatedly (tests with a loop per test).
    """

    def __init__(self) -> None:
        self._stores: Dict[asyncio.AbstractEventLoop, Dict[Tuple[str, float, WaitPolicy], AsyncStore]] = {}
        self._lock = threading.Lock()

    def store_for(self, settings: SessionSettings) -> AsyncStore:
        loop = asyncio.get_running_loop()
        key = store_identity(settings)
        with self._lock:
            per_loop = self._stores.get(loop)
            if per_loop is None:
                for old_loop in [old_loop for old_loop in self._stores if old_loop.is_closed()]:
                    del self._stores[old_loop]
                per_loop = self._stores[loop] = {}
            store = per_loop.get(key)
            if store is None:
                store = per_loop[key] = AsyncStore(settings.redis_url, make_async_client(settings), WaitPolicy.of(settings))
        return store

    async def aclose(self) -> None:
        """Close every store (connection pool) the running loop opened; later use opens new ones."""
        with self._lock:
            per_loop = self._stores.pop(asyncio.get_running_loop(), {})
        for store in per_loop.values():
            await store.aclose()


#: Shared by the web integrations, like :data:`redis_session.store.stores`.
async_stores = AsyncStoreRegistry()


class AsyncSession:
    """The session API with every Redis operation awaitable.

    ``await session.count`` reads a field (``await session.get("count")`` says the same);
    writes are ``await session.set(...)``: plain attribute assignment cannot be awaited, so it
    raises a ``TypeError`` instead of silently doing nothing.
    """

    __slots__ = ("_core", "_store", "_lock")
    _core: SessionCore
    _store: AsyncStore
    _lock: asyncio.Lock

    def __init__(self, store: AsyncStore, settings: SessionSettings, session_id: Optional[str], cookie: CookieSink) -> None:
        object.__setattr__(self, "_store", store)
        object.__setattr__(self, "_core", SessionCore(settings, session_id, cookie))
        object.__setattr__(self, "_lock", asyncio.Lock())

    async def _run(self, operation: Operation[T]) -> T:
        # One operation at a time: operations share the session's id, and two that ran
        # interleaved (asyncio.gather on a new session) would each mint a session of their own.
        # An uncontended lock costs no trip through the loop.
        async with self._lock:
            execute = self._store.execute
            try:
                call = next(operation)
                while True:
                    call = operation.send(await execute(call))
            except StopIteration as done:
                result: T = done.value
                return result

    @property
    def session_id(self) -> Optional[str]:
        """The current id, or ``None`` until the first write creates the session."""
        return self._core.session_id

    async def get(self, name: str) -> Value:
        return (await self._run(self._core.read((name,))))[0]

    async def get_many(self, *names: str) -> List[Value]:
        return await self._run(self._core.read(names))

    async def load(self) -> Dict[str, Value]:
        return await self._run(self._core.read_all())

    async def keys(self) -> List[str]:
        return await self._run(self._core.names())

    async def contains(self, name: str) -> bool:
        return not (await self.get(name)).none

    async def length(self) -> int:
        return len(await self.keys())

    async def set(self, name: str, value: Any) -> None:
        await self._run(self._core.write(((name, value),)))

    async def update(self, mapping: Optional[Mapping[str, Any]] = None, **fields: Any) -> None:
        await self._run(self._core.write(merge_updates(mapping, fields)))

    async def delete(self, *names: str) -> None:
        await self._run(self._core.write([(name, None) for name in names]))

    async def incr(self, name: str, amount: Number = 1) -> Number:
        return await self._run(self._core.incr(name, amount))

    async def clear(self) -> None:
        await self._run(self._core.write((), clear=True))

    async def destroy(self) -> None:
        await self._run(self._core.destroy())

    async def regenerate(self) -> None:
        await self._run(self._core.regenerate())

    async def bind_user(self, user_id: str) -> None:
        await self._run(self._core.regenerate(str(user_id)))

    async def user_id(self) -> Optional[str]:
        return await self._run(self._core.user_id())

    async def flash(self, message: str, category: str = "message") -> None:
        await self._run(self._core.flash(message, category))

    async def flashes(self, category: Union[str, Iterable[str], None] = None) -> List[Tuple[str, str]]:
        return await self._run(self._core.flashes(categories_of(category)))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise SessionTypeError(
            f"an async session cannot be written by assignment; use await self.session.set({name!r}, value)"
        )

    def __setitem__(self, name: str, value: Any) -> None:
        raise SessionTypeError(
            f"an async session cannot be written by assignment; use await self.session.set({name!r}, value)"
        )

    def __delattr__(self, name: str) -> None:
        raise SessionTypeError(f"an async session cannot be changed by del; use await self.session.delete({name!r})")

    def __delitem__(self, name: str) -> None:
        raise SessionTypeError(f"an async session cannot be changed by del; use await self.session.delete({name!r})")

    # ``in``, ``len()`` and iteration cannot await. Without these, Python would fall back to
    # calling __getitem__(0), (1), ... for ever, each returning an unawaited coroutine, and the
    # handler would spin on the event loop.
    def __contains__(self, name: object) -> bool:
        raise SessionTypeError(f"'in' cannot await on an async session; use await self.session.contains({name!r})")

    def __iter__(self) -> NoReturn:
        raise SessionTypeError(
            "an async session cannot be iterated without awaiting; use "
            "'for name in await self.session.keys()' or 'async for name in self.session'"
        )

    def __len__(self) -> NoReturn:
        raise SessionTypeError("len() cannot await on an async session; use await self.session.length()")

    def __bool__(self) -> bool:
        # Without this, ``if self.session:`` would call __len__.
        return True

    async def __aiter__(self) -> AsyncIterator[str]:
        for name in await self.keys():
            yield name

    def __repr__(self) -> str:
        session_id = self._core.session_id
        state = "new" if session_id is None else "fingerprint " + fingerprint(session_id)
        return f"<AsyncSession {state} in {self._store.name}>"
