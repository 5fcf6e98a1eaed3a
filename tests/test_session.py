"""The Session behaviour suite: what ``session.count``, ``session.count = 5`` and friends do,
without a web framework in the way.

Every test runs on the in-process store and on a real redis-server (``store_url``), and, through
``make_session``, directly and inside real Tornado (sync and async) and Flask requests. Tests that
look inside the session object use ``direct_session`` (no web integration). What the session left in Redis is
checked with the raw client of the test's store.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from redis_session import Value
from redis_session.errors import RedisSessionError, SessionLimitError, SessionValueError
from redis_session.protocol import moved_mark_key, session_key
from redis_session.settings import SessionSettings
from tests.conftest import RecordingCookie
from tests.support import TestStores

CREATED = "__rs:created"



@pytest.fixture
def store_url(topology_store_url: str) -> str:
    """This behaviour suite runs on every store and topology (conftest.TOPOLOGIES)."""
    return topology_store_url


@pytest.fixture
def redis_client(make_settings: Callable[..., SessionSettings], registry: TestStores) -> Any:
    """The raw client on the test's store, to look at (and tamper with) what sessions wrote."""
    return registry.store_for(make_settings()).client


@pytest.fixture
def key_of(prefix: str) -> Callable[[str], str]:
    """``key_of(session_id)``: the Redis key of a session under the test's prefix."""
    return lambda session_id: session_key(prefix, session_id)


def all_keys(client: Any, prefix: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{prefix}:*"))


def unknown_id() -> str:
    """A well-formed session id that Redis has never heard of."""
    return secrets.token_urlsafe(24)


# -- reads -----------------------------------------------------------------------------------


def test_reads_come_from_redis_not_from_a_copy(make_session):
    """A write through one Session is seen at once by another Session with the same id, by attribute, item and get()."""
    writer = make_session()
    writer.count = 1
    reader = make_session(writer.session_id)
    assert reader.count.int == 1

    writer.count = 2

    assert reader.count.int == 2
    assert reader["count"].int == 2
    assert reader.get("count").int == 2
    assert isinstance(reader.get("count"), Value)

    reader.count = 3
    assert writer.count.int == 3


def test_a_missing_field_reads_as_fallbacks(make_session):
    """Reading a field the session does not hold gives Value(None): '' / 0 / 0.0 / False / {}."""
    session = make_session()
    session.name = "alice"
    missing = session.nickname
    assert missing.none
    assert missing.raw is None
    assert (missing.str, missing.int, missing.float, missing.bool, missing.json) == ("", 0, 0.0, False, {})


def test_in_len_iteration_and_load_see_user_fields_only(make_session, redis_client, key_of):
    """``in``, len(), list(), keys() and load() see the fields the app wrote, never ``__rs:created``, ``__rs:user`` or flashes."""
    session = make_session()
    session.update(name="alice", empty="")
    session.bind_user("alice")
    session.flash("Welcome")

    assert "name" in session
    assert "empty" in session  # an empty string is a value, not an absent field
    assert "nickname" not in session
    assert len(session) == 2
    assert sorted(session) == ["empty", "name"]
    assert sorted(session.keys()) == ["empty", "name"]
    assert set(session.load()) == {"empty", "name"}
    stored = {name.decode() for name in redis_client.hkeys(key_of(session.session_id))}
    assert {CREATED, "__rs:user"} <= stored and any(name.startswith("__rs:flash:") for name in stored)


# The awaitable API has no ``in`` operator: its contains() is covered by the test after this one.
@pytest.mark.parametrize("integration", ["direct", "tornado", "flask"], indirect=True)
def test_in_with_a_name_that_is_not_str_is_false(make_session):
    """``42 in session`` is simply False, like a dict, and costs nothing."""
    session = make_session()
    session.name = "alice"
    assert 42 not in session
    assert b"name" not in session


@pytest.mark.parametrize("integration", ["tornado-async"], indirect=True)
def test_async_contains_with_a_name_that_is_not_str_raises_type_error(make_session):
    """``await session.contains(42)`` raises TypeError: the awaitable API takes str field names only."""
    session = make_session()
    session.name = "alice"
    with pytest.raises(TypeError, match="session field names are str"):
        _ = 42 in session  # the harness runs ``await session.contains(42)``
    assert "name" in session


def test_load_returns_every_user_field_as_values(make_session):
    """load() returns ``{name: Value}`` of every field the app wrote."""
    session = make_session()
    session.update(count=3, name="alice", prefs={"theme": "dark"})
    session.flash("Saved")

    loaded = session.load()

    assert loaded == {"count": Value(b"3"), "name": Value(b"alice"), "prefs": Value(b'{"theme":"dark"}')}
    assert loaded["count"].int == 3
    assert loaded["prefs"].json == {"theme": "dark"}


def test_get_many_returns_values_in_the_order_asked(make_session):
    """get_many("a", "missing", "b") returns one Value per name, in order, absent ones as Value(None)."""
    session = make_session()
    session.update(a=1, b="two")

    a, missing, b = session.get_many("a", "missing", "b")

    assert (a.int, missing.none, b.str) == (1, True, "two")
    assert session.get_many() == []


# -- writes ----------------------------------------------------------------------------------


def test_attribute_item_set_and_update_all_write(make_session, redis_client, key_of):
    """``s.x = ...``, ``s["x"] = ...``, set() and update(mapping, **kwargs) all store the field in Redis."""
    session = make_session()
    session.name = "alice"
    session["city"] = "Paris"
    session.set("lang", "fr")
    session.update({"a": 1, "b": 2}, b=3, c=4)  # keywords win, like dict.update

    key = key_of(session.session_id)
    assert redis_client.hget(key, "name") == b"alice"
    assert redis_client.hget(key, "city") == b"Paris"
    assert redis_client.hget(key, "lang") == b"fr"
    assert [redis_client.hget(key, name) for name in ("a", "b", "c")] == [b"1", b"3", b"4"]
    assert (session.name.str, session["city"].str, session.get("lang").str) == ("alice", "Paris", "fr")


def test_each_type_is_stored_and_read_back(make_session, redis_client, key_of):
    """str, bytes, int, float, bool, dict and list are stored losslessly and read back through the matching view."""
    session = make_session()
    session.update(
        text="café", blob=b"\x00\xff", count=42, negative=-7, ratio=2.5,
        yes=True, no=False, prefs={"theme": "dark", "sizes": [1, 2]}, items=[1, "two", None],
    )

    assert session.text.str == "café"
    assert session.blob.raw == b"\x00\xff"
    assert session.count.int == 42
    assert session.negative.int == -7
    assert session.ratio.float == 2.5
    assert session.yes.bool is True
    assert session.no.bool is False
    assert session.prefs.json == {"theme": "dark", "sizes": [1, 2]}
    assert session.items.json == [1, "two", None]

    key = key_of(session.session_id)
    assert redis_client.hget(key, "text") == "café".encode()
    assert redis_client.hget(key, "count") == b"42"
    assert redis_client.hget(key, "ratio") == b"2.5"
    assert (redis_client.hget(key, "yes"), redis_client.hget(key, "no")) == (b"1", b"0")
    assert redis_client.hget(key, "prefs") == b'{"theme":"dark","sizes":[1,2]}'


def test_writing_none_deletes_the_field(make_session, redis_client, key_of):
    """``s.x = None`` (and update(x=None)) deletes the field."""
    session = make_session()
    session.update(name="alice", city="Paris", lang="fr")

    session.name = None
    session.update(city=None, lang="de")

    key = key_of(session.session_id)
    assert session.name.none and session.city.none
    assert redis_client.hexists(key, "name") == 0
    assert redis_client.hexists(key, "city") == 0
    assert session.lang.str == "de"


def test_an_unsupported_type_on_a_new_session_raises_and_creates_nothing(make_session, redis_client, prefix):
    """Writing a set to a new session raises TypeError naming the field, and no session is created."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)

    with pytest.raises(TypeError, match="'tags'") as raised:
        session.tags = {"a", "b"}
    assert isinstance(raised.value, RedisSessionError)  # one root catches every library error

    assert session.session_id is None
    assert all_keys(redis_client, prefix) == []
    assert cookie.events == []


def test_an_unsupported_type_writes_nothing_at_all(make_session, redis_client, key_of):
    """An update() with one bad value raises TypeError naming it and writes none of the others."""
    session = make_session()
    session.name = "alice"
    key = key_of(session.session_id)

    with pytest.raises(TypeError, match="'when'"):
        session["when"] = object()
    with pytest.raises(TypeError, match="'tags'"):
        session.update(name="bob", city="Paris", tags={"a"}, lang="fr")
    with pytest.raises(TypeError, match="'prefs'"):
        session.update(city="Paris", prefs={"when": object()})
    with pytest.raises(TypeError, match="'text'"):
        session.update(city="Paris", text="\ud800")  # a lone surrogate has no UTF-8 encoding

    assert redis_client.hexists(key, "when") == 0
    assert redis_client.hexists(key, "tags") == 0
    assert redis_client.hexists(key, "city") == 0
    assert redis_client.hexists(key, "lang") == 0
    assert redis_client.hexists(key, "text") == 0
    assert redis_client.hget(key, "name") == b"alice"


def test_del_attribute_del_item_and_delete(make_session, redis_client, key_of):
    """``del s.x``, ``del s["x"]`` and delete("a", "b") remove fields; absent ones are ignored."""
    session = make_session()
    session.update(name="alice", city="Paris", a=1, b=2, kept=3)

    del session.name
    del session["city"]
    session.delete("a", "b", "never-there")

    key = key_of(session.session_id)
    assert sorted(session) == ["kept"]
    assert [redis_client.hexists(key, name) for name in ("name", "city", "a", "b")] == [0, 0, 0, 0]
    assert session.kept.int == 3


# -- incr ------------------------------------------------------------------------------------


def test_incr_returns_the_new_number(make_session):
    """incr() starts a missing field at 0 and returns the new value."""
    session = make_session()
    assert session.incr("count") == 1
    assert session.incr("count", 5) == 6
    assert session.incr("count", -10) == -4
    assert session.count.int == -4


def test_incr_counts_on_the_server(make_session, redis_client, key_of):
    """incr() adds to what Redis holds now, not to a value the Session read earlier."""
    session = make_session()
    session.count = 1
    other = make_session(session.session_id)
    assert other.incr("count") == 2

    redis_client.hset(key_of(session.session_id), "count", 10)

    assert session.incr("count") == 11
    assert other.count.int == 11


def test_concurrent_incr_loses_no_update(make_session, redis_client, key_of, prefix):
    """200 incr() from 20 Sessions on one id at once each return a different count, add up exactly and send no new cookie."""
    first = make_session()
    assert first.incr("hits") == 1
    cookies = [RecordingCookie() for _ in range(20)]
    sessions = [make_session(first.session_id, cookie=cookie) for cookie in cookies]
    start = threading.Barrier(len(sessions))

    def bump(session: Any) -> list[int]:
        start.wait(30)
        return [int(session.incr("hits")) for _ in range(10)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        returned = [count for counts in pool.map(bump, sessions) for count in counts]

    assert sorted(returned) == list(range(2, 202))
    assert first.hits.int == 201
    assert all(cookie.events == [] for cookie in cookies)
    assert all_keys(redis_client, prefix) == [key_of(first.session_id).encode()]


def test_incr_with_a_float_amount(make_session):
    """A float amount adds a float (HINCRBYFLOAT), on a missing field or an integer one."""
    session = make_session()
    assert session.incr("score", 0.5) == 0.5
    assert session.incr("score", 1.25) == 1.75
    assert session.score.float == 1.75
    session.count = 1
    assert session.incr("count", 0.5) == 1.5
    assert isinstance(session.incr("count", 1.0), float)


def test_incr_keeps_large_counters_exact(make_session, redis_client, key_of):
    """incr() on a 64-bit counter beyond 2**53 returns and stores the exact sum, up to 2**63 - 1."""
    session = make_session()
    session.big = 2**60
    assert session.incr("big") == 2**60 + 1
    assert redis_client.hget(key_of(session.session_id), "big") == str(2**60 + 1).encode()
    assert session.big.int == 2**60 + 1
    assert session.incr("big", -(2**60)) == 1
    session.big = 2**63 - 2
    assert session.incr("big") == 2**63 - 1


def test_incr_on_text_raises_and_leaves_the_value(make_session):
    """incr() on a field holding text raises SessionValueError naming the field and changes nothing."""
    session = make_session()
    session.name = "alice"
    session.ratio = 0.5

    with pytest.raises(SessionValueError, match="'name'"):
        session.incr("name")
    with pytest.raises(SessionValueError, match="'name'"):
        session.incr("name", 1.5)
    with pytest.raises(SessionValueError, match="'ratio'"):
        session.incr("ratio")

    assert session.name.str == "alice"
    assert session.ratio.float == 0.5


@pytest.mark.parametrize("amount", [True, "1", float("nan"), float("inf"), None])
def test_incr_refuses_amounts_that_are_not_numbers(make_session, redis_client, prefix, amount):
    """incr() with a bool, str, NaN, infinite or None amount raises TypeError and writes nothing."""
    session = make_session()
    with pytest.raises(TypeError, match="'count'"):
        session.incr("count", amount)
    assert session.session_id is None
    assert all_keys(redis_client, prefix) == []


@pytest.mark.parametrize("amount", [2**63, -(2**63) - 1, 10**30])
def test_incr_refuses_an_amount_outside_64_bits(make_session, redis_client, prefix, amount):
    """incr() with an int amount Redis cannot count in (outside signed 64 bits) raises ValueError and writes nothing."""
    session = make_session()
    with pytest.raises(ValueError, match="session field 'count'.*64-bit"):
        session.incr("count", amount)
    assert session.session_id is None
    assert all_keys(redis_client, prefix) == []


def test_incr_past_the_64_bit_range_raises_and_leaves_the_value(make_session):
    """incr() that would take a counter past 2**63 - 1 raises SessionValueError naming the field; the counter stays."""
    session = make_session()
    session.big = 2**63 - 1
    with pytest.raises(SessionValueError, match="'big'"):
        session.incr("big")
    assert session.big.int == 2**63 - 1


def test_an_int_beyond_64_bits_is_stored_as_text_that_incr_refuses(make_session, redis_client, key_of):
    """``session.big = 10**30`` stores the decimal text and reads back exactly; incr() on it raises SessionValueError."""
    session = make_session()
    session.big = 10**30
    assert session.big.int == 10**30
    assert redis_client.hget(key_of(session.session_id), "big") == b"1" + b"0" * 30
    with pytest.raises(SessionValueError, match="'big'"):
        session.incr("big")
    assert session.big.int == 10**30


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_and_write_nothing(make_session, redis_client, prefix, number):
    """``session.score = float("nan")`` (or infinity) raises TypeError naming the field, before Redis is touched."""
    session = make_session()
    with pytest.raises(TypeError, match="session field 'score'"):
        session.score = number
    with pytest.raises(TypeError, match="session field 'score'"):
        session.update(name="alice", score=number)
    assert session.session_id is None
    assert all_keys(redis_client, prefix) == []


# -- clear -----------------------------------------------------------------------------------


def test_clear_removes_every_field_but_keeps_the_session(make_session, redis_client, key_of):
    """clear() empties the app's fields; the id, the user binding and waiting flashes stay, and later writes use the same id."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)
    session.update(name="alice", count=3)
    anonymous_id = session.session_id
    session.bind_user("alice")
    session.flash("Saved")
    session_id = session.session_id

    session.clear()

    assert len(session) == 0
    assert session.load() == {}
    assert session.name.none
    assert session.session_id == session_id
    assert session.user_id == "alice"
    session.theme = "dark"
    assert session.session_id == session_id
    assert session.load() == {"theme": Value(b"dark")}
    assert redis_client.hget(key_of(session_id), "theme") == b"dark"
    assert cookie.events == [("issue", anonymous_id), ("issue", session_id)]
    assert session.flashes() == [("message", "Saved")]


# -- field names -----------------------------------------------------------------------------


def test_method_names_work_as_fields_through_item_access(make_session):
    """``s["load"] = 1`` stores a field named load, while ``s.load`` stays the method."""
    session = make_session()
    session["load"] = 1
    session["get"] = "x"

    assert session["load"].int == 1
    assert session["get"].str == "x"
    assert callable(session.load)
    assert session.load() == {"load": Value(b"1"), "get": Value(b"x")}
    assert session.get("get").str == "x"


# The awaitable API refuses every assignment, method name or not: test_async.py covers it.
@pytest.mark.parametrize("integration", ["direct", "tornado", "flask"], indirect=True)
@pytest.mark.parametrize("name", ["load", "get", "incr", "session_id"])
def test_assigning_a_method_name_as_an_attribute_says_to_use_item_access(make_session, name):
    """``s.load = 1`` raises AttributeError pointing at ``s["load"] = 1``, and writes nothing."""
    session = make_session()
    session.other = 1
    with pytest.raises(AttributeError, match=re.escape(f"session[{name!r}]")):
        setattr(session, name, 1)
    assert name not in session


def test_a_subclass_method_name_is_not_writable_as_an_attribute(make_settings, registry):
    """A Session subclass's own method is protected like the built-ins: ``s.greeting = 1`` raises AttributeError, other names write."""
    from redis_session.session import Session

    class GreetingSession(Session):
        def greeting(self) -> str:
            return "hello " + self.name.str

    settings = make_settings()
    session = GreetingSession(registry.store_for(settings), settings, None, RecordingCookie())
    session.name = "alice"
    with pytest.raises(AttributeError, match=re.escape("session['greeting']")):
        session.greeting = 1  # type: ignore[method-assign]
    assert session.greeting() == "hello alice"
    assert "greeting" not in session


@pytest.mark.parametrize("name", ["__rs:created", "__rs:user", "__rs:flash:000000000001", "__rs:flashseq"])
def test_reserved_names_are_refused(make_session, redis_client, key_of, name):
    """Reading, writing, deleting or incrementing a ``__rs:`` field raises ValueError and changes nothing, bound to a user or not."""
    session = make_session()
    session.name = "alice"

    for bound in (False, True):
        if bound:
            session.bind_user("alice")
            session.flash("Welcome")
        before = redis_client.hgetall(key_of(session.session_id))
        for attempt in (
            lambda: session.set(name, "forged"),
            lambda: session.__setitem__(name, "forged"),
            lambda: session.update({name: "forged"}),
            lambda: session.update({"ok": 1, name: "forged"}),
            lambda: session.delete(name),
            lambda: session.incr(name),
            lambda: session.get(name),
        ):
            with pytest.raises(ValueError, match="reserved"):
                attempt()
        assert redis_client.hgetall(key_of(session.session_id)) == before

    assert session.user_id == "alice"


def test_names_must_be_str(make_session):
    """A field name that is not a str (int, bytes, None) raises TypeError."""
    session = make_session()
    session.name = "alice"
    with pytest.raises(TypeError):
        session[1] = "x"
    with pytest.raises(TypeError):
        session.get(b"name")
    with pytest.raises(TypeError):
        session.update({None: "x"})
    with pytest.raises(TypeError):
        session.delete(3)
    with pytest.raises(TypeError):
        session.incr(b"count")
    with pytest.raises(ValueError, match="empty"):
        session[""] = "x"
    assert sorted(session) == ["name"]


# -- lazy creation ---------------------------------------------------------------------------


def test_a_new_session_that_only_reads_creates_nothing(make_session, redis_client, prefix):
    """Reads (flashes() too) on a session with no id give fallbacks, create no key and send no cookie."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)

    assert session.count.int == 0
    assert session["name"].str == ""
    assert session.get("prefs").json == {}
    assert "name" not in session
    assert len(session) == 0
    assert list(session) == []
    assert session.load() == {}
    assert session.get_many("a", "b") == [Value(None), Value(None)]
    assert session.flashes() == []

    assert session.session_id is None
    assert all_keys(redis_client, prefix) == []
    assert cookie.events == []


def test_the_first_write_mints_an_id_and_sends_one_cookie(make_session, redis_client, key_of):
    """The first write creates the session under a new random id and sends its cookie exactly once."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)

    session.count = 1
    session_id = session.session_id
    session.name = "alice"
    session.incr("count")
    session.update(a=1, b=2)

    assert session_id is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", session_id)  # >= 128 random bits
    assert session.session_id == session_id
    assert redis_client.exists(key_of(session_id)) == 1
    assert redis_client.hget(key_of(session_id), "count") == b"2"
    assert cookie.events == [("issue", session_id)]


def test_each_new_session_gets_its_own_id(make_session):
    """Two new sessions never share an id."""
    first, second = make_session(), make_session()
    first.n = 1
    second.n = 2
    assert first.session_id != second.session_id
    assert first.n.int == 1


def test_incr_on_a_new_session_creates_it(make_session, redis_client, key_of):
    """incr() is a write: on a new session it mints an id and sends the cookie."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)
    assert session.incr("visits") == 1
    assert redis_client.hget(key_of(session.session_id), "visits") == b"1"
    assert cookie.events == [("issue", session.session_id)]


def test_deleting_or_clearing_a_new_session_creates_nothing(make_session, redis_client, prefix):
    """delete(), del, clear() and an empty update() on a session with no id create no key and send no cookie."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)

    session.delete("a", "b")
    del session["c"]
    del session.d
    session.name = None
    session.clear()
    session.update()

    assert session.session_id is None
    assert all_keys(redis_client, prefix) == []
    assert cookie.events == []


# -- no revival ------------------------------------------------------------------------------


def test_an_unknown_id_is_never_revived(make_session, redis_client, key_of):
    """A (validly signed) session id Redis does not know reads as empty; the next write goes to a new id, which later requests use."""
    presented = unknown_id()
    cookie = RecordingCookie()
    session = make_session(presented, cookie=cookie)

    assert session.count.int == 0
    assert session.load() == {}
    session.count = 1

    new_id = session.session_id
    assert new_id not in (None, presented)
    assert redis_client.exists(key_of(presented)) == 0
    assert redis_client.hget(key_of(new_id), "count") == b"1"
    assert cookie.events[-1] == ("issue", new_id)
    assert ("issue", presented) not in cookie.events
    assert session.incr("count") == 2
    assert session.session_id == new_id
    assert redis_client.exists(key_of(presented)) == 0


@pytest.mark.parametrize("first_write", ["set", "update", "incr", "flash"])
def test_writing_to_an_unknown_id_goes_to_a_new_id(make_session, redis_client, key_of, first_write):
    """A write (set, update, incr or flash) as the first thing on an unknown id creates a new id, never the presented one."""
    presented = unknown_id()
    session = make_session(presented)

    if first_write == "set":
        session.count = 1
    elif first_write == "update":
        session.update(count=1, name="alice")
    elif first_write == "incr":
        assert session.incr("count") == 1
    else:
        session.flash("Hello")

    assert session.session_id not in (None, presented)
    assert redis_client.exists(key_of(presented)) == 0
    assert redis_client.exists(key_of(session.session_id)) == 1


def test_a_session_deleted_by_someone_else_is_not_revived_by_a_read(make_session, redis_client, key_of):
    """Once the key is deleted behind the Session's back, reads are empty and the next write gets a new id."""
    session = make_session()
    session.update(count=1, name="alice")
    old_id = session.session_id

    redis_client.delete(key_of(old_id))

    assert session.count.int == 0
    session.theme = "dark"
    assert session.session_id not in (None, old_id)
    assert redis_client.exists(key_of(old_id)) == 0
    assert session.load() == {"theme": Value(b"dark")}


def test_a_session_deleted_by_someone_else_is_not_revived_by_a_write(make_session, redis_client, key_of):
    """A write or incr right after the key was deleted starts a new, empty session under a new id."""
    session = make_session()
    session.update(count=5, name="alice")
    old_id = session.session_id

    redis_client.delete(key_of(old_id))
    assert session.incr("count") == 1

    new_id = session.session_id
    assert new_id not in (None, old_id)
    assert redis_client.exists(key_of(old_id)) == 0
    assert session.name.none

    redis_client.delete(key_of(new_id))
    session.name = "bob"
    assert session.session_id not in (None, old_id, new_id)
    assert redis_client.exists(key_of(new_id)) == 0
    assert session.load() == {"name": Value(b"bob")}


# -- expiry ----------------------------------------------------------------------------------


def test_every_access_restarts_the_idle_timeout_and_an_idle_session_expires(make_session, redis_client, key_of):
    """Any one session call in a request puts the TTL back to ``expire``; a session left alone for longer is gone."""
    session = make_session(expire=100)
    session.count = 1
    key = key_of(session.session_id)
    assert 95 < redis_client.ttl(key) <= 100

    actions = {
        "read": lambda request: request.count.int,
        "missing-field read": lambda request: request.nickname.none,
        "get_many": lambda request: request.get_many("count", "nickname"),
        "load": lambda request: request.load(),
        "len": lambda request: len(request),
        "in": lambda request: "count" in request,
        "incr": lambda request: request.incr("count"),
        "write": lambda request: request.set("name", "alice"),
        "delete": lambda request: request.delete("name"),
    }
    for label, action in actions.items():
        redis_client.expire(key, 10)
        action(make_session(session.session_id, expire=100))
        assert 95 < redis_client.ttl(key) <= 100, label

    cookie = RecordingCookie()
    idle = make_session(cookie=cookie, expire=1)
    idle.n = 1
    idle_key = key_of(idle.session_id)
    assert 0 < redis_client.pttl(idle_key) <= 1000
    # as if 0.4 s had passed without a request (0.6 s left: a margin that a request on a busy
    # CI machine fits in; 0.2 s once did not)
    redis_client.pexpire(idle_key, 600)
    assert make_session(idle.session_id, expire=1).n.int == 1  # the next request reads
    assert redis_client.pttl(idle_key) > 600  # the TTL is back to about a second
    time.sleep(1.2)
    assert redis_client.exists(idle_key) == 0
    before = list(cookie.events)
    assert idle.n.none
    # the stale cookie is left alone (it names nothing; a concurrent login may have just replaced it)
    assert cookie.events == before


def test_a_request_that_outlasts_a_second_refreshes_the_ttl_again(make_session, redis_client, key_of):
    """Within one request the TTL is set again by the first call more than a second after the last refresh."""
    session = make_session(expire=100)
    session.count = 1
    key = key_of(session.session_id)
    request = make_session(session.session_id, expire=100)
    assert request.count.int == 1
    redis_client.expire(key, 10)
    time.sleep(1.05)
    assert request.count.int == 1
    assert 95 < redis_client.ttl(key) <= 100


def test_a_key_without_ttl_gets_one_back_on_the_next_read(make_session, redis_client, key_of):
    """A session key someone made persistent gets the idle timeout again at the next request's read."""
    session = make_session(expire=100)
    session.count = 1
    key = key_of(session.session_id)
    redis_client.persist(key)
    assert redis_client.ttl(key) == -1

    assert make_session(session.session_id, expire=100).count.int == 1

    assert 95 < redis_client.ttl(key) <= 100


def set_age(client: Any, key: str, seconds: int) -> None:
    """Pretend the session was created ``seconds`` ago (fake time instead of sleeping)."""
    client.hset(key, CREATED, int(time.time()) - seconds)


def test_max_lifetime_caps_the_ttl_and_ends_even_an_active_session(make_session, redis_client, key_of):
    """The TTL never outlasts what is left of max_lifetime, however active the session; past it the session is gone."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie, expire=100, max_lifetime=50)
    session.count = 1
    old_id = session.session_id
    key = key_of(old_id)
    assert 0 < redis_client.ttl(key) <= 50
    assert session.count.int == 1
    assert 0 < redis_client.ttl(key) <= 50

    for age in (10, 20, 30):  # fake time: the session is used again and again
        set_age(redis_client, key, age)
        assert session.incr("count") == age // 10 + 1
        # the TTL is the time left before the deadline, not the 100 s idle timeout
        assert 0 < redis_client.ttl(key) <= 50 - age
    set_age(redis_client, key, 40)
    assert session.count.int == 4  # a read caps it too
    assert 0 < redis_client.ttl(key) <= 10

    set_age(redis_client, key, 50)  # the deadline has come, however active the session was
    assert session.count.none
    assert redis_client.exists(key) == 0
    assert ("expire",) not in cookie.events  # the stale cookie names nothing: the next write replaces it
    session.count = 1
    assert session.session_id not in (None, old_id)
    assert cookie.events[-1] == ("issue", session.session_id)
    assert redis_client.exists(key) == 0
    assert session.count.int == 1

    forgotten = make_session(expire=100, max_lifetime=50)
    forgotten.count = 7
    forgotten_key = key_of(forgotten.session_id)
    set_age(redis_client, forgotten_key, 1000)  # long past the deadline
    assert forgotten.count.int == 0
    assert redis_client.exists(forgotten_key) == 0


# -- limits ----------------------------------------------------------------------------------


def test_a_value_over_max_value_bytes_is_refused(make_session, redis_client, key_of, prefix):
    """With max_value_bytes=10, an 11-byte value raises SessionLimitError: no field, no session and no cookie appear."""
    cookie = RecordingCookie()
    fresh = make_session(cookie=cookie, max_value_bytes=10)
    with pytest.raises(SessionLimitError, match="'big'"):
        fresh.big = "x" * 11
    assert fresh.session_id is None
    assert all_keys(redis_client, prefix) == []
    assert cookie.events == []

    session = make_session(max_value_bytes=10)
    session.small = "x" * 10
    key = key_of(session.session_id)
    with pytest.raises(SessionLimitError, match="'big'"):
        session.big = b"x" * 11
    with pytest.raises(SessionLimitError, match="'accents'"):
        session.accents = "é" * 6  # 6 characters, 12 bytes
    with pytest.raises(SessionLimitError, match="'big'"):
        session.update(small="y", big="x" * 11)

    assert redis_client.hexists(key, "big") == 0
    assert redis_client.hexists(key, "accents") == 0
    assert redis_client.hget(key, "small") == b"x" * 10


def test_a_flash_message_and_category_over_max_value_bytes_are_refused(make_session, redis_client, key_of, prefix):
    """With max_value_bytes=20, a flash over 20 bytes as category, NUL, message raises SessionLimitError; 12 bytes under 'message' fit."""
    fresh = make_session(max_value_bytes=20)
    with pytest.raises(SessionLimitError, match="session-max-value-bytes"):
        fresh.flash("x" * 20)
    assert fresh.session_id is None
    assert all_keys(redis_client, prefix) == []

    session = make_session(max_value_bytes=20)
    session.flash("x" * 12)  # "message" + NUL + 12 bytes = 20
    with pytest.raises(SessionLimitError, match="session-max-value-bytes"):
        session.flash("short", category="c" * 30)
    assert session.flashes() == [("message", "x" * 12)]
    assert session.flashes() == []


def test_a_field_past_max_fields_is_refused(make_session, redis_client, key_of):
    """With max_fields=3, a 4th field raises SessionLimitError and is not written; overwriting the 3 still works."""
    session = make_session(max_fields=3)
    session.update(a=1, b=2, c=3)
    key = key_of(session.session_id)

    with pytest.raises(SessionLimitError):
        session.d = 4
    with pytest.raises(SessionLimitError):
        session.update(a=10, e=5)

    assert redis_client.hexists(key, "d") == 0
    assert redis_client.hexists(key, "e") == 0
    assert redis_client.hget(key, "a") == b"1"

    session.a = 10
    session.update(b=20, c=30)
    assert session.incr("a") == 11
    assert session.load() == {"a": Value(b"11"), "b": Value(b"20"), "c": Value(b"30")}

    session.delete("c")
    session.d = 4
    assert sorted(session) == ["a", "b", "d"]


def test_swapping_a_field_at_max_fields_in_one_update(make_session):
    """With max_fields=3 full, update(c=None, d=4) ends with 3 fields, so it is allowed."""
    session = make_session(max_fields=3)
    session.update(a=1, b=2, c=3)

    session.update(c=None, d=4)

    assert sorted(session) == ["a", "b", "d"]


def test_a_swap_that_still_ends_over_max_fields_writes_nothing(make_session):
    """With max_fields=3 full, update(c=None, d=4, e=5) would end with 4 fields: refused, nothing changes."""
    session = make_session(max_fields=3)
    session.update(a=1, b=2, c=3)

    with pytest.raises(SessionLimitError, match="session-max-fields"):
        session.update(c=None, d=4, e=5)

    assert sorted(session) == ["a", "b", "c"]


def test_incr_of_a_new_field_past_max_fields_is_refused(make_session, redis_client, key_of):
    """With max_fields=3 full, incr() of a 4th field raises SessionLimitError and creates nothing."""
    session = make_session(max_fields=3)
    session.update(a=1, b=2, c=3)

    with pytest.raises(SessionLimitError, match="'d'"):
        session.incr("d")

    assert redis_client.hexists(key_of(session.session_id), "d") == 0
    assert session.incr("c") == 4


def test_too_many_fields_in_one_write_on_a_new_session_creates_nothing(make_session, redis_client, prefix):
    """With max_fields=3, update() of 4 fields on a new session raises SessionLimitError and creates no key."""
    cookie = RecordingCookie()
    session = make_session(max_fields=3, cookie=cookie)
    with pytest.raises(SessionLimitError):
        session.update(a=1, b=2, c=3, d=4)
    assert session.session_id is None
    assert all_keys(redis_client, prefix) == []
    assert cookie.events == []


# -- corrupt or old store state --------------------------------------------------------------


def test_a_key_that_is_not_a_hash_is_replaced_by_a_new_session(make_session, redis_client, key_of, caplog):
    """A session key holding a string reads as empty and expires the cookie; a write gets a new id; the warning logged hides the id."""
    presented = unknown_id()
    redis_client.set(key_of(presented), "x")
    cookie = RecordingCookie()
    session = make_session(presented, cookie=cookie)

    with caplog.at_level(logging.WARNING, logger="redis_session"):
        assert session.count.int == 0
        assert session.load() == {}
        session.count = 1

    assert session.session_id not in (None, presented)
    assert redis_client.hget(key_of(session.session_id), "count") == b"1"
    assert cookie.events == [("expire",), ("issue", session.session_id)]
    warnings = [record for record in caplog.records if record.name == "redis_session" and record.levelno >= logging.WARNING]
    assert any("not a hash" in record.getMessage() for record in warnings)
    assert all(presented not in record.getMessage() for record in caplog.records)


def test_a_write_to_a_key_that_is_not_a_hash_goes_to_a_new_id(make_session, redis_client, key_of):
    """A write (no read first) to a session whose key holds a string creates a new session and leaves that key alone."""
    presented = unknown_id()
    redis_client.set(key_of(presented), "x")
    session = make_session(presented)

    session.update(count=1, name="alice")

    assert session.session_id not in (None, presented)
    assert redis_client.get(key_of(presented)) == b"x"
    assert session.load() == {"count": Value(b"1"), "name": Value(b"alice")}


def test_bytes_that_are_not_utf8_read_as_empty_text_but_keep_their_raw_bytes(make_session, redis_client, key_of):
    """A field holding invalid UTF-8 reads as '' through .str while .raw keeps the bytes."""
    session = make_session()
    session.blob = b"\xff\xfe"
    redis_client.hset(key_of(session.session_id), "latin", b"caf\xe9")

    assert session.blob.str == ""
    assert session.blob.raw == b"\xff\xfe"
    assert session.latin.str == ""
    assert session.latin.raw == b"caf\xe9"
    assert session.load()["latin"].raw == b"caf\xe9"


@pytest.mark.parametrize("hash_ids", [True, False])
def test_a_session_written_by_0_2_1_is_read_and_kept(make_session, redis_client, key_of, hash_ids):
    """A plain hash from redis-session 0.2.1 (no ``__rs:created``) reads normally; on its first use it
    moves to a new id stored under a digest (every field with it, the old id dead, the new cookie
    sent), or with hash_ids off stays writable under its id."""
    old_id = secrets.token_hex(16)
    key = key_of(old_id)
    redis_client.hset(key, mapping={"count": b"3", "vip": b"True", "name": b"alice"})
    redis_client.expire(key, 500)
    cookie = RecordingCookie()
    session = make_session(old_id, cookie=cookie, expire=100, hash_ids=hash_ids)

    assert session.count.int == 3
    assert session.vip.bool is True
    assert sorted(session) == ["count", "name", "vip"]

    session.count = 4
    assert session.incr("count") == 5
    assert ("expire",) not in cookie.events
    if hash_ids:
        assert session.session_id != old_id and cookie.events == [("issue", session.session_id)]
        assert redis_client.exists(key) == 0
        redis_client.delete(moved_mark_key(key))  # as MOVE_FOLLOW_SECONDS later
        assert make_session(old_id).count.none  # the old id, which sat in Redis in the clear, is dead
        key = key_of(session.session_id)
        assert old_id not in key and session.session_id not in key
    else:
        assert session.session_id == old_id and cookie.events == []
    assert redis_client.hget(key, "count") == b"5"
    assert redis_client.hget(key, "name") == b"alice"
    assert 95 < redis_client.ttl(key) <= 100


def test_a_session_without_creation_time_gets_one_and_its_deadline_starts_then(make_session, redis_client, key_of):
    """With max_lifetime, a session lacking __rs:created (0.2.1 wrote none, or it was lost) keeps its data; its deadline starts now."""
    old_id = secrets.token_hex(16)
    old_key = key_of(old_id)
    redis_client.hset(old_key, mapping={"count": b"3"})
    redis_client.expire(old_key, 500)
    damaged = make_session(expire=100, max_lifetime=50)
    damaged.n = 1
    damaged_id = damaged.session_id
    redis_client.hdel(key_of(damaged_id), CREATED)
    redis_client.persist(key_of(damaged_id))  # no TTL left either
    session = make_session(old_id, expire=100, max_lifetime=50)

    assert session.count.int == 3
    assert damaged.n.int == 1

    assert damaged.session_id == damaged_id and redis_client.exists(old_key) == 0  # the old one moved (hashed keying)
    for key in (key_of(session.session_id), key_of(damaged_id)):
        assert abs(int(redis_client.hget(key, CREATED)) - time.time()) < 5
        assert 45 <= redis_client.ttl(key) <= 50


# -- round trips -----------------------------------------------------------------------------


def test_each_operation_is_one_round_trip(direct_session, make_settings, registry, monkeypatch):
    """get, set, update of 5 fields, incr, load, delete, ... each cost exactly one call to Redis."""
    store = registry.store_for(make_settings())
    calls: list[str] = []
    execute = store.execute

    def counting_execute(call: Any) -> Any:
        calls.append(call.script)
        return execute(call)

    monkeypatch.setattr(store, "execute", counting_execute)

    def round_trips(action: Callable[[], Any]) -> int:
        before = len(calls)
        action()
        return len(calls) - before

    session = direct_session()
    assert session._store is store
    assert round_trips(lambda: session.set("count", 1)) == 1  # creates the session
    assert round_trips(lambda: session.get("count")) == 1
    assert round_trips(lambda: session.count) == 1
    assert round_trips(lambda: session["count"]) == 1
    assert round_trips(lambda: session.set("name", "alice")) == 1
    assert round_trips(lambda: session.update(a=1, b=2, c=3, d=4, e=5)) == 1
    assert round_trips(lambda: session.incr("count")) == 1
    assert round_trips(lambda: session.incr("ratio", 0.5)) == 1
    assert round_trips(lambda: session.load()) == 1
    assert round_trips(lambda: session.get_many("a", "b", "c")) == 1
    assert round_trips(lambda: session.keys()) == 1
    assert round_trips(lambda: len(session)) == 1
    assert round_trips(lambda: "a" in session) == 1
    assert round_trips(lambda: session.delete("a", "b")) == 1
    assert round_trips(lambda: session.clear()) == 1
    assert round_trips(lambda: bool(session)) == 0


def test_reads_on_a_new_session_cost_no_round_trip(direct_session, make_settings, registry, monkeypatch):
    """A session with no id answers reads, deletes and clear() without talking to Redis; its first write is one call."""
    store = registry.store_for(make_settings())
    calls: list[str] = []
    execute = store.execute
    monkeypatch.setattr(store, "execute", lambda call: calls.append(call.script) or execute(call))

    session = direct_session()
    assert session.get("count").none
    assert session.count.none
    assert session["count"].none
    session.get_many("a", "b")
    session.load()
    session.keys()
    len(session)
    "a" in session  # noqa: B015 - the membership test is the action under test
    session.delete("a")
    session.clear()
    session.update()
    assert calls == []

    session.incr("visits")
    assert calls == ["incr"]
