"""What each session operation costs in Redis round trips, on a real redis-server, and that the
TTL refresh rides along in the same round trip (the cost table of docs/using-sessions.rst, checked).

A round trip is one write of a request (a command or a whole pipeline) to a Redis socket,
counted inside redis-py's connection class, as bench/apps.py counts them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.connection

from redis_session import SessionAdmin
from redis_session.protocol import session_key
from redis_session.session import Session
from redis_session.settings import SessionSettings
from redis_session.tornado_session import SessionHandler, backend_for
from tests.redis_servers import RedisServer
from tests.support import RecordingCookie, TestStores, app_settings

pytestmark = pytest.mark.redis_server


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``round_trips[0]``: requests written to any Redis socket since the test reset it to 0."""
    counter = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return counter


@pytest.fixture
def new_session(redis_server: RedisServer, registry: TestStores, prefix: str) -> Iterator[Callable[..., Session]]:
    """``new_session(session_id=None, **settings)`` on the real server, with every script already
    loaded (a script's first use costs two extra round trips once per process, not per call)."""
    def make(session_id: Any = None, **changes: Any) -> Session:
        settings = SessionSettings(redis_url=redis_server.url, prefix=prefix, expire=600).replace(**changes)
        return Session(registry.store_for(settings), settings, session_id, RecordingCookie())

    lifetime = make(max_lifetime=3600)
    lifetime.x = 1
    lifetime.get_many("x")  # reads with an absolute lifetime are a script too
    warm = make()
    warm.incr("n")
    warm.flash("m")
    warm.flashes()
    warm.bind_user("warm-up")
    warm.regenerate()
    warm.destroy()
    yield make


def cost(round_trips: list[int], action: Callable[[], Any]) -> int:
    round_trips[0] = 0
    action()
    return round_trips[0]


def test_the_readme_counter_costs_two_round_trips_and_restarts_the_idle_timer(new_session, round_trips, redis_server, prefix):
    """count = session.count.int; session.count = count + 1 is two round trips; the first call of a
    request restarts the idle timer, read or write alike."""
    session = new_session()
    session.count = 1
    key = session_key(prefix, session.session_id)
    client = redis_server.client()

    client.expire(key, 5)
    reading = new_session(session.session_id)
    assert cost(round_trips, lambda: reading.set("count", reading.count.int + 1)) == 2
    assert client.ttl(key) > 590
    client.expire(key, 5)
    writing = new_session(session.session_id)
    assert cost(round_trips, lambda: writing.set("count", 3)) == 1
    assert client.ttl(key) > 590
    client.close()


def test_calls_right_after_a_ttl_refresh_do_not_repeat_it(new_session, redis_server, prefix, monkeypatch):
    """Within a second of the request's last TTL refresh, reads are the bare read (HMGET alone) and
    writes skip their EXPIRE: the TTL they would set is the one already set."""
    session = new_session()
    session.update(a=1, b=2)
    page = new_session(session.session_id)
    client = redis_server.client()
    client.config_resetstat()

    page.a, page.b, page.a  # noqa: B018 - three reads, as a template would do
    page.set("c", 3)

    calls = {name[len("cmdstat_"):]: stats["calls"] for name, stats in client.info("commandstats").items()}
    assert calls.get("expire") == 1  # the first read's; the later reads and the write's script skip it
    assert calls.get("hmget") == 3
    assert client.ttl(session_key(prefix, session.session_id)) > 590
    client.close()


def test_reads_right_after_a_session_is_created_do_not_set_its_ttl_again(new_session, redis_server):
    """The write that creates a session sets its TTL; the reads that follow in the same request
    are the bare read (no EXPIRE)."""
    session = new_session()
    client = redis_server.client()
    client.config_resetstat()

    session.a = 1
    session.a, session.b  # noqa: B018 - two reads right after the first write

    calls = {name[len("cmdstat_"):]: stats["calls"] for name, stats in client.info("commandstats").items()}
    assert calls.get("expire", 0) == 1  # inside the creating script only
    assert calls.get("hmget") == 2
    client.close()


@pytest.mark.parametrize("max_lifetime", [0, 3600])
@pytest.mark.parametrize(("operation", "expected"), [
    ("get", 1), ("get_many", 1), ("load", 1), ("keys", 1), ("update", 1), ("delete", 1), ("clear", 1),
    ("incr", 1), ("flash", 1), ("flashes", 1), ("destroy", 1), ("regenerate", 2),
])
def test_each_operation_is_one_round_trip_with_its_ttl_refresh(new_session, round_trips, operation, expected, max_lifetime):
    """Reads, writes, incr and flashes are one round trip each (TTL refresh included), also with an absolute lifetime."""
    session = new_session(max_lifetime=max_lifetime)
    session.update(a=1, b=2)
    calls = {
        "get": lambda: session.a, "get_many": lambda: session.get_many("a", "b"), "load": session.load,
        "keys": session.keys, "update": lambda: session.update(c=3, d=4), "delete": lambda: session.delete("a"),
        "clear": session.clear, "incr": lambda: session.incr("n"), "flash": lambda: session.flash("hi"),
        "flashes": session.flashes, "destroy": session.destroy, "regenerate": session.regenerate,
    }
    assert cost(round_trips, calls[operation]) == expected


@pytest.mark.parametrize(("hash_ids", "first_use"), [(True, 3), (False, 1)])
def test_a_session_stored_under_its_id_costs_two_more_round_trips_once(new_session, round_trips, redis_server, prefix,
                                                                        hash_ids, first_use):
    """A session an older release stored under its id (32 characters) is moved to a hashed key on
    its first use: take + copy + the read itself; every later read is one round trip again. With
    hash_ids off it is used where it is."""
    old_id = secrets.token_urlsafe(24)
    redis_server.client().hset(session_key(prefix, old_id), mapping={"a": "1", "b": "2"})
    warm = new_session(hash_ids=hash_ids)  # a store of these settings, connected, scripts loaded
    warm.x = 1
    warm.regenerate()
    session = new_session(old_id, hash_ids=hash_ids)
    assert cost(round_trips, lambda: session.a) == first_use
    assert cost(round_trips, lambda: session.b) == 1
    assert (session.session_id != old_id) is hash_ids


def test_binding_and_listing_users_cost_what_the_readme_says(new_session, round_trips, registry, prefix, redis_server):
    """bind_user is 4 round trips on a first visit, 5 from an anonymous session, 6 when the user
    has other sessions; destroy of a bound session 2; the admin listing 3; revoking a user's
    sessions 2, and 1 more per session it ends."""
    assert cost(round_trips, lambda: new_session().bind_user("alice")) == 4
    anonymous = new_session()
    anonymous.cart = "3 items"
    assert cost(round_trips, lambda: anonymous.bind_user("bob")) == 5
    another = new_session()
    another.cart = "1 item"
    assert cost(round_trips, lambda: another.bind_user("alice")) == 6
    assert cost(round_trips, another.destroy) == 2
    settings = SessionSettings(redis_url=redis_server.url, prefix=prefix, expire=600)  # the sessions' store
    admin = SessionAdmin(settings, registry.store_for(settings))
    assert cost(round_trips, lambda: admin.sessions_for_user("alice")) == 3
    assert cost(round_trips, lambda: admin.revoke_user("alice")) == 2 + 1  # one session ended


class Counter(SessionHandler):
    def get(self) -> None:
        count = self.session.count.int
        self.session.count = count + 1
        self.write(str(count + 1))


def test_an_application_keeps_one_client_and_opens_no_connection_per_request(serve, redis_server, prefix):
    """Each Application keeps one store (one client, one connection pool) for all its requests,
    and 50 requests open no new connection."""
    first = serve([("/", Counter)], redis_session=app_settings(redis_server.url, prefix))
    second = serve([("/", Counter)], redis_session=app_settings(redis_server.url, prefix + "b"))
    browsers = [first.browser(), second.browser()]
    assert [browser.get("/").text for browser in browsers] == ["1", "1"]
    stores = [backend_for(first.application).store, backend_for(second.application).store]
    client = redis_server.client()
    opened = client.info("stats")["total_connections_received"]

    for index in range(50):
        assert browsers[index % 2].get("/").status == 200

    # the one connection this check itself opened is all that is new
    assert client.info("stats")["total_connections_received"] == opened
    assert stores == [backend_for(first.application).store, backend_for(second.application).store]
    client.close()
