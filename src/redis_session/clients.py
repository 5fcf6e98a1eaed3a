"""The redis-py (or fakeredis) client behind a store URL, for either I/O model.

One function, :func:`make_client`, builds every client: standalone, Cluster, Sentinel and the
in-process ``memory://`` store, blocking or asyncio. The classes of each I/O model are named once,
in :class:`ClientKit`, so an asyncio client is built from asyncio classes throughout (redis-py
8.2 warns, per process, about a blocking ``Retry`` handed to an asyncio pool). Every client gets
bounded waits and no hidden retries: the stores decide what may be sent again.
"""

from __future__ import annotations

import inspect
import threading
from contextvars import ContextVar
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff

from .addresses import CLUSTER_SCHEMES, SENTINEL_SCHEMES, NodesAddress, describe_url, parse_nodes_url
from .errors import ConfigurationError
from .settings import SessionSettings


class ClientKit(NamedTuple):
    """The redis-py classes of one I/O model."""

    redis: Any
    pool: Any
    #: The pool used when the URL caps its connections (``?max_connections=N``).
    capped_pool: Any
    retry: Any
    cluster: Any
    cluster_node: Any
    sentinel: Any
    #: fakeredis' client class name for the memory:// store.
    fake: str


#: The node the current task sent a bare ASKING to, still owed to its next command (see
#: _AskingClusterNode).
_ASKING_OWED: ContextVar[Any] = ContextVar("redis_session_asking_owed", default=None)


class _AskingClusterNode(redis.asyncio.cluster.ClusterNode):
    """An asyncio cluster node that sends ASKING in the same write, on the same connection, as
    the command it allows.

    redis.asyncio's ``RedisCluster._execute_command`` answers an ASK redirect with
    ``await node.execute_command("ASKING")`` and then ``await node.execute_command(*args)``: two
    separate trips through the node's pool, which takes connections first in, first out. With
    more than one idle connection to the node the command goes out on another connection than
    the ASKING, the importing node (which serves the slot only after ASKING on that connection)
    answers MOVED back to the source, the source answers ASK again, and after 8 such rounds the
    call fails with ``ClusterError: TTL exhausted`` (a 503): a few of every thousand coroutine
    requests while a slot migrates (issue 17; with redis-py 8.0.1 the MOVED replies also close
    other tasks' connections, see :class:`AsyncClusterClient`). The blocking client sends
    ASKING on the command's own connection (redis/cluster.py) and is not affected. Not reported
    upstream that we could find (redis-py 8.0.1 to 8.2.0: redis/asyncio/cluster.py,
    ``RedisCluster._execute_command``, ``if asking:``); other clients had the same bug:
    sewenew/redis-plus-plus#281, Grokzen/redis-py-cluster#89.

    So a bare ASKING sends nothing; it is owed, in the task's context, to the next command this
    task sends to this node, which then goes out as ``ASKING`` + the command in one write on
    one connection (a command the task sends to any node first cancels it). redis-py runs the
    two calls back to back, so the owed ASKING always reaches the command it was meant for.
    """

    __slots__ = ()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and str(args[0]).upper() == "ASKING":
            _ASKING_OWED.set(self)
            return True
        owed = _ASKING_OWED.get()
        if owed is None:
            return await super().execute_command(*args, **kwargs)
        _ASKING_OWED.set(None)
        if owed is not self:
            return await super().execute_command(*args, **kwargs)
        kwargs.pop("asking", None)  # redis-py 8.2's flag for HIMPORT SET, which it asks for itself
        connection = self.acquire_connection()
        try:
            await self.disconnect_if_needed(connection)
            await connection.send_packed_command(connection.pack_commands([("ASKING",), args]))
            try:
                await connection.read_response()
            except redis.exceptions.ResponseError:
                await connection.disconnect()  # the command's own reply is still unread
                raise
            return await self.parse_response(connection, args[0], **kwargs)
        finally:
            try:
                await self.disconnect_if_needed(connection)
            finally:
                self.release(connection)


class AsyncClusterClient(redis.asyncio.cluster.RedisCluster):
    """redis.asyncio's cluster client, with ASK redirects that reach the importing node (see
    :class:`_AskingClusterNode`), and MOVED replies that only move their slot."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # On every 5th MOVED (reinitialize_steps) redis-py 8.0.1's asyncio client reinitializes
        # with aclose(), which closes every connection of every node, those other tasks are
        # reading replies on included: each of those calls fails with a ConnectionError (a 503,
        # and an increment that may have been applied). A slot migration ends with a MOVED for
        # every request in flight to the old owner, so 20 coroutine clients lost up to 8 calls
        # at a migration (issue 17; the aclose() path is also what redis/redis-py#4322
        # changes). With 0, a MOVED patches the one slot it names (move_slot), which is all a
        # redirect needs; connection errors and CLUSTERDOWN still refresh the whole slot map.
        kwargs.setdefault("reinitialize_steps", 0)
        super().__init__(*args, **kwargs)

    def get_node(self, host: str | None = None, port: int | None = None,
                 node_name: str | None = None) -> Any:
        # redis-py fetches the ASK target with get_node() just before it sends ASKING there;
        # the node keeps its identity, pool and slot-map entries, only its class changes
        node = super().get_node(host, port, node_name)
        if type(node) is redis.asyncio.cluster.ClusterNode:
            node.__class__ = _AskingClusterNode
        return node


# A standalone client gets redis-py's plain pool with no practical cap of its own: a blocking
# client holds a connection only while its thread waits, so the threads bound them, and a
# coroutine handler holds one only while it awaits a reply. With redis-py's default cap of 100 a
# burst past it fails at once with "Too many connections" (a 503), and a waiting pool costs a
# lock and a condition per round trip (3% of a coroutine counter request's instructions,
# measured). A URL that caps the pool (``?max_connections=N``) gets the waiting pool: a request
# past the cap waits for a free connection, up to the Redis timeout, instead of failing.
UNCAPPED = 2**31
BLOCKING = ClientKit(
    redis.Redis, redis.ConnectionPool, redis.BlockingConnectionPool, redis.retry.Retry,
    redis.cluster.RedisCluster, redis.cluster.ClusterNode, redis.sentinel.Sentinel, "FakeRedis",
)
ASYNCIO = ClientKit(
    redis.asyncio.Redis, redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool,
    redis.asyncio.retry.Retry, AsyncClusterClient, redis.asyncio.cluster.ClusterNode,
    redis.asyncio.sentinel.Sentinel, "FakeAsyncRedis",
)


def client_for(settings: SessionSettings, kit: ClientKit) -> tuple[Any, bool]:
    """``(client, owned)``: the application's own client of ``kit``'s I/O model when it gave one
    (``owned`` False: the library never closes it), else a new one for the URL.

    :raises ConfigurationError: when the application gave clients, but none of this I/O model.
    """
    if not settings.redis_clients:
        return make_client(settings, kit), True
    asynchronous = kit is ASYNCIO
    for client in settings.redis_clients:
        if inspect.iscoroutinefunction(client.execute_command) == asynchronous:
            return client, False
    wanted = "an asyncio client (redis.asyncio.Redis)" if asynchronous else "a blocking client (redis.Redis)"
    users = "coroutine handlers (AsyncSessionHandler)" if asynchronous else "blocking handlers"
    raise ConfigurationError(
        f"the application's {users} need {wanted}, but the session store was given only "
        f"{', '.join(type(client).__name__ for client in settings.redis_clients)}; give a (blocking client, "
        "asyncio client) pair, or a store URL"
    )


def describe_client(client: Any) -> str:
    """How logs and errors name an application's own client (never with its password)."""
    options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "host" in options:
        where = f"redis://{options['host']}:{options.get('port', 6379)}/{options.get('db', 0)}"
    elif "path" in options:
        where = f"unix://{options['path']}"
    else:
        where = "the application's server"
    return f"{where} (the application's own {type(client).__name__})"


def make_client(settings: SessionSettings, kit: ClientKit) -> Any:
    """A client for ``settings.redis_url`` built from ``kit``'s classes.

    :raises ConfigurationError: for a URL redis-py refuses.
    :raises redis.exceptions.RedisError: when building it already needs the store and it does not
        answer (redis-py's cluster client reads the slot map when it is created).
    """
    scheme = urlsplit(settings.redis_url).scheme.lower()
    if scheme == "memory":
        import fakeredis  # memory_server() has already told the user how to install it

        return getattr(fakeredis, kit.fake)(server=memory_server(settings.redis_url))
    timeouts = {"socket_timeout": settings.redis_timeout, "socket_connect_timeout": settings.redis_timeout}
    no_retries = kit.retry(NoBackoff(), 0)
    if scheme in CLUSTER_SCHEMES or scheme in SENTINEL_SCHEMES:
        return _nodes_client(parse_nodes_url(settings.redis_url), kit, timeouts, no_retries)
    pool_options: dict[str, Any] = {"max_connections": UNCAPPED}
    pool_class = kit.pool
    if "max_connections" in parse_qs(urlsplit(settings.redis_url).query):
        pool_class, pool_options = kit.capped_pool, {"timeout": settings.redis_timeout}  # how long to wait for a free one
    try:
        pool = pool_class.from_url(settings.redis_url, retry=no_retries, health_check_interval=30, **timeouts, **pool_options)
    except ValueError as error:
        raise ConfigurationError(f"session-redis: {describe_url(settings.redis_url)!r}: {error}") from None
    client = kit.redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # as from_url() does: closing the client closes its pool
    return client


def _nodes_client(address: NodesAddress, kit: ClientKit, timeouts: dict[str, float], no_retries: Any) -> Any:
    """redis-py's own Cluster or Sentinel client: no home-made routing or failover logic."""
    if address.kind == "cluster":
        nodes = [kit.cluster_node(host, port) for host, port in address.nodes]
        return kit.cluster(startup_nodes=nodes, retry=no_retries, **timeouts, **address.connection_options())
    sentinel = kit.sentinel(list(address.nodes), sentinel_kwargs={**timeouts, **address.sentinel_options()}, **timeouts)
    return sentinel.master_for(address.service_name, db=address.db, retry=no_retries, **address.connection_options())


def sentinel_pool(client: Any) -> Any:
    """The client's sentinel-managed connection pool (it can say who the master is), or ``None``."""
    pool = getattr(client, "connection_pool", None)
    return pool if callable(getattr(pool, "get_master_address", None)) else None


def sentinel_clients(client: Any, *known: Any) -> list[Any]:
    """The clients a sentinel-managed client keeps on the sentinels themselves (closed with it),
    each once, together with ``known`` ones listed earlier.

    Stores list them when they are built, and close that list and the current one: redis-py's
    ``discover_master`` moves the sentinel that answered to the front of its list with a swap
    that is not safe for concurrent callers, and two racing lookups can leave one client in the
    list twice and drop another, which closing the current list alone would miss.
    """
    manager = getattr(sentinel_pool(client), "sentinel_manager", None)
    unique: dict[int, Any] = {}
    for sentinel in [*known, *getattr(manager, "sentinels", ())]:
        unique.setdefault(id(sentinel), sentinel)
    return list(unique.values())


def wait_target(client: Any, key: str) -> dict[str, Any]:
    """Where WAIT must go to count the replicas of a write to ``key``: on a cluster, the primary
    that owns the key (redis-py would otherwise send a keyless WAIT to every node and add the
    replies). WAIT counts only the writes of its own connection, so it shares their pipeline."""
    get_node_from_key = getattr(client, "get_node_from_key", None)
    return {} if get_node_from_key is None else {"target_nodes": get_node_from_key(key)}


def primaries(client: Any) -> list[Any]:
    """One blocking client per primary: every master of a cluster, or the client itself.

    Each talks to its own node only, so a pipeline sent on it reads that node's keys in one
    round trip (what SCAN on that node found lives there, barring a slot migration).
    """
    get_primaries = getattr(client, "get_primaries", None)
    if get_primaries is None:
        return [client]
    return [client.get_redis_connection(node) for node in get_primaries()]


_memory_servers: dict[str, Any] = {}
_memory_lock = threading.Lock()


def memory_server(url: str) -> Any:
    """The in-process server named by ``url`` (``memory://`` or ``memory://name``).

    Every client for one name shares one server, blocking and asyncio alike, so two applications
    in one process see the same sessions, as they would on one Redis. Data lives as long as the
    process, or until :func:`forget_memory_server`. Tests that want a store of their own use a
    name of their own (see :mod:`redis_session.testing`).
    """
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


def forget_memory_server(url: str) -> None:
    """Drop the in-process server named by ``url`` and its data (the next client gets a new one)."""
    with _memory_lock:
        _memory_servers.pop(urlsplit(url).netloc or "default", None)
