"""What an attacker, a broken proxy, a damaged store or a crowd of requests gets, over real HTTP.

Every test drives a live Tornado app with a cookie-keeping client and checks what a browser (or
a cache, or a log reader) would see, then looks in Redis for anything left behind.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import logging
import os
import pickle
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tornado.web

from redis_session.errors import SessionLimitError
from redis_session.settings import SessionSettings
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler
from tests.conftest import COOKIE_SECRET, app_settings
from tests.redis_servers import RedisServer
from tests.support import TestStores
from tests.test_example import ASYNC_EXAMPLE, EXAMPLE_SECRET, RunningExample
from tests.web import Browser, LiveServer, Response

COOKIE = "session-id"


# -- the app under attack --------------------------------------------------------------------


class Note(SessionHandler):
    """GET reads the note (a read-only page), POST writes it."""

    def get(self) -> None:
        self.write(self.session.note.str or "nothing")

    def post(self) -> None:
        self.session.note = self.request.body.decode("utf-8")
        self.write("saved")


class Counter(SessionHandler):
    def post(self) -> None:
        self.write(str(self.session.incr("count")))


class Field(SessionHandler):
    def post(self, name: str) -> None:
        self.session[name] = name.upper()
        self.write("ok")


class Login(SessionHandler):
    def post(self) -> None:
        self.session.bind_user("alice")
        self.write("welcome")


class WhoAmI(SessionHandler):
    def get(self) -> None:
        self.write(self.session.user_id or "anonymous")


class Logout(SessionHandler):
    def post(self) -> None:
        self.session.destroy()
        self.write("bye")


class Limited(SessionHandler):
    """The app's own handling of SessionLimitError: it answers 'limit'."""

    def post(self, name: str) -> None:
        try:
            self.session[name] = self.request.body
        except SessionLimitError:
            self.write("limit")
            return
        self.write("ok")


class Payload(SessionHandler):
    def get(self) -> None:
        value = self.session.get("payload")
        self.write(json.dumps({"json": value.json, "str": value.str}))


class Flashes(SessionHandler):
    def get(self) -> None:
        self.write(json.dumps(self.get_flashed_messages()))

    def post(self) -> None:
        self.flash(self.request.body.decode("utf-8"))
        self.write("queued")


class Broken(SessionHandler):
    """An application bug: incr() on a text field raises, and Tornado logs a traceback."""

    def get(self) -> None:
        self.session.note = "text"
        self.session.incr("note")


HANDLERS = [
    ("/note", Note), ("/count", Counter), (r"/field/(\w+)", Field), ("/login", Login), ("/whoami", WhoAmI),
    ("/logout", Logout), (r"/limited/(\w+)", Limited), ("/payload", Payload), ("/flashes", Flashes),
    ("/broken", Broken),
]


def start(serve: Callable[..., LiveServer], store_url: str, prefix: str, cookie_secret: Any = COOKIE_SECRET,
          app: dict[str, Any] | None = None, **overrides: Any) -> LiveServer:
    """The app above on ``store_url`` under ``prefix``; ``overrides`` are redis_session settings."""
    return serve(HANDLERS, cookie_secret=cookie_secret, redis_session=app_settings(store_url, prefix, **overrides),
                 **(app or {}))


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def store(registry: TestStores) -> Callable[[str], Any]:
    """``store(url)``: a raw client on the same store the app uses, to look at and damage it."""
    return lambda url: registry.store_for(SessionSettings(redis_url=url)).client


def signed(session_id: str, secret: Any = COOKIE_SECRET, **options: Any) -> str:
    """A session cookie value signed like the app signs it (quoted, as Tornado sends it)."""
    return '"' + tornado.web.create_signed_value(secret, COOKIE, session_id, **options).decode() + '"'


def session_id_of(browser: Browser, secret: Any = COOKIE_SECRET) -> str:
    value = tornado.web.decode_signed_value(secret, COOKIE, browser.cookies[COOKIE].strip('"'), max_age_days=31)
    assert value is not None
    return value.decode()


def is_expiry(header: str) -> bool:
    """A Set-Cookie that makes the browser drop the cookie (Max-Age=0 or an Expires in the past)."""
    return "Max-Age=0" in header or "01 Jan 1970" in header


def issued_id(response: Response) -> str | None:
    """The session id a response's Set-Cookie carries (``None`` when it sets none or expires it)."""
    for header in response.set_cookies:
        if header.startswith(COOKIE + "=") and not is_expiry(header):
            raw = header.split("=", 1)[1].split(";", 1)[0].strip('"')
            value = tornado.web.decode_signed_value(COOKIE_SECRET, COOKIE, raw, max_age_days=31)
            return value.decode() if value else None
    return None


def expires_the_cookie(response: Response) -> bool:
    return any(header.startswith(COOKIE + "=") and is_expiry(header) for header in response.set_cookies)


def key(prefix: str, session_id: str) -> str:
    return f"{prefix}:sessions:{session_id}"


def session_keys(client: Any, prefix: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{prefix}:sessions:*"))


def new_browser(server: LiveServer, cookies: dict[str, str]) -> Browser:
    browser = server.browser()
    browser.cookies = dict(cookies)
    return browser


# -- caches ----------------------------------------------------------------------------------


def test_responses_that_use_the_session_vary_on_cookie(serve, store_url, prefix):
    """Every response that looked at the session says Vary: Cookie, even a cookieless read."""
    browser = start(serve, store_url, prefix).browser()
    for response in (browser.get("/note"), browser.post("/note", b"hi"), browser.get("/note")):
        assert response.status == 200
        assert "Cookie" in (response.header("Vary") or "")


def test_responses_that_set_or_clear_the_cookie_are_private_and_not_stored(serve, store_url, prefix):
    """Creating, regenerating, expiring or dropping a stale session cookie comes with Cache-Control: private, no-store."""
    server = start(serve, store_url, prefix)
    browser = server.browser()
    created = browser.post("/note", b"hi")
    saved = dict(browser.cookies)
    regenerated = browser.post("/login")
    logged_out = browser.post("/logout")
    stale = new_browser(server, saved).get("/note")

    assert issued_id(created) and issued_id(regenerated)
    assert expires_the_cookie(logged_out) and expires_the_cookie(stale)
    for response in (created, regenerated, logged_out, stale):
        cache_control = response.header("Cache-Control") or ""
        assert "private" in cache_control and "no-store" in cache_control, response.header_list


# -- forged and unusual cookies ---------------------------------------------------------------


def test_two_session_cookies_in_one_request_are_both_ignored(serve, store_url, prefix, store, caplog):
    """Cookie tossing: with two session-id cookies neither is used, a write starts a new session, and a
    warning without either id is logged."""
    caplog.set_level(logging.WARNING, logger="redis_session")
    server = start(serve, store_url, prefix)
    alice, mallory = server.browser(), server.browser()
    alice.post("/note", b"alice's note")
    mallory.post("/note", b"mallory's note")
    id_a, id_b = session_id_of(alice), session_id_of(mallory)
    cookie_a, cookie_b = alice.cookies[COOKIE], mallory.cookies[COOKIE]
    both = {"Cookie": f"{COOKIE}={cookie_a}; {COOKIE}={cookie_b}"}
    victim = server.browser()

    assert victim.get("/note", headers=both).text == "nothing"
    written = victim.post("/note", b"fresh", headers=both)

    assert written.status == 200
    assert issued_id(written) not in (None, id_a, id_b)
    assert alice.get("/note").text == "alice's note" and mallory.get("/note").text == "mallory's note"
    assert len(session_keys(store(store_url), prefix)) == 3
    warnings = [record.getMessage() for record in caplog.records if record.name == "redis_session"]
    assert any("cookie tossing" in message for message in warnings)
    for secret in (id_a, id_b, cookie_a.strip('"'), cookie_b.strip('"')):
        assert secret not in caplog.text


def test_version_1_signed_cookies_are_ignored(serve, store_url, prefix):
    """A cookie signed with Tornado's old v1 format names no session, even for a live id and the right secret."""
    server = start(serve, store_url, prefix)
    owner = server.browser()
    owner.post("/note", b"mine")
    v1 = tornado.web.create_signed_value(COOKIE_SECRET, COOKIE, session_id_of(owner), version=1).decode()

    forged = new_browser(server, {COOKIE: v1})
    assert forged.get("/note").text == "nothing"
    assert owner.get("/note").text == "mine"


def test_rotated_cookie_secrets_accept_old_cookies_while_their_key_is_listed(serve, store_url, prefix):
    """With cookie_secret={0: old, 1: new} and key_version=1, cookies signed with key 0 still work until 0 is dropped."""
    before = start(serve, store_url, prefix, cookie_secret={0: "old-secret-" + "o" * 30}, app={"key_version": 0})
    rotating = start(serve, store_url, prefix, cookie_secret={0: "old-secret-" + "o" * 30, 1: "new-secret-" + "n" * 30},
                     app={"key_version": 1})
    after = start(serve, store_url, prefix, cookie_secret={1: "new-secret-" + "n" * 30}, app={"key_version": 1})
    browser = before.browser()
    browser.post("/note", b"kept across the rotation")
    old_cookie = dict(browser.cookies)

    assert new_browser(rotating, old_cookie).get("/note").text == "kept across the rotation"
    assert new_browser(after, old_cookie).get("/note").text == "nothing"

    newcomer = rotating.browser()
    newcomer.post("/note", b"signed with the new key")
    assert tornado.web.get_signature_key_version(newcomer.cookies[COOKIE].strip('"')) == 1
    assert new_browser(after, newcomer.cookies).get("/note").text == "signed with the new key"


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every v2 signature check Tornado makes during the test, in order."""
    checks: list[bytes] = []
    original = tornado.web._decode_signed_value_v2

    def counting(secret: Any, name: str, value: bytes, *args: Any) -> bytes | None:
        checks.append(value)
        return original(secret, name, value, *args)

    monkeypatch.setattr(tornado.web, "_decode_signed_value_v2", counting)
    return checks


def test_an_oversized_cookie_is_dropped_before_any_signature_check(serve, store_url, prefix, signature_checks):
    """A session cookie longer than max-cookie-length is ignored without computing an HMAC."""
    server = start(serve, store_url, prefix)
    owner = server.browser()
    owner.post("/note", b"mine")
    signature_checks.clear()
    assert owner.get("/note").text == "mine"
    assert len(signature_checks) == 1  # a normal cookie is checked once

    signature_checks.clear()
    huge = "2|1:0|10:1700000000|10:session-id|" + "A" * 5000 + "|" + "0" * 64
    assert new_browser(server, {COOKIE: huge}).get("/note").text == "nothing"
    assert signature_checks == []

    strict = start(serve, store_url, prefix, **{"max-cookie-length": 64})
    assert len(owner.cookies[COOKIE]) > 64
    assert new_browser(strict, owner.cookies).get("/note").text == "nothing"  # valid, but too long for this app
    assert signature_checks == []


# -- limits ----------------------------------------------------------------------------------


def test_a_value_over_max_value_bytes_is_refused_and_nothing_is_written(serve, store_url, prefix, store):
    """A value over max-value-bytes reaches the app as SessionLimitError ('limit'); no field and no session appear."""
    server = start(serve, store_url, prefix, **{"max-value-bytes": 100})
    client = store(store_url)
    newcomer = server.browser()
    refused = newcomer.post("/limited/bio", b"x" * 101)
    assert (refused.status, refused.text) == (200, "limit")
    assert refused.set_cookies == [] and session_keys(client, prefix) == []

    assert newcomer.post("/limited/bio", b"x" * 100).text == "ok"
    assert newcomer.post("/limited/bio", b"y" * 101).text == "limit"
    assert newcomer.post("/limited/other", b"y" * 101).text == "limit"
    assert client.hget(key(prefix, session_id_of(newcomer)), "bio") == b"x" * 100
    assert client.hget(key(prefix, session_id_of(newcomer)), "other") is None


def test_a_write_past_max_fields_is_refused_and_nothing_is_written(serve, store_url, prefix, store):
    """With max-fields=3 the fourth field answers 'limit' and is not stored; the existing three can still change."""
    server = start(serve, store_url, prefix, **{"max-fields": 3})
    browser = server.browser()
    for name in ("a", "b", "c"):
        assert browser.post(f"/limited/{name}", b"1").text == "ok"
    assert browser.post("/limited/d", b"1").text == "limit"
    assert browser.post("/limited/a", b"2").text == "ok"
    fields = store(store_url).hgetall(key(prefix, session_id_of(browser)))
    assert {name: value for name, value in fields.items() if not name.startswith(b"__rs:")} == {
        b"a": b"2", b"b": b"1", b"c": b"1"
    }


# -- damaged store state ---------------------------------------------------------------------


def test_a_session_key_that_is_not_a_hash_means_a_new_session(serve, store_url, prefix, store, caplog):
    """If the session's key holds a string, the page still works: fallbacks, a logged warning, then a new id."""
    caplog.set_level(logging.WARNING, logger="redis_session")
    server = start(serve, store_url, prefix)
    browser = server.browser()
    browser.post("/note", b"before")
    old_id = session_id_of(browser)
    store(store_url).set(key(prefix, old_id), "not a hash")
    saved = dict(browser.cookies)

    read = browser.get("/note")
    assert (read.status, read.text) == (200, "nothing")
    assert expires_the_cookie(read)
    written = new_browser(server, saved).post("/note", b"after")
    assert written.status == 200
    assert issued_id(written) not in (None, old_id)
    assert any("not a hash" in record.getMessage() for record in caplog.records)
    assert old_id not in caplog.text


def test_a_session_without_ttl_gets_one_on_its_next_use(serve, store_url, prefix, store):
    """A session key that lost its TTL keeps working and has a TTL again after the next request."""
    server = start(serve, store_url, prefix, expire=600)
    browser = server.browser()
    browser.post("/note", b"kept")
    client = store(store_url)
    client.persist(key(prefix, session_id_of(browser)))
    assert client.ttl(key(prefix, session_id_of(browser))) == -1

    assert browser.get("/note").text == "kept"
    assert 0 < client.ttl(key(prefix, session_id_of(browser))) <= 600


def test_a_session_without_creation_time_gets_one_and_keeps_working(serve, store_url, prefix, store):
    """A session lacking __rs:created (like a 0.2.1 session) keeps its data and gets a creation time and deadline."""
    server = start(serve, store_url, prefix, **{"max-lifetime": 300})
    browser = server.browser()
    browser.post("/note", b"kept")
    client = store(store_url)
    session_key = key(prefix, session_id_of(browser))
    client.hdel(session_key, "__rs:created")

    assert browser.get("/note").text == "kept"
    assert abs(int(client.hget(session_key, "__rs:created")) - time.time()) < 5
    assert 0 < client.ttl(session_key) <= 300


class Exploit:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_a_planted_pickle_payload_is_only_bytes(serve, store_url, prefix, store, tmp_path, protocol):
    """A pickle planted in a field never runs: .json gives {}, .str gives text or '', the page is a 200."""
    marker = tmp_path / "pwned"
    server = start(serve, store_url, prefix)
    browser = server.browser()
    browser.post("/note", b"hi")
    payload = pickle.dumps(Exploit(marker), protocol=protocol)
    store(store_url).hset(key(prefix, session_id_of(browser)), "payload", payload)

    response = browser.get("/payload")

    assert response.status == 200
    shown = json.loads(response.text)
    assert shown["json"] == {}
    assert shown["str"] in ("", payload.decode("utf-8", "replace"))
    assert not marker.exists()


def test_a_damaged_flash_entry_does_not_break_the_page(serve, store_url, prefix, store):
    """A flash entry damaged in Redis does not turn every page that shows flashes into a 500."""
    server = start(serve, store_url, prefix)
    browser = server.browser()
    browser.post("/flashes", b"Saved")
    store(store_url).hset(key(prefix, session_id_of(browser)), "__rs:flash:000000000000", "no separator")
    assert browser.get("/flashes").status == 200


def test_a_fractional_creation_time_does_not_break_the_session(serve, store_url, prefix, store):
    """A __rs:created holding a fractional timestamp is still a usable creation time, never a 500."""
    server = start(serve, store_url, prefix, **{"max-lifetime": 300})
    browser = server.browser()
    browser.post("/note", b"kept")
    store(store_url).hset(key(prefix, session_id_of(browser)), "__rs:created", repr(time.time() - 10.5))
    response = browser.get("/note")
    assert response.status == 200


# -- logs ------------------------------------------------------------------------------------


def test_logs_never_contain_a_session_id_or_cookie(serve, redis_server, prefix, store, caplog):
    """A whole flow (login, cookie tossing, unknown and damaged sessions, an app error, logout) logs no id or cookie."""
    caplog.set_level(logging.DEBUG)
    server = start(serve, redis_server.url, prefix)
    alice, bob = server.browser(), server.browser()
    seen: list[str] = []

    def remember(browser: Browser) -> None:
        cookie = browser.cookies[COOKIE]
        seen.extend([session_id_of(browser), cookie, cookie.strip('"')])

    alice.post("/note", b"hello")
    remember(alice)
    alice.post("/login")
    remember(alice)
    bob.post("/flashes", b"hi bob")
    remember(bob)
    tossed = {"Cookie": f"{COOKIE}={alice.cookies[COOKIE]}; {COOKIE}={bob.cookies[COOKIE]}"}
    assert server.browser().get("/note", headers=tossed).status == 200
    unknown, damaged = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    store(redis_server.url).set(key(prefix, damaged), "not a hash")
    for session_id in (unknown, damaged):
        seen.extend([session_id, signed(session_id)])
        assert new_browser(server, {COOKIE: signed(session_id)}).get("/note").status == 200
    assert bob.get("/broken").status == 500
    assert bob.get("/flashes").status == 200
    saved = dict(alice.cookies)
    assert alice.post("/logout").status == 200
    assert new_browser(server, saved).get("/whoami").text == "anonymous"

    messages = [record.getMessage() for record in caplog.records]
    assert any("cookie tossing" in message for message in messages)
    assert any("not a hash" in message for message in messages)
    assert any(record.exc_info for record in caplog.records)  # the app error's traceback was logged
    for secret in seen:
        assert secret not in caplog.text
        assert not any(secret in message for message in messages)


# -- fixation and replay ---------------------------------------------------------------------


def test_a_session_id_from_before_login_is_dead_after_login(serve, store_url, prefix):
    """Session fixation: replaying the anonymous cookie after the victim logs in gives an empty, anonymous session."""
    server = start(serve, store_url, prefix)
    victim = server.browser()
    victim.post("/note", b"cart: 3 items")
    planted = dict(victim.cookies)
    anonymous_id = session_id_of(victim)

    assert victim.post("/login").text == "welcome"

    assert session_id_of(victim) != anonymous_id
    assert victim.get("/whoami").text == "alice"
    assert victim.get("/note").text == "cart: 3 items"
    attacker = new_browser(server, planted)
    assert attacker.get("/whoami").text == "anonymous"
    assert attacker.get("/note").text == "nothing"


def test_a_cookie_replayed_after_logout_is_anonymous_and_never_reused(serve, store_url, prefix, store):
    """After logout the saved cookie reads an empty session, and a write with it gets a brand-new id."""
    server = start(serve, store_url, prefix)
    browser = server.browser()
    browser.post("/login")
    saved = dict(browser.cookies)
    old_id = session_id_of(browser)

    logged_out = browser.post("/logout")
    assert expires_the_cookie(logged_out) and COOKIE not in browser.cookies

    replay = new_browser(server, saved)
    assert replay.get("/whoami").text == "anonymous"
    written = new_browser(server, saved).post("/note", b"after logout")
    assert issued_id(written) not in (None, old_id)
    assert store(store_url).exists(key(prefix, old_id)) == 0


# -- crowds ----------------------------------------------------------------------------------


def bare_get(port: int, path: str, cookie: str | None) -> tuple:
    """One request on a fresh connection that the server closes (no keep-alive)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Connection": "close"}
        if cookie is not None:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        connection.request("GET", path, headers=headers)
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def junk_cookies(count: int) -> list[str | None]:
    """No cookie, garbage, tampered, oversized, v1, wrong-name, not-an-id and validly signed unknown ids."""
    real = tornado.web.create_signed_value(COOKIE_SECRET, COOKIE, secrets.token_urlsafe(24)).decode()
    fixed: list[str | None] = [
        None, "", "garbage", '"unterminated', real[:-1] + ("0" if real[-1] != "0" else "1"), real[:40],
        "2|" + "9" * 600, tornado.web.create_signed_value(COOKIE_SECRET, COOKIE, "x" * 40, version=1).decode(),
        tornado.web.create_signed_value(COOKIE_SECRET, "other-cookie", secrets.token_urlsafe(24)).decode(),
        tornado.web.create_signed_value(COOKIE_SECRET, COOKIE, "../../not an id").decode(),
        tornado.web.create_signed_value("another-secret-" + "z" * 30, COOKIE, secrets.token_urlsafe(24)).decode(),
    ]
    mix: list[str | None] = []
    for index in range(count):
        if index % 3 == 0:
            mix.append(signed(secrets.token_urlsafe(24)))
        else:
            mix.append(fixed[index % len(fixed)])
    return mix


@pytest.mark.slow
def test_ten_thousand_sessionless_requests_create_no_keys(serve, own_redis_server: RedisServer, prefix, store):
    """10 000 read-only requests with no cookie, junk cookies or validly signed unknown ids leave Redis's DBSIZE unchanged."""
    server = start(serve, own_redis_server.url, prefix)
    client = store(own_redis_server.url)
    before = client.dbsize()
    cookies = junk_cookies(10_000)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda cookie: bare_get(server.port, "/note", cookie), cookies))

    assert {reply for reply in replies} == {(200, b"nothing")}
    assert client.dbsize() == before


class AsyncNote(AsyncSessionHandler):
    async def post(self) -> None:
        await self.session.set("note", self.request.body.decode("utf-8"))
        self.write("saved")


class AsyncField(AsyncSessionHandler):
    async def post(self, name: str) -> None:
        await self.session.set(name, name.upper())
        self.write("ok")


ASYNC_HANDLERS = [("/note", AsyncNote), (r"/field/(\w+)", AsyncField)]


def concurrent_servers(serve: Callable[..., LiveServer], redis_url: str, prefix: str, kind: str) -> list[LiveServer]:
    """Servers whose requests really overlap: coroutine handlers on one IOLoop (interleaved at
    every Redis round trip), or blocking handlers on two servers, each on its own thread."""
    if kind == "async":
        return [serve(ASYNC_HANDLERS, cookie_secret=COOKIE_SECRET, redis_session=app_settings(redis_url, prefix))]
    return [start(serve, redis_url, prefix) for _ in range(2)]


@pytest.mark.parametrize("kind", ["async", "two sync servers"])
def test_fifty_concurrent_writes_of_different_fields_all_land(serve, redis_server, prefix, store, kind):
    """50 requests writing different fields of one session at the same time lose none of them and start no other session."""
    servers = concurrent_servers(serve, redis_server.url, prefix, kind)
    browser = servers[0].browser()
    browser.post("/note", b"start")

    def write(index: int) -> Response:
        return new_browser(servers[index % len(servers)], browser.cookies).post(f"/field/f{index}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        responses = list(pool.map(write, range(50)))

    assert [response.status for response in responses] == [200] * 50
    assert not any(response.set_cookies for response in responses)
    client = store(redis_server.url)
    assert session_keys(client, prefix) == [key(prefix, session_id_of(browser)).encode()]
    fields = client.hgetall(key(prefix, session_id_of(browser)))
    assert all(fields[f"f{index}".encode()] == f"F{index}".encode() for index in range(50))
    assert fields[b"note"] == b"start"


def test_two_hundred_concurrent_incr_across_two_server_processes_give_exactly_two_hundred(redis_server, prefix, tmp_path):
    """200 concurrent visits of one session, spread over two processes of examples/tornado_async_counter.py, count exactly 200."""
    examples = [
        RunningExample([f"--session-redis={redis_server.url}", f"--session-redis-prefix={prefix}", "--logging=none"],
                       tmp_path / f"example-{index}.log", script=ASYNC_EXAMPLE)
        for index in range(2)
    ]
    try:
        browser = examples[0].browser()
        assert "atomically:1" in examples[0].first_page(browser).text
        examples[1].first_page(examples[1].browser())  # up, on a session of its own

        def visit(index: int) -> int:
            response = new_browser(examples[index % 2], browser.cookies).get("/")
            assert response.status == 200
            return int(response.text.rsplit("atomically:", 1)[1])

        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            visits = list(pool.map(visit, range(200)))
    finally:
        for example in examples:
            example.terminate()

    assert sorted(visits) == list(range(2, 202))
    client = redis_server.client()
    assert client.hget(key(prefix, session_id_of(browser, EXAMPLE_SECRET)), "visits") == b"201"
    client.close()


@pytest.mark.parametrize("kind", ["async", "two sync servers"])
def test_a_hundred_parallel_first_visits_get_a_hundred_sessions(serve, redis_server, prefix, store, kind):
    """100 cookieless first writes at once get 100 distinct ids and 100 keys."""
    servers = concurrent_servers(serve, redis_server.url, prefix, kind)

    def first_visit(index: int) -> str | None:
        response = servers[index % len(servers)].browser().post("/note", f"visitor {index}".encode())
        assert response.status == 200
        return issued_id(response)

    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        ids = list(pool.map(first_visit, range(100)))

    assert None not in ids and len(set(ids)) == 100
    assert session_keys(store(redis_server.url), prefix) == sorted(key(prefix, session_id).encode() for session_id in ids)


def test_a_timed_out_incr_is_never_sent_twice(serve, own_redis_server: RedisServer, prefix, store):
    """When Redis stalls during an incr the request gets a 503, and after Redis resumes the count went up at most once."""
    server = start(serve, own_redis_server.url, prefix, **{"redis-timeout": 0.3})
    browser = server.browser()
    assert browser.post("/count").text == "1"
    counter_key = key(prefix, session_id_of(browser))

    own_redis_server.pause()
    try:
        stalled = browser.post("/count")
    finally:
        own_redis_server.resume()
    assert stalled.status == 503
    assert stalled.header("Retry-After") == "1"

    time.sleep(0.4)  # let the resumed server catch up, and the store's stall pause (one timeout) pass
    # the frozen server still held the one incr that was sent, and ran it once on resume
    assert store(own_redis_server.url).hget(counter_key, "count") == b"2"
    assert browser.post("/count").text == "3"
