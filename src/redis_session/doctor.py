"""What the server will do to sessions: the settings of the Redis behind a store that can lose
sessions (eviction, no memory limit, no persistence, no replica, writes a partition loses, slots
no node serves), each said in plain words with what to set instead.

``redis-session doctor`` prints these findings; :func:`diagnose` returns them to code. Each is a
:class:`Finding` of one check on one server, at one of three levels: ``ok``, ``risk`` (this
setting can lose sessions, or fail every logout or write) or ``unknown`` (the server would not say).

Only reads: ``INFO``, ``CONFIG GET`` and ``CLUSTER INFO``, on every primary of the store (a
cluster's masters, the one server of a ``redis://`` URL, or the master the sentinels name and
the replicas that master reports: one of them becomes the master after a failover, with its own
settings). A command the server refuses (an ACL user without ``CONFIG``, a managed Redis that
renamed or disabled it) makes what needs it ``unknown``, naming what could not be read and why;
it never ends the diagnosis. Where ``INFO`` tells the same (``maxmemory``, ``maxmemory-policy``,
``appendonly``), it answers when ``CONFIG GET`` does not. A store that does not answer at all is
an outage, as for any store call (:class:`~redis_session.errors.SessionUnavailableError`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import redis

from .clients import describe_client, primaries, sentinel_pool
from .doctor_checks import PRIMARY, REPLICA, RISK, UNKNOWN, Facts, Finding, check_server, has_risk
from .settings import SessionSettings
from .store import Store
from .store_errors import STORE_ERRORS, is_unavailable

__all__ = ["Finding", "diagnose", "diagnose_store", "has_risk"]

T = TypeVar("T")

#: Read with one CONFIG GET; the first three also from INFO when CONFIG is refused.
CONFIG_NAMES = ("maxmemory", "maxmemory-policy", "appendonly", "appendfsync", "save",
                "min-replicas-to-write", "min-replicas-max-lag")

def diagnose(settings: SessionSettings) -> list[Finding]:
    """The findings for the store ``settings`` names, read on a connection of their own.

    :raises SessionUnavailableError: when the store does not answer.
    :raises ConfigurationError: when it refuses the configuration (``StoreRefusedError``: a
        wrong password) or the URL is bad.
    """
    store = Store.connect(settings)
    try:
        return diagnose_store(store, settings)
    finally:
        store.close()


def diagnose_store(store: Store, settings: SessionSettings) -> list[Finding]:
    """The findings for ``store``, server by server, each in :data:`CHECKS` order."""
    if urlsplit(settings.redis_url).scheme.lower() == "memory" and not settings.redis_clients:
        return [Finding("store", RISK, "memory:// keeps sessions inside one application process: they are lost when it "
                        "stops, and other processes do not see them", "use a Redis server (redis://) in production",
                        store.name)]
    cluster = callable(getattr(store.client, "get_primaries", None))
    # behind sentinels a replica is promoted without anyone's say: its settings matter as much
    visit_replicas = sentinel_pool(store.client) is not None
    findings: list[Finding] = []
    for node in _guarded(store, primaries, store.client):
        facts = read_facts(node, _guarded(store, address_of, node), PRIMARY, cluster, store.rules.fail)
        findings += check_server(facts, settings)
        if visit_replicas:
            for replica in facts.replicas():
                findings += check_replica(node, replica, settings)
    return findings


def _guarded(store: Store, action: Callable[[Any], T], client: Any) -> T:
    """``action(client)``; an outage becomes SessionUnavailableError, as for any store call."""
    try:
        return action(client)
    except STORE_ERRORS as error:
        store.rules.fail(error)


def address_of(client: Any) -> str:
    """Which server a client talks to: ``host:port`` (the master the sentinels name now, behind
    sentinels), a socket path, or how the library names an application's own client."""
    pool = sentinel_pool(client)
    if pool is not None:
        host, port = pool.get_master_address()
        return host_port(host, port)
    options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in options:
        return str(options["path"])
    if "host" in options:
        return host_port(options["host"], options.get("port", 6379))
    return describe_client(client)


def host_port(host: Any, port: Any) -> str:
    host = host.decode() if isinstance(host, bytes) else str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- what a server says ----------------------------------------------------------------------------


def read_facts(client: Any, server: str, role: str, cluster: bool, fail: Callable[[Exception], NoReturn]) -> Facts:
    """Ask one server. A refused command (NOPERM, an unknown command) is recorded as the reason
    its answers are unknown; anything else goes to ``fail`` (an outage, a wrong password)."""
    info, info_error = ask(client.info, "INFO", fail)
    config, config_error = ask(lambda: client.config_get(*CONFIG_NAMES), "CONFIG GET", fail)
    facts = Facts(server, role, dict(info or {}), info_error,
                  {str(name): str(value) for name, value in (config or {}).items()}, config_error)
    if cluster:
        raw, facts.cluster_error = ask(lambda: client.execute_command("CLUSTER INFO"), "CLUSTER INFO", fail)
        facts.cluster = None if raw is None else parse_fields(raw)
    return facts


def ask(action: Callable[[], T], command: str, fail: Callable[[Exception], NoReturn]) -> tuple[T | None, str | None]:
    """``(reply, None)``, or ``(None, why)`` when the server refused the command itself."""
    try:
        return action(), None
    except STORE_ERRORS as error:
        if isinstance(error, redis.exceptions.ResponseError) and not is_unavailable(error):
            return None, f"{command} was refused: {error}"
        fail(error)


def parse_fields(raw: Any) -> dict[str, str]:
    """``CLUSTER INFO`` as ``{name: value}``, parsed by redis-py or still text."""
    if isinstance(raw, dict):
        return {str(name): str(value) for name, value in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return {name.strip(): value.strip() for name, colon, value in (line.partition(":") for line in text.splitlines()) if colon}


class _Unreachable(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")


def _unreachable(error: Exception) -> NoReturn:
    raise _Unreachable(error)


def check_replica(master: Any, address: tuple[str, int], settings: SessionSettings) -> list[Finding]:
    """The checks that matter once a replica is promoted, on a client of its own (the master's
    credentials and timeouts). A replica that does not answer is one unknown, not an outage."""
    server = host_port(*address)
    pool = master.connection_pool
    options = {name: value for name, value in pool.connection_kwargs.items() if name != "connection_pool"}
    kind = redis.SSLConnection if issubclass(pool.connection_class, redis.SSLConnection) else redis.Connection
    client = redis.Redis(connection_pool=redis.ConnectionPool(connection_class=kind, **{**options, "host": address[0], "port": address[1]}))
    try:
        facts = read_facts(client, server, REPLICA, False, _unreachable)
    except _Unreachable as error:
        return [Finding("reachable", UNKNOWN, f"the master reports this replica, but it did not answer: {error}",
                        "check that this host can reach the replica, with the master's password", server, REPLICA)]
    finally:
        client.close()
    return check_server(facts, settings)


