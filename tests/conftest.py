"""Shared fixtures: real Redis servers, per-test stores, live Tornado servers."""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional

import pytest
import tornado.web

from redis_session.session import Session
from redis_session.settings import SessionSettings
from tests import redis_topologies
from tests.integrations import INTEGRATIONS, IntegrationHarness
from tests.redis_servers import RedisServer, unavailable
from tests.support import COOKIE_SECRET, RecordingCookie, TestStores, app_settings
from tests.web import LiveServer

__all__ = ["COOKIE_SECRET", "RecordingCookie", "app_settings"]

# The spawned topologies behind the ``store_url`` params "cluster" and "sentinel": one of each for
# the whole run, started by the first test that needs it (see tests/redis_topologies.py).
shared_redis_cluster = redis_topologies.shared_redis_cluster
shared_sentinel_setup = redis_topologies.shared_sentinel_setup

#: Which integrations the behaviour suite goes through on each spawned topology (see
#: :func:`pytest_collection_modifyitems`): all of them, as issue 6 asks ("sync and async, Tornado
#: and Flask"). "direct" is the blocking store alone, "tornado" and "flask" the blocking store
#: under each web glue, "tornado-async" the asyncio store.
TOPOLOGY_INTEGRATIONS: Dict[str, FrozenSet[str]] = {
    "cluster": frozenset({"direct", "tornado", "tornado-async", "flask"}),
    "sentinel": frozenset({"direct", "tornado", "tornado-async", "flask"}),
}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server shared by the whole run (each test uses its own key prefix, nothing is flushed)."""
    external = os.environ.get("REDIS_SESSION_TEST_URL")
    if external:
        unavailable("REDIS_SESSION_TEST_URL given: tests that need a redis-server of their own are skipped")
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for one test only, free to be stopped, paused and restarted."""
    server = RedisServer().start()
    yield server
    server.cleanup()


def real_redis_url(request: pytest.FixtureRequest) -> str:
    external = os.environ.get("REDIS_SESSION_TEST_URL")
    if external:
        return external
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture(params=[
    "memory",
    "redis",
    pytest.param("cluster", marks=pytest.mark.cluster),
    pytest.param("sentinel", marks=pytest.mark.sentinel),
])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on the in-process store, on a real redis-server and, for the behaviour suite
    only, on a 3-master Redis Cluster and behind sentinels (``-m cluster`` / ``-m sentinel`` run
    those alone; :func:`pytest_collection_modifyitems` says which tests keep them)."""
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if request.param == "cluster":
        cluster: redis_topologies.RedisCluster = request.getfixturevalue("shared_redis_cluster")
        return cluster.url()
    if request.param == "sentinel":
        setup: redis_topologies.SentinelSetup = request.getfixturevalue("shared_sentinel_setup")
        return setup.url()
    return real_redis_url(request)


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests never need to flush anything."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def registry() -> Iterator[TestStores]:
    """The test's own stores, built as the web glue builds them, closed when the test ends."""
    stores = TestStores()
    yield stores
    stores.close()


@pytest.fixture
def make_settings(store_url: str, prefix: str) -> Callable[..., SessionSettings]:
    def make(**changes: Any) -> SessionSettings:
        return SessionSettings(redis_url=store_url, prefix=prefix, cookie_secure=False).replace(**changes)
    return make


@pytest.fixture(params=INTEGRATIONS)
def integration(request: pytest.FixtureRequest) -> str:
    """Which way the Session API is reached: directly, or inside requests of a Tornado (sync or
    async) or Flask app. Tests marked ``direct_only`` (they look inside the session object) run
    directly only."""
    return str(request.param)


@pytest.fixture
def make_session(
    make_settings: Callable[..., SessionSettings], registry: TestStores, integration: str
) -> Iterator[Callable[..., Any]]:
    """``make_session(session_id=None, cookie=None, **settings)``: a session on the test store,
    reached through the integration under test (same blocking API for all of them)."""
    harness = IntegrationHarness(integration, registry) if integration != "direct" else None

    def make(session_id: Optional[str] = None, cookie: Optional[RecordingCookie] = None, **changes: Any) -> Any:
        settings = make_settings(**changes)
        if harness is None:
            return Session(registry.store_for(settings), settings, session_id, cookie or RecordingCookie())
        return harness.session(settings, session_id, cookie or RecordingCookie())

    yield make
    if harness is not None:
        harness.close()


def deselected(item: pytest.Item) -> bool:
    """Whether the combination of params ``item`` was generated with is left out of the run."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    through = callspec.params.get("integration")
    if through not in (None, "direct") and item.get_closest_marker("direct_only"):
        return True
    on = callspec.params.get("store_url")
    return on in TOPOLOGY_INTEGRATIONS and through not in TOPOLOGY_INTEGRATIONS[on]


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """Deselect the param combinations not worth their time:

    * ``direct_only`` tests run for the direct integration only;
    * the ``store_url`` params "cluster" and "sentinel" are kept only for the behaviour suite
      (the tests that also take ``integration``: test_session.py, test_lifecycle.py), and there
      only through the integrations :data:`TOPOLOGY_INTEGRATIONS` lists for the topology. The other
      ``store_url`` tests (test_tornado.py, test_flask.py, test_adversarial.py, ...) check the web
      glue, which does not depend on the topology, and some open plain ``redis://`` clients on
      the URL; they run on "memory" and "redis" only. Faults on the topologies (failovers, slot
      migrations) are test_scaling.py's, on topologies of its own.
    """
    kept, dropped = [], []
    for item in items:
        (dropped if deselected(item) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """``serve(handlers, **settings)`` runs an Application over real HTTP on loopback."""
    servers: List[LiveServer] = []

    def start(handlers: list, **settings: Any) -> LiveServer:
        settings.setdefault("cookie_secret", COOKIE_SECRET)
        server = LiveServer(tornado.web.Application(handlers, **settings)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def session_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="redis_session")
    return caplog
