"""The store side of the settings: which connection an application gets, and key names.

Only ``memory://`` stores are used (in-process fakeredis servers), so nothing touches a network
(clients for ``redis://`` URLs are built but never connect); each test names its own in-memory
servers so no other test can see their data.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
import redis.sentinel

import redis_session.store_rules as store_rules
from redis_session import SessionSettings
from redis_session.addresses import describe_url
from redis_session.backend import SessionBackend
from redis_session.errors import ConfigurationError, SessionUnavailableError
from redis_session.protocol import session_key
from redis_session.session import Session
from redis_session.store import Store
from redis_session.store_rules import WaitPolicy
from tests.support import RecordingCookie


@pytest.fixture
def name() -> str:
    """A memory:// server name no other test uses."""
    return f"store-{uuid.uuid4().hex[:12]}"


def settings_for(url: str, **changes) -> SessionSettings:
    return SessionSettings.from_mapping({"redis": url, **changes})


def test_every_request_of_an_application_shares_one_store(name):
    """Every session of one application uses one Store (one client, one connection pool), built
    on first use."""
    backend = SessionBackend(settings_for(f"memory://{name}"))
    first = backend.store
    assert isinstance(first, Store) and backend.store is first


def test_each_application_has_a_store_of_its_own(name):
    """Two applications on one URL each own their store: closing one leaves the other working."""
    settings = settings_for(f"memory://{name}")
    one, two = SessionBackend(settings), SessionBackend(settings)
    assert one.store is not two.store
    one.store.client.hset("redis:sessions:abc", "user", "alice")
    one.close()
    assert two.store.client.hget("redis:sessions:abc", "user") == b"alice"


def test_memory_stores_with_different_names_hold_separate_data(name):
    """``memory://a`` and ``memory://b`` are two separate in-process servers."""
    a = Store.connect(settings_for(f"memory://{name}-a"))
    b = Store.connect(settings_for(f"memory://{name}-b"))
    a.client.hset("redis:sessions:abc", "user", "alice")
    assert b.client.hget("redis:sessions:abc", "user") is None
    assert a.client.hget("redis:sessions:abc", "user") == b"alice"


def test_clients_on_the_same_memory_name_share_data(name):
    """Two clients on ``memory://same`` see the same data, like two apps on one Redis."""
    settings = settings_for(f"memory://{name}")
    one = Store.connect(settings)
    two = Store.connect(settings)
    assert one.client is not two.client
    one.client.hset("redis:sessions:abc", "user", "alice")
    assert two.client.hget("redis:sessions:abc", "user") == b"alice"


def test_session_key_keeps_the_0_2_1_layout():
    """Sessions live at ``{prefix}:sessions:{id}``, so sessions written by 0.2.1 carry over."""
    assert session_key("redis", "abc") == "redis:sessions:abc"
    assert session_key("myapp", "0123") == "myapp:sessions:0123"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:secret@host:1234/0", "redis://host:1234/0"),
        ("redis://user:secret@host:1234/0", "redis://host:1234/0"),
        ("rediss://:secret@cache.example/2", "rediss://cache.example/2"),
        ("redis://localhost:6379", "redis://localhost:6379"),
        ("memory://name", "memory://name"),
    ],
)
def test_describe_url_hides_the_password(url, shown):
    """Store URLs in messages and logs never show the password."""
    described = describe_url(url)
    assert described == shown
    assert "secret" not in described


def test_a_store_is_named_without_its_password(name):
    """A Store's name, used in 503 log lines, carries no password."""
    client = Store.connect(settings_for(f"memory://{name}")).client
    store = Store("redis://:secret@host:1234/0", client)
    assert store.name == "redis://host:1234/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis+cluster://:secret@10.0.0.1:7000,10.0.0.2:7001", "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"),
        ("redis+sentinel://user:secret@s1:26379,s2:26379/mymaster/0?sentinel_password=secret",
         "redis+sentinel://s1:26379,s2:26379/mymaster/0"),
        ("redis://:p@ss@host:1234/0", "redis://host:1234/0"),
        ("redis://:secret@[::1]:6379/0", "redis://[::1]:6379/0"),
    ],
)
def test_describe_url_names_every_host_of_a_multi_host_url(url, shown):
    """Cluster and sentinel URLs name every host in messages, still without any password."""
    described = describe_url(url)
    assert described == shown
    assert "secret" not in described and "p@ss" not in described


# --- redis-wait-replicas ---------------------------------------------------------------------


def test_the_wait_policy_comes_from_the_settings():
    """A store built from settings waits for the replicas they name (the client connects lazily:
    nothing touches the network here)."""
    store = Store.connect(settings_for("redis://127.0.0.1:1/0", redis_wait_replicas=2, redis_wait_timeout=0.25))
    assert store.rules.wait == WaitPolicy(2, 0.25)
    assert store.rules.wait.command() == ("WAIT", 2, 250)
    assert Store.connect(settings_for("redis://127.0.0.1:1/0")).rules.wait == WaitPolicy(0, 1.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"redis_wait_replicas": -1}, "session-redis-wait-replicas: must be 0 (do not wait) or a number of replicas"),
        ({"redis_wait_timeout": 0}, "session-redis-wait-timeout: must be a positive number of seconds"),
        ({"redis_wait_replicas": 1, "redis_wait_timeout": 2.0}, "must be shorter than session-redis-timeout"),
        ({"redis": "memory://x", "redis_wait_replicas": 1}, "a memory:// store has no replicas to wait for"),
    ],
)
def test_invalid_wait_settings_are_refused(changes, message):
    """Settings WAIT could not honour are refused at start-up, saying which flag to change."""
    with pytest.raises(ConfigurationError) as raised:
        SessionSettings.from_mapping({"redis": "redis://127.0.0.1:1/0", **changes})
    assert message in str(raised.value)


def test_the_wait_timeout_is_only_checked_when_waiting():
    """A short redis-timeout is fine while redis-wait-replicas is 0 (the wait timeout is unused)."""
    settings = settings_for("redis://127.0.0.1:1/0", redis_timeout=0.5)
    assert settings.redis_wait_replicas == 0 and settings.redis_wait_timeout > settings.redis_timeout


def test_flask_reads_the_wait_settings():
    """SESSION_REDIS_WAIT_REPLICAS and SESSION_REDIS_WAIT_TIMEOUT configure Flask apps."""
    from redis_session.flask_config import settings_from_config

    settings = settings_from_config({"SESSION_REDIS": "redis://127.0.0.1:1/0", "SESSION_REDIS_WAIT_REPLICAS": "1",
                                     "SESSION_REDIS_WAIT_TIMEOUT": "0.5"})
    assert (settings.redis_wait_replicas, settings.redis_wait_timeout) == (1, 0.5)


# --- following a sentinel failover -------------------------------------------------------------


class CountingPool:
    """The sentinel part of a pool: counts how often the store asks who the master is."""

    def __init__(self, answer):
        self.answer = answer
        self.asked = 0

    def get_master_address(self):
        self.asked += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def sentinel_like_store(name, answer):
    """A memory store whose client looks like redis-py's sentinel client to the Store."""
    client = Store.connect(settings_for(f"memory://{name}")).client
    pool = CountingPool(answer)
    client.connection_pool.get_master_address = pool.get_master_address
    return Store("redis+sentinel://s1:26379,s2:26379/mymaster", client), pool


def test_a_sentinel_store_asks_for_the_master_at_most_once_a_second(name):
    """Behind sentinels, many session calls in a second cost one question to the sentinels."""
    store, pool = sentinel_like_store(name, ("127.0.0.1", 6380))
    settings = settings_for(f"memory://{name}")
    session = Session(store, settings, None, RecordingCookie())
    session.set("name", "alice")
    for _ in range(20):
        assert session.get("name").str == "alice"
    assert pool.asked == 1


def test_sentinels_that_do_not_answer_do_not_fail_a_request(name, monkeypatch):
    """When no sentinel answers the master check, the call still goes to the master it knows."""
    monkeypatch.setattr(store_rules, "MASTER_CHECK_SECONDS", 0.0)  # check before every call
    store, pool = sentinel_like_store(name, redis.sentinel.MasterNotFoundError("no master for 'mymaster'"))
    session = Session(store, settings_for(f"memory://{name}"), None, RecordingCookie())
    session.set("name", "alice")
    assert session.get("name").str == "alice" and pool.asked == 2


def test_other_stores_never_ask_for_a_master(name):
    """Only sentinel stores check for a failover; others pay nothing for it."""
    store = Store.connect(settings_for(f"memory://{name}"))
    assert store.rules.sentinel_pool is None
    assert not store.rules.master_check_due()
    Session(store, settings_for(f"memory://{name}"), None, RecordingCookie()).set("name", "alice")


def test_a_burst_of_blocking_threads_never_runs_out_of_connections(own_redis_server, prefix):
    """150 threads in a Redis call at once (a threaded Flask server under a burst) each get a
    connection: with Redis frozen every one of them ends on the timeout, none with redis-py's
    "Too many connections" (its default pool stops at 100)."""
    settings = SessionSettings.from_mapping({"redis": own_redis_server.url, "redis-prefix": prefix, "redis-timeout": 1.0})
    store = Store.connect(settings)
    store.client.ping()
    barrier = threading.Barrier(150)
    errors: list[str] = []

    def read() -> None:
        session = Session(store, settings, "a" * 32, RecordingCookie())
        barrier.wait(10)
        try:
            session.get("count")
        except SessionUnavailableError as error:
            errors.append(str(error))

    own_redis_server.pause()
    try:
        threads = [threading.Thread(target=read) for _ in range(150)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        own_redis_server.resume()
    assert len(errors) == 150
    assert not [error for error in errors if "Too many connections" in error]


def test_a_pool_capped_in_the_url_makes_requests_past_the_cap_wait(own_redis_server, prefix):
    """With ``?max_connections=1`` in the URL, five threads reading at once take turns on the one
    connection: all five answer, none fails with "Too many connections"."""
    settings = SessionSettings.from_mapping({"redis": own_redis_server.url + "?max_connections=1",
                                             "redis-prefix": prefix, "redis-timeout": 2.0})
    store = Store.connect(settings)
    first = Session(store, settings, None, RecordingCookie())
    first.set("count", 1)
    barrier = threading.Barrier(5)
    outcomes: list[str] = []

    def read() -> None:
        session = Session(store, settings, first.session_id, RecordingCookie())
        barrier.wait(10)
        try:
            outcomes.append(session.get_many("count")[0].str)
        except SessionUnavailableError as error:
            outcomes.append(str(error))

    own_redis_server.pause()  # every thread is now in line for the one connection
    threads = [threading.Thread(target=read) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    own_redis_server.resume()
    for thread in threads:
        thread.join(10)
    store.close()
    assert outcomes == ["1"] * 5
