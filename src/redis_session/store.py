"""Connections to the session store, shared per process, and the one place Redis errors are
translated into :class:`~redis_session.errors.SessionUnavailableError`.

A store is a Redis client (with its connection pool) plus the session scripts registered on it.
Building a client per request would open a connection per request and re-upload scripts, so
:class:`StoreRegistry` keeps one client per (URL, timeout, WAIT policy) for the life of the
process; settings themselves are never cached here. Behind sentinels a store also follows
failovers (:meth:`Store.follow_master`).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Dict, NamedTuple, Tuple, Type
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import pipelines
from .addresses import CLUSTER_SCHEMES, SENTINEL_SCHEMES, NodesAddress, parse_nodes_url
from .errors import ConfigurationError, SessionUnavailableError
from .replication import ENDING_SCRIPTS, NO_WAIT, WaitPolicy, sentinel_pool, wait_target
from .scripts import SCRIPTS, SHAS
from .settings import SessionSettings

# Errors that mean "the store cannot serve now; try later" rather than "the code is wrong".
UNAVAILABLE_ERRORS: Tuple[type, ...] = (
    redis.exceptions.ConnectionError,  # includes refused/reset and AuthenticationError subclasses
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ClusterError,  # e.g. "TTL exhausted" while a cluster reshapes itself
    redis.exceptions.OutOfMemoryError,  # maxmemory reached: the store cannot take writes now
)
# MISCONF: Redis refuses writes because it cannot save its snapshot (a full disk, say).
_ORIGINAL_UNAVAILABLE_MESSAGES = ("MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "NOREPLICAS", "BUSY ", "MISCONF")
#: What a store call can raise. redis-py's cluster client reports an unreachable cluster with
#: RedisClusterException, which is not a RedisError, so both must be caught everywhere.
STORE_ERRORS: Tuple[Type[Exception], ...] = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
# RedisClusterException messages (and causes) that mean "no node answers", not a usage error.
_UNREACHABLE_CLUSTER_MESSAGES = (
    "Redis Cluster cannot be connected", "All slots are not covered", "startup_nodes could not agree",
)
#: How often a sentinel store asks the sentinels who the master is (see Store.follow_master).
MASTER_CHECK_SECONDS = 1.0


class Call(NamedTuple):
    """One script invocation: what the session core asks a store to run."""

    script: str
    key: str
    args: Tuple[Any, ...]
    #: Safe to send twice: a read or an absolute write. incr is not, so it is never retried.
    idempotent: bool


def session_key(prefix: str, session_id: str) -> str:
    """The Redis key of a session; the layout redis-session 0.2.1 used, so sessions carry over."""
    return f"{prefix}:sessions:{session_id}"


def user_index_key(prefix: str, user_id: str) -> str:
    """The sorted set of one user's session ids (a key of its own: see ``bind_user``)."""
    return f"{prefix}:users:{user_id}"


def is_unavailable(error: BaseException) -> bool:
    """Whether a Redis error means the store is down or failing over (answer 503, retry later)."""
    if isinstance(error, UNAVAILABLE_ERRORS):
        return True
    if isinstance(error, redis.exceptions.RedisClusterException):
        return isinstance(error, redis.exceptions.SlotNotCoveredError) or str(error).startswith(
            _UNREACHABLE_CLUSTER_MESSAGES
        ) or isinstance(error.__cause__, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))
    return isinstance(error, redis.exceptions.ResponseError) and str(error).startswith(
        _ORIGINAL_UNAVAILABLE_MESSAGES
    )


def describe_url(url: str) -> str:
    """The store URL without any password, for messages and logs.

    Split by :func:`redis_session.addresses.split_url`, the rule the URL parsers use, so that the
    name never shows a part of the URL that a parser reads as a password.
    """
    from .addresses import describe_url as describe  # the one splitting rule lives there

    return describe(url)


class Store:
    """A client with the session scripts registered once on it.

    ``stall_pause``: after a call times out, further calls fail at once (503) for this many
    seconds instead of each waiting out its own timeout. A blocking handler holds the IOLoop
    while it waits, so without the pause requests queued behind a stalled Redis would wait one
    timeout each, in turn (the tenth ten timeouts). The next call after the pause asks Redis again.
    """

    def __init__(self, url: str, client: Any, wait: WaitPolicy = NO_WAIT, stall_pause: float = 0.0) -> None:
        self.url = url
        self.name = describe_url(url)
        self.client = client
        self.wait = wait
        self.stall_pause = stall_pause
        self._quiet_until = 0.0
        self._sentinel_pool = sentinel_pool(client)
        # math.inf: stores that are not behind sentinels never check (one float compare per call)
        self._next_master_check = 0.0 if self._sentinel_pool is not None else math.inf

    def execute(self, call: Call) -> Any:
        """Run one call; store faults become :class:`SessionUnavailableError`."""
        now = time.monotonic()
        if now < self._quiet_until:
            raise SessionUnavailableError(self.name, redis.exceptions.TimeoutError(
                f"no reply within the timeout a moment ago; not asked again for {self.stall_pause:g} s"
            ))
        if self._next_master_check <= now:
            self.follow_master()
        run = self._end_and_wait if self.wait.replicas and call.script in ENDING_SCRIPTS else self._run_script
        try:
            return run(call)
        except STORE_ERRORS as error:
            self._note_stall(error)
            check_retry(self.name, call, error)
        try:
            return run(call)
        except STORE_ERRORS as error:
            self._note_stall(error)
            raise_translated(self.name, error)
            raise

    def _note_stall(self, error: Exception) -> None:
        if self.stall_pause and isinstance(error, redis.exceptions.TimeoutError):
            self._quiet_until = time.monotonic() + self.stall_pause

    def _run_script(self, call: Call) -> Any:
        if call.script in pipelines.PIPELINES:
            return pipelines.run(self.client, call.script, call.key, call.args)
        # EVALSHA by hand, not through redis-py's Script objects: the same command, with a third
        # less client work per call (measured with callgrind on the counter page)
        sha = SHAS[call.script]
        try:
            return self.client.evalsha(sha, 1, call.key, *call.args)
        except redis.exceptions.NoScriptError:
            # Redis restarted, failed over or dropped its script cache; the script did not run
            self.client.script_load(SCRIPTS[call.script])
            return self.client.evalsha(sha, 1, call.key, *call.args)

    def _end_and_wait(self, call: Call) -> Any:
        """The script, then WAIT, on one connection in one round trip (a plain pipeline)."""
        pipeline = self.client.pipeline(transaction=False)
        # EVAL by hand: a cluster pipeline refuses .eval(), and a script registered on a pipeline
        # costs a SCRIPT EXISTS round trip first. Sessions end rarely; the source is small.
        pipeline.execute_command("EVAL", SCRIPTS[call.script], 1, call.key, *call.args)
        pipeline.execute_command(*self.wait.command(), **wait_target(self.client, call.key))
        reply, acknowledged = pipeline.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        self.wait.check(self.name, acknowledged)
        return reply

    def delete(self, key: str) -> int:
        """``DEL key`` (followed by WAIT under redis-wait-replicas), for code outside the scripts."""
        self.follow_master_when_due()
        if not self.wait.replicas:
            return int(self.client.delete(key))
        pipeline = self.client.pipeline(transaction=False)
        pipeline.delete(key)
        pipeline.execute_command(*self.wait.command(), **wait_target(self.client, key))
        deleted, acknowledged = pipeline.execute(raise_on_error=False)
        if isinstance(deleted, Exception):
            raise deleted
        self.wait.check(self.name, acknowledged)
        return int(deleted)

    def follow_master_when_due(self) -> None:
        """:meth:`follow_master` if the last check is MASTER_CHECK_SECONDS old (for direct client use)."""
        if self._next_master_check <= time.monotonic():
            self.follow_master()

    def follow_master(self) -> None:
        """Behind sentinels, move the pool to the current master if a failover named a new one.

        redis-py asks the sentinels only when it opens a connection, so pooled connections would
        keep writing to the old master (which accepts writes until the sentinels demote it, then
        drops them when it resyncs). Asking at most every MASTER_CHECK_SECONDS bounds that window
        at the cost of one sentinel round trip per second. When the address changed, redis-py's
        ``get_master_address`` closes the idle connections and the pool closes the busy ones when
        they come back, so every later command opens a connection to the new master. READONLY and
        dropped connections need nothing here: redis-py closes such a connection, and reopening
        it asks the sentinels.
        """
        self._next_master_check = time.monotonic() + MASTER_CHECK_SECONDS
        if self._sentinel_pool is None:
            return
        try:
            self._sentinel_pool.get_master_address()
        except redis.exceptions.RedisError:
            # No sentinel answered: keep the pool as it is; the command itself says whether the
            # master still answers.
            pass


def check_retry(store_name: str, call: Call, error: Exception) -> None:
    """Return if ``call`` may be sent once more after ``error``; raise otherwise.

    Retries are off in the client (a timed-out incr may have been applied, and sending it again
    would count twice). An idempotent call is sent once more after a dropped connection, which
    covers a pooled connection that died while Redis restarted; never after a timeout, so a
    stalled Redis costs one timeout, not two.
    """
    if call.idempotent and type(error) is redis.exceptions.ConnectionError:
        return
    raise_translated(store_name, error)
    raise error


def raise_translated(store_name: str, error: Exception) -> None:
    """Raise :class:`SessionUnavailableError` for an outage; return for anything else."""
    if is_unavailable(error):
        raise SessionUnavailableError(store_name, error) from None


def connect(settings: SessionSettings) -> Store:
    """A new store for ``settings.redis_url``. Most code wants :meth:`StoreRegistry.store_for`.

    :raises SessionUnavailableError: when building the client already needs the store and it
        does not answer (redis-py's cluster client reads the slot map when it is created).
    """
    try:
        client = make_client(settings)
    except STORE_ERRORS as error:
        raise_translated(describe_url(settings.redis_url), error)
        raise
    return Store(settings.redis_url, client, WaitPolicy.of(settings), stall_pause=settings.redis_timeout)


#: Connections one event loop may open to one standalone Redis (redis-py's own default), unless
#: the URL says ``?max_connections=N``.
ASYNC_MAX_CONNECTIONS = 100
#: A blocking client holds a connection only while its thread waits for Redis, so the threads
#: bound its connections: no cap of its own, unless the URL sets one.
BLOCKING_MAX_CONNECTIONS = 2**31


def standalone_client(client_class: Any, pool_class: Any, retry_class: Any, settings: SessionSettings, **pool_options: Any) -> Any:
    """A client for one Redis server: bounded waits, no hidden retries.

    A blocking client gets redis-py's plain pool with no practical cap: a thread past redis-py's
    default of 100 would fail at once with "Too many connections" (a 503 under a burst of Flask
    threads), and a blocking pool would cost a lock and a condition per round trip. Coroutines are
    not bounded by threads, so the asyncio client gets a blocking pool of 100: a request past that
    waits for a free connection, up to the Redis timeout, instead of failing at once.
    """
    try:
        pool = pool_class.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            retry=retry_class(NoBackoff(), 0),
            health_check_interval=30,
            **pool_options,
        )
    except ValueError as error:
        raise ConfigurationError(f"session-redis: {describe_url(settings.redis_url)!r}: {error}") from None
    client = client_class(connection_pool=pool)
    client.auto_close_connection_pool = True  # as from_url() does: closing the client closes its pool
    return client


def make_client(settings: SessionSettings) -> Any:
    """A redis-py (or fakeredis) client configured for sessions: bounded waits, no hidden retries."""
    scheme = urlsplit(settings.redis_url).scheme.lower()
    if scheme == "memory":
        return memory_client(settings.redis_url)
    if scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES:
        return nodes_client(parse_nodes_url(settings.redis_url), settings)
    return standalone_client(redis.Redis, redis.ConnectionPool, Retry, settings, max_connections=BLOCKING_MAX_CONNECTIONS)


_memory_servers: Dict[str, Any] = {}
_memory_lock = threading.Lock()


def nodes_client(address: NodesAddress, settings: SessionSettings) -> Any:
    """redis-py's own Cluster or Sentinel client: no home-made routing or failover logic."""
    timeouts = {"socket_timeout": settings.redis_timeout, "socket_connect_timeout": settings.redis_timeout}
    if address.kind == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],  # type: ignore[no-untyped-call]
            retry=Retry(NoBackoff(), 0),
            **timeouts, **address.connection_options(),  # type: ignore[arg-type]
        )
    from redis.sentinel import Sentinel

    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(address.nodes), sentinel_kwargs={**timeouts, **address.sentinel_options()}, **timeouts
    )
    return sentinel.master_for(  # type: ignore[no-untyped-call]
        address.service_name, db=address.db, retry=Retry(NoBackoff(), 0), **address.connection_options()
    )


def memory_client(url: str) -> Any:
    """A fakeredis client on the in-process server named by the URL (``memory://`` or ``memory://name``).

    Every client for the same name shares one server, so two Applications in one process see the
    same sessions, as they would on one Redis. Data lives only as long as the process.
    """
    server = memory_server(url)  # raises a ConfigurationError saying how to install fakeredis
    import fakeredis

    return fakeredis.FakeRedis(server=server)


def memory_server(url: str) -> Any:
    """The process's in-memory server for ``url``; sync and asyncio clients share it."""
    try:
        import fakeredis
    except ImportError:
        raise ConfigurationError(
            "session-redis: memory:// needs fakeredis; install it with pip install 'redis_session[memory]'"
        ) from None
    name = urlsplit(url).netloc or "default"
    with _memory_lock:
        server = _memory_servers.get(name)
        if server is None:
            server = _memory_servers[name] = fakeredis.FakeServer()
    return server


def store_identity(settings: SessionSettings) -> Tuple[str, float, WaitPolicy]:
    """What tells stores apart: the URL, the timeout (it lives on the client) and the WAIT policy."""
    return (settings.redis_url, settings.redis_timeout, WaitPolicy.of(settings))


class StoreRegistry:
    """One store (client and connection pool) per URL, timeout and WAIT policy, created on first use."""

    def __init__(self, factory: Callable[[SessionSettings], Store] = connect) -> None:
        self._factory = factory
        self._stores: Dict[Tuple[str, float, WaitPolicy], Store] = {}
        self._lock = threading.Lock()

    def store_for(self, settings: SessionSettings) -> Store:
        key = store_identity(settings)
        store = self._stores.get(key)
        if store is None:
            with self._lock:
                store = self._stores.get(key)
                if store is None:
                    store = self._stores[key] = self._factory(settings)
        return store


#: Shared by the web integrations so that every Application using one Redis shares one pool.
stores = StoreRegistry()
