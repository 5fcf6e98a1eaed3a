"""The store side of the settings: which connection a ``SessionSettings`` gets, and key names.

Only ``memory://`` stores are used (in-process fakeredis servers), so nothing touches a network;
each test names its own in-memory servers so no other test can see their data.
"""

from __future__ import annotations

import uuid

import pytest

from redis_session import SessionSettings
from redis_session.store import Store, StoreRegistry, describe_url, session_key


@pytest.fixture
def name() -> str:
    """A memory:// server name no other test uses."""
    return f"store-{uuid.uuid4().hex[:12]}"


def settings_for(url: str, **changes) -> SessionSettings:
    return SessionSettings.from_mapping({"redis": url, **changes})


def test_same_url_and_timeout_share_one_store(name):
    """Every session on one URL and timeout uses one Store (one client, one connection pool)."""
    registry = StoreRegistry()
    first = registry.store_for(settings_for(f"memory://{name}"))
    again = registry.store_for(settings_for(f"memory://{name}", redis_prefix="other-app", expire=60))
    assert isinstance(first, Store)
    assert again is first


def test_another_url_gets_another_store(name):
    """A different store URL gets its own Store."""
    registry = StoreRegistry()
    a = registry.store_for(settings_for(f"memory://{name}-a"))
    b = registry.store_for(settings_for(f"memory://{name}-b"))
    assert a is not b
    assert (a.url, b.url) == (f"memory://{name}-a", f"memory://{name}-b")


def test_another_timeout_gets_another_store(name):
    """The same URL with a different Redis timeout gets its own Store (timeouts live on the client)."""
    registry = StoreRegistry()
    quick = registry.store_for(settings_for(f"memory://{name}", redis_timeout=0.5))
    patient = registry.store_for(settings_for(f"memory://{name}", redis_timeout=5))
    assert quick is not patient


def test_registries_do_not_share_stores(name):
    """Each StoreRegistry keeps its own Stores."""
    settings = settings_for(f"memory://{name}")
    assert StoreRegistry().store_for(settings) is not StoreRegistry().store_for(settings)


def test_memory_stores_with_different_names_hold_separate_data(name):
    """``memory://a`` and ``memory://b`` are two separate in-process servers."""
    registry = StoreRegistry()
    a = registry.store_for(settings_for(f"memory://{name}-a"))
    b = registry.store_for(settings_for(f"memory://{name}-b"))
    a.client.hset("redis:sessions:abc", "user", "alice")
    assert b.client.hget("redis:sessions:abc", "user") is None
    assert a.client.hget("redis:sessions:abc", "user") == b"alice"


def test_clients_on_the_same_memory_name_share_data(name):
    """Two clients on ``memory://same`` see the same data, like two apps on one Redis."""
    settings = settings_for(f"memory://{name}")
    one = StoreRegistry().store_for(settings)
    two = StoreRegistry().store_for(settings)
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
    client = StoreRegistry().store_for(settings_for(f"memory://{name}")).client
    store = Store("redis://:secret@host:1234/0", client)
    assert store.name == "redis://host:1234/0"
