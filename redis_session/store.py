"""Connections to the session store, shared per process, and the one place Redis errors are
translated into :class:`~redis_session.errors.SessionUnavailableError`.

A store is a Redis client (with its connection pool) plus the session scripts registered on it.
Building a client per request would open a connection per request and re-upload scripts, so
:class:`StoreRegistry` keeps one client per (URL, timeout) for the life of the process; settings
themselves are never cached here.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, NamedTuple, Tuple
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .addresses import CLUSTER_SCHEMES, SENTINEL_SCHEMES, NodesAddress, parse_nodes_url
from .errors import ConfigurationError, SessionUnavailableError
from .scripts import SCRIPTS
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
)
_ORIGINAL_UNAVAILABLE_MESSAGES = ("MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "NOREPLICAS")


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
    return isinstance(error, redis.exceptions.ResponseError) and str(error).startswith(
        _ORIGINAL_UNAVAILABLE_MESSAGES
    )


def describe_url(url: str) -> str:
    """The store URL without any password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Store:
    """A client with the session scripts registered once on it."""

    def __init__(self, url: str, client: Any) -> None:
        self.url = url
        self.name = describe_url(url)
        self.client = client
        self.scripts: Dict[str, Any] = {name: client.register_script(source) for name, source in SCRIPTS.items()}

    def execute(self, call: Call) -> Any:
        """Run one call; store faults become :class:`SessionUnavailableError`."""
        script = self.scripts[call.script]
        try:
            return script(keys=(call.key,), args=call.args)
        except redis.exceptions.RedisError as error:
            check_retry(self.name, call, error)
        try:
            return script(keys=(call.key,), args=call.args)
        except redis.exceptions.RedisError as error:
            raise_translated(self.name, error)
            raise


def check_retry(store_name: str, call: Call, error: redis.exceptions.RedisError) -> None:
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


def raise_translated(store_name: str, error: redis.exceptions.RedisError) -> None:
    """Raise :class:`SessionUnavailableError` for an outage; return for anything else."""
    if is_unavailable(error):
        raise SessionUnavailableError(store_name, error) from None


def connect(settings: SessionSettings) -> Store:
    """A new store for ``settings.redis_url``. Most code wants :meth:`StoreRegistry.store_for`."""
    return Store(settings.redis_url, make_client(settings))


def make_client(settings: SessionSettings) -> Any:
    """A redis-py (or fakeredis) client configured for sessions: bounded waits, no hidden retries."""
    scheme = urlsplit(settings.redis_url).scheme.lower()
    if scheme == "memory":
        return memory_client(settings.redis_url)
    if scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES:
        return nodes_client(parse_nodes_url(settings.redis_url), settings)
    try:
        return redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
    except ValueError as error:
        raise ConfigurationError(f"session-redis: {describe_url(settings.redis_url)!r}: {error}") from None


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


class StoreRegistry:
    """One store (client and connection pool) per URL and timeout, created on first use."""

    def __init__(self, factory: Callable[[SessionSettings], Store] = connect) -> None:
        self._factory = factory
        self._stores: Dict[Tuple[str, float], Store] = {}
        self._lock = threading.Lock()

    def store_for(self, settings: SessionSettings) -> Store:
        key = (settings.redis_url, settings.redis_timeout)
        store = self._stores.get(key)
        if store is None:
            with self._lock:
                store = self._stores.get(key)
                if store is None:
                    store = self._stores[key] = self._factory(settings)
        return store


#: Shared by the web integrations so that every Application using one Redis shares one pool.
stores = StoreRegistry()
