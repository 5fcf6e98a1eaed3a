"""Shared fixtures: real Redis servers, per-test stores, live Tornado servers."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

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


#: The stores the web-glue tests run on: the in-process store and a real redis-server. The glue
#: does not depend on the topology (and some of these tests open plain redis:// clients).
STORES = ["memory", "redis"]
#: The behaviour suite (test_session.py, test_lifecycle.py) also runs on a 3-master Redis Cluster
#: and behind sentinels (``-m cluster`` / ``-m sentinel`` run those alone, ``-m "not cluster and
#: not sentinel"`` leaves them out).
TOPOLOGIES = [*STORES, pytest.param("cluster", marks=pytest.mark.cluster), pytest.param("sentinel", marks=pytest.mark.sentinel)]


def store_url_for(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if kind == "cluster":
        cluster: redis_topologies.RedisCluster = request.getfixturevalue("shared_redis_cluster")
        return cluster.url()
    if kind == "sentinel":
        setup: redis_topologies.SentinelSetup = request.getfixturevalue("shared_sentinel_setup")
        return setup.url()
    return real_redis_url(request)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on the in-process store and on a real redis-server."""
    return store_url_for(request, request.param)


@pytest.fixture(params=TOPOLOGIES)
def topology_store_url(request: pytest.FixtureRequest) -> str:
    """The same test on every store and topology: a module of the behaviour suite makes it its
    ``store_url``."""
    return store_url_for(request, request.param)


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
    async) or Flask app. A test that looks inside the session object uses ``direct_session``."""
    return str(request.param)


@pytest.fixture
def make_session(
    make_settings: Callable[..., SessionSettings], registry: TestStores, integration: str
) -> Iterator[Callable[..., Any]]:
    """``make_session(session_id=None, cookie=None, **settings)``: a session on the test store,
    reached through the integration under test (same blocking API for all of them)."""
    harness = IntegrationHarness(integration, registry) if integration != "direct" else None

    def make(session_id: str | None = None, cookie: RecordingCookie | None = None, **changes: Any) -> Any:
        settings = make_settings(**changes)
        if harness is None:
            return Session(registry.store_for(settings), settings, session_id, cookie or RecordingCookie())
        return harness.session(settings, session_id, cookie or RecordingCookie())

    yield make
    if harness is not None:
        harness.close()


@pytest.fixture
def direct_session(make_settings: Callable[..., SessionSettings], registry: TestStores) -> Callable[..., Session]:
    """``direct_session(session_id=None, cookie=None, **settings)``: a blocking Session on the test
    store itself, for tests that look inside it (its core, its store) or drive it step by step."""
    def make(session_id: str | None = None, cookie: RecordingCookie | None = None, **changes: Any) -> Session:
        settings = make_settings(**changes)
        return Session(registry.store_for(settings), settings, session_id, cookie or RecordingCookie())
    return make


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """``serve(handlers, **settings)`` runs an Application over real HTTP on loopback."""
    servers: list[LiveServer] = []

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
