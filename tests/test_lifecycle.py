"""Session lifecycle: regenerate, destroy, flash messages, bind_user and SessionAdmin, on every
store and topology (expiry, max_lifetime and the library's own fields are in test_session.py).

Through ``make_session`` each test runs directly and inside real Tornado (sync and async) and
Flask requests (see tests/integrations.py); cookie changes reach the ``RecordingCookie`` from the
response's ``Set-Cookie`` either way. What the session left in Redis (keys, TTLs, bookkeeping
fields) is checked with the raw client of the test's store. Only the tests that step through the
session's own Redis calls (``session._core``) to act in the gap between two of them use
``direct_session``; the flash race drives Session objects from threads itself.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from redis_session import SessionAdmin
from redis_session.protocol import session_handle, session_key
from redis_session.session import Session
from redis_session.settings import SessionSettings
from tests.conftest import RecordingCookie
from tests.redis_servers import RedisServer
from tests.support import TestStores

CREATED = "__rs:created"



@pytest.fixture
def store_url(topology_store_url: str) -> str:
    """This behaviour suite runs on every store and topology (conftest.TOPOLOGIES)."""
    return topology_store_url


@pytest.fixture
def redis_client(make_settings: Callable[..., SessionSettings], registry: TestStores) -> Any:
    """The raw client on the test's store, to look at (and age) what the sessions wrote."""
    return registry.store_for(make_settings()).client


@pytest.fixture
def keys_of(prefix: str) -> Callable[[str], str]:
    """``keys_of(session_id)``: the Redis key of a session under the test's prefix."""
    return lambda session_id: session_key(prefix, session_id)


def set_age(client: Any, key: str, seconds: int) -> None:
    """Pretend the session was created ``seconds`` ago (fake time instead of sleeping)."""
    client.hset(key, CREATED, int(time.time()) - seconds)


def all_keys(client: Any, prefix: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{prefix}:*"))


# -- regenerate ------------------------------------------------------------------------------


def test_regenerate_gives_a_new_id_and_keeps_the_data(make_session, redis_client, keys_of):
    """regenerate() moves the data and waiting flashes to a new id, deletes the old key and sends the new cookie."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)
    session.user = "alice"
    session.flash("Saved")
    old_id = session.session_id

    session.regenerate()

    assert session.session_id not in (None, old_id)
    assert session.user.str == "alice"
    assert redis_client.exists(keys_of(old_id)) == 0
    assert cookie.events[-1] == ("issue", session.session_id)
    assert session.flashes() == [("message", "Saved")]


def test_regenerate_on_a_session_that_does_not_exist_yet_does_nothing(make_session, redis_client, prefix):
    """regenerate() before anything was written creates no key and sends no cookie."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)
    session.regenerate()
    assert session.session_id is None
    assert cookie.events == []
    assert all_keys(redis_client, prefix) == []


def test_the_old_id_is_dead_after_regenerate(make_session, redis_client, keys_of):
    """A request still holding the pre-regenerate id sees an empty session, and its write gets a new id."""
    session = make_session()
    session.secret = "for alice only"
    old_id = session.session_id
    stale_reader = make_session(old_id)
    stale_writer = make_session(old_id)

    session.regenerate()

    assert stale_reader.secret.none
    assert stale_reader.session_id is None
    stale_writer.note = "late write"
    assert stale_writer.session_id not in (old_id, session.session_id)
    assert redis_client.exists(keys_of(old_id)) == 0
    assert redis_client.hget(keys_of(stale_writer.session_id), "secret") is None
    assert session.note.none and session.secret.str == "for alice only"


def test_regenerate_keeps_the_absolute_deadline(make_session, redis_client, keys_of):
    """regenerate() copies the creation time, so a session near its max_lifetime does not get a fresh one."""
    session = make_session(max_lifetime=100)
    session.n = 1
    set_age(redis_client, keys_of(session.session_id), 90)
    created = redis_client.hget(keys_of(session.session_id), CREATED)

    session.regenerate()

    new_key = keys_of(session.session_id)
    assert redis_client.hget(new_key, CREATED) == created
    assert 0 < redis_client.ttl(new_key) <= 10


# -- destroy ---------------------------------------------------------------------------------


def test_destroy_deletes_the_key_and_a_later_write_starts_a_new_session(make_session, redis_client, keys_of):
    """destroy() deletes the key and expires the cookie; a later write in the same request gets a new id."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)
    session.user = "alice"
    old_id = session.session_id

    session.destroy()

    assert redis_client.exists(keys_of(old_id)) == 0
    assert cookie.events[-1] == ("expire",)
    assert session.session_id is None
    assert session.user.none

    session.flash("You have been signed out.")
    assert session.session_id not in (None, old_id)
    assert cookie.events[-1] == ("issue", session.session_id)
    assert redis_client.exists(keys_of(old_id)) == 0
    assert session.flashes() == [("message", "You have been signed out.")]


WRITES = {
    "set": lambda session: session.set("cart", "3 items"),
    "update": lambda session: session.update(cart="3 items"),
    "incr": lambda session: session.incr("clicks"),
    "flash": lambda session: session.flash("late"),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_write_racing_a_logout_never_revives_the_session(make_session, redis_client, keys_of, prefix, write):
    """Request A loaded the session, request B logged out, then A writes: the old id stays dead."""
    session = make_session()
    session.user = "alice"
    old_id = session.session_id
    request_a, request_b = make_session(old_id), make_session(old_id)
    assert request_a.user.str == "alice"

    request_b.destroy()
    WRITES[write](request_a)

    assert request_a.session_id not in (None, old_id)
    assert redis_client.exists(keys_of(old_id)) == 0
    assert request_a.user.none  # the logged-out user's data did not follow
    keys = all_keys(redis_client, prefix)
    assert keys == [keys_of(request_a.session_id).encode()]
    assert all(redis_client.ttl(key) > 0 for key in keys)


# -- flash messages --------------------------------------------------------------------------


def test_flashes_come_oldest_first_and_are_removed_when_read(make_session):
    """flashes() returns [(category, message)] oldest first, and a second call returns nothing."""
    session = make_session()
    session.flash("one")
    session.flash("two", "error")
    session.flash("three")
    assert session.flashes() == [("message", "one"), ("error", "two"), ("message", "three")]
    assert session.flashes() == []


def test_flashes_can_be_filtered_by_category(make_session):
    """flashes("error") or flashes([...]) returns only those categories (none for []); the others keep waiting."""
    session = make_session()
    session.flash("a")
    session.flash("b", "error")
    session.flash("c", "warning")
    session.flash("d")
    session.flash("e", "error")

    assert session.flashes([]) == []
    assert session.flashes("error") == [("error", "b"), ("error", "e")]
    assert session.flashes(["warning", "nothing-of-this"]) == [("warning", "c")]
    assert session.flashes("error") == []
    assert session.flashes() == [("message", "a"), ("message", "d")]


def test_flashes_survive_into_another_request(make_session):
    """A flash queued in one request is read in the next (another Session object on the same id)."""
    first_request = make_session()
    first_request.flash("Saved", "success")
    next_request = make_session(first_request.session_id)
    assert next_request.flashes() == [("success", "Saved")]
    assert first_request.flashes() == []


def test_concurrent_flashes_never_return_a_message_twice(redis_server: RedisServer, registry, prefix):
    """Ten requests popping flashes while fifty are queued each get distinct messages, and none is lost."""
    settings = SessionSettings(redis_url=redis_server.url, prefix=prefix, cookie_secure=False)
    store = registry.store_for(settings)
    producer = Session(store, settings, None, RecordingCookie())
    producer.flash("message 0")
    session_id = producer.session_id
    done = threading.Event()
    start = threading.Barrier(11)

    def produce() -> None:
        start.wait()
        for number in range(1, 50):
            producer.flash(f"message {number}")
        done.set()

    def consume(_: int) -> list[tuple[str, str]]:
        request = Session(store, settings, session_id, RecordingCookie())
        popped: list[tuple[str, str]] = []
        start.wait()
        while not done.is_set():
            popped.extend(request.flashes())
        popped.extend(request.flashes())
        return popped

    with concurrent.futures.ThreadPoolExecutor(max_workers=11) as pool:
        writer = pool.submit(produce)
        readers = [pool.submit(consume, index) for index in range(10)]
        writer.result(timeout=30)
        popped = [message for reader in readers for _, message in reader.result(timeout=30)]

    assert sorted(popped) == sorted(f"message {number}" for number in range(50))
    per_reader = [[message for _, message in reader.result()] for reader in readers]
    assert sum(1 for messages in per_reader if messages) > 1, "the readers did not actually race"


# -- bind_user and SessionAdmin --------------------------------------------------------------


def test_bind_user_regenerates_and_records_the_user(make_session, redis_client, keys_of, prefix):
    """bind_user("alice") gives a new id, user_id reads "alice", and the user's index key holds the session."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)
    session.cart = "3 items"
    anonymous_id = session.session_id
    assert session.user_id is None

    session.bind_user("alice")

    assert session.session_id != anonymous_id
    assert redis_client.exists(keys_of(anonymous_id)) == 0
    assert cookie.events[-1] == ("issue", session.session_id)
    assert session.user_id == "alice"
    assert session.cart.str == "3 items"
    assert make_session(session.session_id).user_id == "alice"
    index = f"{prefix}:users:alice"
    assert redis_client.exists(index) == 1
    assert redis_client.zrange(index, 0, -1) == [session.handle.encode()]  # the index never names an id


def test_bind_user_on_a_first_visit_creates_the_session(make_session, redis_client, keys_of):
    """bind_user() without any earlier write creates a bound session with a creation time and a cookie."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)
    session.bind_user("alice")
    assert session.session_id is not None
    assert cookie.events == [("issue", session.session_id)]
    assert session.user_id == "alice"
    assert redis_client.hget(keys_of(session.session_id), CREATED) is not None
    assert redis_client.ttl(keys_of(session.session_id)) > 0


def signed_in(make_session: Callable[..., Any], user: str, **settings: Any) -> Any:
    session = make_session(**settings)
    session.visits = 1
    session.bind_user(user)
    return session


def test_sessions_for_user_lists_live_sessions(make_session, make_settings, registry):
    """SessionAdmin.sessions_for_user shows each live session with created, last_seen and a handle."""
    started = time.time()
    laptop, phone = signed_in(make_session, "alice"), signed_in(make_session, "alice")
    signed_in(make_session, "bob")
    admin = SessionAdmin(make_settings(), registry.store_for(make_settings()))

    sessions = admin.sessions_for_user("alice")

    assert {info.handle for info in sessions} == {session_handle(laptop.session_id), session_handle(phone.session_id)}
    for info in sessions:
        assert info.user_id == "alice"
        assert started - 2 <= info.created <= time.time() + 1
        assert started - 2 <= info.last_seen <= time.time() + 1
        assert info.expires > time.time()
        assert laptop.session_id not in repr(info) and phone.session_id not in repr(info)
    assert admin.sessions_for_user("nobody") == []


def test_sessions_for_user_drops_ended_sessions_from_the_index(make_session, make_settings, registry, redis_client, keys_of, prefix):
    """Destroyed, deleted and expired sessions disappear from the list, and from the user's index."""
    kept, logged_out, deleted, expired = (signed_in(make_session, "alice") for _ in range(4))
    admin = SessionAdmin(make_settings(), registry.store_for(make_settings()))
    index = f"{prefix}:users:alice"

    logged_out.destroy()
    redis_client.delete(keys_of(deleted.session_id))
    redis_client.pexpire(keys_of(expired.session_id), 1)
    time.sleep(0.01)
    assert redis_client.zcard(index) == 3  # cleaned lazily: nothing watched the key go

    assert [info.handle for info in admin.sessions_for_user("alice")] == [session_handle(kept.session_id)]
    assert redis_client.zrange(index, 0, -1) == [kept.handle.encode()]


def test_revoke_ends_one_session_by_its_handle(make_session, make_settings, registry):
    """revoke(user, handle) ends exactly that session; the other keeps working."""
    laptop, phone = signed_in(make_session, "alice"), signed_in(make_session, "alice")
    admin = SessionAdmin(make_settings(), registry.store_for(make_settings()))

    assert admin.revoke("alice", session_handle(phone.session_id)) == 1

    assert make_session(phone.session_id).user_id is None
    assert make_session(laptop.session_id).user_id == "alice"
    assert [info.handle for info in admin.sessions_for_user("alice")] == [session_handle(laptop.session_id)]
    assert admin.revoke("alice", session_handle(phone.session_id)) == 0
    assert admin.revoke("bob", session_handle(laptop.session_id)) == 0  # another user's handle ends nothing
    assert make_session(laptop.session_id).user_id == "alice"


def test_revoke_user_signs_out_everywhere_else(make_session, make_settings, registry):
    """revoke_user(user, keep=current id) ends every other session of the user and keeps this one."""
    current = signed_in(make_session, "alice")
    others = [signed_in(make_session, "alice") for _ in range(3)]
    bob = signed_in(make_session, "bob")
    admin = SessionAdmin(make_settings(), registry.store_for(make_settings()))

    assert admin.revoke_user("alice", keep=current.session_id) == 3

    assert all(make_session(other.session_id).visits.none for other in others)
    assert current.visits.int == 1 and bob.visits.int == 1
    assert [info.handle for info in admin.sessions_for_user("alice")] == [session_handle(current.session_id)]
    assert admin.revoke_user("alice") == 1
    assert current.visits.none


def test_max_per_user_ends_the_oldest_session(make_session, make_settings, registry):
    """With max_per_user=2, a third sign-in ends the user's oldest session."""
    first, second, third = (signed_in(make_session, "alice", max_per_user=2) for _ in range(3))
    admin = SessionAdmin(make_settings(), registry.store_for(make_settings()))

    assert make_session(first.session_id).user_id is None
    assert first.visits.none
    assert second.user_id == "alice" and third.user_id == "alice"
    assert {info.handle for info in admin.sessions_for_user("alice")} == {
        session_handle(second.session_id), session_handle(third.session_id)
    }


# -- races inside regenerate() and bind_user(), and damaged bookkeeping -------------------------


def run_in_steps(session: Session, operation: Any) -> Any:
    """Drive one session operation call by call, as the session does, but pause before each
    Redis call (yielding it) so the test can act in the gap as a concurrent request would."""
    execute = session._store.execute
    try:
        call = next(operation)
        while True:
            yield call
            call = operation.send(execute(call))
    except StopIteration:
        return


def test_a_write_during_regenerate_goes_to_a_new_session_of_its_own(direct_session, redis_client, keys_of):
    """A write with the old id while regenerate() runs lands in a new session of its own, never in the key being moved away."""
    session = direct_session()
    session.user = "alice"
    old_id = session.session_id
    request_b = direct_session(old_id)
    steps = run_in_steps(session, session._core.regenerate())
    next(steps)  # the first call (the move starts) is about to run
    next(steps)  # it ran; the rest of the move is about to run

    request_b.cart = "3 items"
    for _ in steps:
        pass

    assert request_b.session_id not in (None, old_id, session.session_id)
    assert request_b.cart.str == "3 items"
    assert session.user.str == "alice" and session.cart.none
    assert redis_client.exists(keys_of(old_id)) == 0


def bound_keys(redis_client: Any, prefix: str, user: str) -> list[bytes]:
    """Keys of live sessions bound to ``user``."""
    return sorted(key for key in redis_client.scan_iter(match=f"{prefix}:sessions:*")
                  if redis_client.hget(key, "__rs:user") == user.encode())


@pytest.mark.parametrize("gap", range(6))
def test_revoke_user_racing_a_sign_in_never_leaves_a_session_it_missed(
    direct_session, make_settings, registry, redis_client, keys_of, prefix, gap
):
    """revoke_user() racing a bind_user() either ends the sign-in or leaves it listed: no bound session escapes both."""
    admin = SessionAdmin(make_settings(), registry.store_for(make_settings()))
    session = direct_session()
    session.cart = "3 items"
    listed = False  # has the new id been written to alice's index yet?
    revoked_after_listing = False
    for index, call in enumerate(run_in_steps(session, session._core.regenerate("alice"))):
        if index == gap:
            admin.revoke_user("alice")
            revoked_after_listing = listed
        if call.script == "user_index" and call.args[0] == "add":
            listed = True
    if gap >= index + 1:  # after the last call: an ordinary revoke of a finished sign-in
        admin.revoke_user("alice")
        revoked_after_listing = True

    if revoked_after_listing:
        assert session.user_id is None
        assert bound_keys(redis_client, prefix, "alice") == []
    else:
        assert session.user_id == "alice"
        assert bound_keys(redis_client, prefix, "alice") == [keys_of(session.session_id).encode()]
        assert [info.handle for info in admin.sessions_for_user("alice")] == [session.handle]


def test_max_per_user_counts_only_sessions_that_still_exist(make_session, make_settings, registry, redis_client, keys_of):
    """With max_per_user=2, a session that expired no longer counts: a new sign-in ends no live session."""
    first, second = (signed_in(make_session, "alice", max_per_user=2) for _ in range(2))
    redis_client.delete(keys_of(second.session_id))  # as if it had expired

    third = signed_in(make_session, "alice", max_per_user=2)

    assert first.user_id == "alice" and first.visits.int == 1
    admin = SessionAdmin(make_settings(), registry.store_for(make_settings()))
    assert {info.handle for info in admin.sessions_for_user("alice")} == {first.handle, third.handle}


def test_a_users_index_expires_once_no_session_it_lists_can_be_used(make_session, redis_client, prefix):
    """The user index gets a TTL: the cookie lifetime (or the absolute lifetime, if shorter) plus an hour plus the idle timeout."""
    signed_in(make_session, "alice", expire=600)
    assert 0 < redis_client.ttl(f"{prefix}:users:alice") <= 30 * 86400 + 3600 + 600

    signed_in(make_session, "bob", expire=600, max_lifetime=7200)
    assert 7200 < redis_client.ttl(f"{prefix}:users:bob") <= 7200 + 3600 + 600


def test_a_damaged_user_index_is_replaced(make_session, make_settings, registry, redis_client, prefix):
    """A user index key of the wrong type does not break sign-in or the session list: it is replaced."""
    redis_client.set(f"{prefix}:users:alice", "not a sorted set")
    admin = SessionAdmin(make_settings(), registry.store_for(make_settings()))
    assert admin.sessions_for_user("alice") == []

    session = signed_in(make_session, "alice")

    assert [info.handle for info in admin.sessions_for_user("alice")] == [session.handle]


def test_a_bound_user_id_that_is_not_utf8_reads_as_none_and_logout_still_works(make_session, redis_client, keys_of):
    """A damaged (non-UTF-8) __rs:user reads as no user; destroy() and bind_user() still work."""
    session = signed_in(make_session, "alice")
    redis_client.hset(keys_of(session.session_id), "__rs:user", b"\xff\xfe")

    assert session.user_id is None
    session.bind_user("bob")
    assert session.user_id == "bob"
    old_id = session.session_id
    redis_client.hset(keys_of(old_id), "__rs:user", b"\xff\xfe")
    session.destroy()
    assert session.session_id is None
    assert redis_client.exists(keys_of(old_id)) == 0


def test_a_damaged_flash_counter_does_not_stop_flash_messages(make_session, redis_client, keys_of):
    """A flash counter that is not a number is rebuilt: new messages still queue, oldest first."""
    session = make_session()
    session.flash("one")
    redis_client.hset(keys_of(session.session_id), "__rs:flashseq", "abc")
    session.flash("two")
    assert session.flashes() == [("message", "one"), ("message", "two")]


@pytest.mark.parametrize("user_id", ["", "\udcff"])
def test_bind_user_refuses_an_unusable_user_id(make_session, redis_client, prefix, user_id):
    """bind_user() with an empty or non-encodable user id raises ValueError and writes nothing."""
    session = make_session()
    with pytest.raises(ValueError, match="user id"):
        session.bind_user(user_id)
    assert all_keys(redis_client, prefix) == []


@pytest.mark.parametrize("max_lifetime", [0, 3600])
def test_sessions_with_thousands_of_fields_work_when_the_limit_allows_them(make_session, max_lifetime):
    """With session-max-fields raised to 6000, writing, reading, loading and regenerating 5000 fields all work."""
    session = make_session(max_fields=6000, max_lifetime=max_lifetime)
    fields = {f"f{index}": str(index) for index in range(5000)}
    session.update(fields)
    names = sorted(fields)

    assert [value.str for value in session.get_many(*names)] == [fields[name] for name in names]
    session.regenerate()
    assert {name: value.str for name, value in session.load().items()} == fields
    session.delete(*names[:4000])
    assert len(session) == 1000
