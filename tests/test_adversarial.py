"""What an attacker, a broken proxy, a damaged store or a crowd of requests gets, over real HTTP.

Every test drives a live Tornado app (a crowd also a Flask one) with a cookie-keeping client and
checks what a browser (or a log reader) would see, then looks in Redis for anything left behind.
What the Session API does with a value or a store state is in the behaviour suite
(test_session.py, test_lifecycle.py); Vary, Cache-Control and key rotation are in test_tornado.py.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import logging
import os
import pickle
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from flask import Flask, request
from werkzeug.serving import WSGIRequestHandler, make_server

from redis_session.flask_session import setup_session
from redis_session.protocol import session_key
from redis_session.settings import SessionSettings
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler
from tests.conftest import COOKIE_SECRET, app_settings
from tests.redis_servers import RedisServer, free_port
from tests.support import TestStores
from tests.test_example import ASYNC_EXAMPLE, EXAMPLE_SECRET, RunningExample
from tests.web import Browser, LiveServer, Response, all_at_once

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
    ("/logout", Logout), ("/payload", Payload), ("/flashes", Flashes),
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


def sign(value: Any, name: str = COOKIE, secret: Any = COOKIE_SECRET, **options: Any) -> str:
    """``value`` signed the way Tornado signs a cookie, unquoted (what an attacker cannot do without the secret)."""
    return tornado.web.create_signed_value(secret, name, value, **options).decode("ascii")


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
    return session_key(prefix, session_id)


def session_keys(client: Any, prefix: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{prefix}:sessions:*"))


def new_browser(server: LiveServer, cookies: dict[str, str]) -> Browser:
    browser = server.browser()
    browser.cookies = dict(cookies)
    return browser


# -- forged and unusual cookies ---------------------------------------------------------------


def test_two_session_cookies_in_one_request_are_both_ignored(serve, store_url, prefix, store, caplog):
    """Cookie tossing: of two session-id cookies (even two copies of one) neither is used, a write starts afresh, the warning hides both."""
    caplog.set_level(logging.WARNING, logger="redis_session")
    server = start(serve, store_url, prefix)
    alice, mallory = server.browser(), server.browser()
    alice.post("/note", b"alice's note")
    mallory.post("/note", b"mallory's note")
    id_a, id_b = session_id_of(alice), session_id_of(mallory)
    cookie_a, cookie_b = alice.cookies[COOKIE], mallory.cookies[COOKIE]
    both = {"Cookie": f"{COOKIE}={cookie_a}; {COOKIE}={cookie_b}"}
    twice = {"Cookie": f"{COOKIE}={cookie_a}; {COOKIE}={cookie_a}"}
    victim = server.browser()

    assert victim.get("/note", headers=both).text == "nothing"
    copied = server.browser().get("/note", headers=twice)
    assert (copied.status, copied.text) == (200, "nothing")
    written = victim.post("/note", b"fresh", headers=both)

    assert written.status == 200
    assert issued_id(written) not in (None, id_a, id_b)
    assert alice.get("/note").text == "alice's note" and mallory.get("/note").text == "mallory's note"
    assert len(session_keys(store(store_url), prefix)) == 3
    warnings = [record.getMessage() for record in caplog.records if record.name == "redis_session"]
    assert any("cookie tossing" in message for message in warnings)
    for secret in (id_a, id_b, cookie_a.strip('"'), cookie_b.strip('"')):
        assert secret not in caplog.text


def tampered(valid: str, session_id: str) -> str:
    value = valid.strip('"')
    return value[:-1] + ("0" if value[-1] != "0" else "1")


BAD_COOKIES = {
    "tampered-signature": tampered,
    "signed-for-another-name": lambda valid, session_id: sign(session_id, name="other-cookie"),
    "random-string": lambda valid, session_id: "not-a-session-cookie",
    "empty": lambda valid, session_id: "",
    "truncated": lambda valid, session_id: valid.strip('"')[: len(valid.strip('"')) // 2],
    "oversized-10kB": lambda valid, session_id: sign("A" * 10_000),
    "v1-format": lambda valid, session_id: sign(session_id, version=1),
    "signed-path-traversal": lambda valid, session_id: sign(b"../../etc"),
    "signed-300-chars": lambda valid, session_id: sign("a" * 300),
    "signed-too-short": lambda valid, session_id: sign("abc"),
    "signed-non-ascii": lambda valid, session_id: sign(b"\xff" * 24),
    "signed-with-spaces": lambda valid, session_id: sign("an id with spaces in it!!"),
    "signed-with-another-secret": lambda valid, session_id: sign(session_id, secret="another-app-secret-" + "q" * 32),
    "signed-40-days-ago": lambda valid, session_id: sign(session_id, clock=lambda: time.time() - 40 * 86400),
    "quoted-empty": lambda valid, session_id: '""',
    "v2-garbage-fields": lambda valid, session_id: "2|1:0|10:1234567890|10:session-id|x:abc|deadbeef",
    "latin-1-bytes": lambda valid, session_id: "\xe9\xff" * 8,
}


@pytest.mark.parametrize("make_bad", BAD_COOKIES.values(), ids=BAD_COOKIES.keys())
def test_a_bad_cookie_means_no_session(serve, store_url, prefix, store, make_bad):
    """A forged, mangled or foreign cookie (v1-signed even for a live id) means "no session": 200, a fresh session, never a 500."""
    server = start(serve, store_url, prefix)
    owner = server.browser()
    assert owner.post("/count").text == "1"
    owner_id = session_id_of(owner)

    intruder = server.browser()
    intruder.cookies[COOKIE] = make_bad(owner.cookies[COOKIE], owner_id)
    reading = intruder.get("/note")
    assert (reading.status, reading.text, reading.set_cookies) == (200, "nothing", [])
    writing = intruder.post("/count")
    assert (writing.status, writing.text) == (200, "1")
    assert len([header for header in writing.set_cookies if header.startswith(COOKIE + "=")]) == 1
    assert session_id_of(intruder) != owner_id
    assert owner.post("/count").text == "2"  # the real session is untouched
    assert len(session_keys(store(store_url), prefix)) == 2


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


# -- damaged store state ---------------------------------------------------------------------


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


class AsyncCounter(AsyncSessionHandler):
    async def post(self) -> None:
        self.write(str(await self.session.incr("count")))


ASYNC_HANDLERS = [("/note", AsyncNote), (r"/field/(\w+)", AsyncField), ("/count", AsyncCounter)]


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler without one log line per request."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class FlaskServer:
    """``/note``, ``/field/<name>`` and ``/count`` as a Flask app (setup_session) on Werkzeug's
    threaded server, one thread per request, over loopback."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        app = Flask(f"adversarial-{prefix}")
        app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=redis_url, SESSION_REDIS_PREFIX=prefix,
                          SESSION_COOKIE_SECURE=False)
        setup_session(app)

        @app.post("/note")
        def note() -> str:
            request.session.note = request.get_data(as_text=True)  # type: ignore[attr-defined]
            return "saved"

        @app.post("/field/<name>")
        def field(name: str) -> str:
            request.session[name] = name.upper()  # type: ignore[attr-defined]
            return "ok"

        @app.post("/count")
        def count() -> str:
            return str(request.session.incr("count"))  # type: ignore[attr-defined]

        self.app = app
        self.url = f"http://127.0.0.1:{free_port()}"
        self.server = make_server("127.0.0.1", int(self.url.rsplit(":", 1)[1]), app, threaded=True,
                                  request_handler=QuietRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def browser(self) -> Browser:
        return Browser(self.url)

    def session_id_of(self, browser: Browser) -> str:
        return str(self.app.extensions["redis_session"].serializer.loads(browser.cookies[COOKIE]))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def serve_flask() -> Iterator[Callable[[str, str], FlaskServer]]:
    """``serve_flask(redis_url, prefix)`` runs the Flask pages above until the test ends."""
    servers: list[FlaskServer] = []

    def run(redis_url: str, prefix: str) -> FlaskServer:
        servers.append(FlaskServer(redis_url, prefix))
        return servers[-1]

    yield run
    for server in servers:
        server.stop()


def concurrent_servers(serve: Callable[..., LiveServer], redis_url: str, prefix: str, kind: str,
                       serve_flask: Callable[[str, str], FlaskServer] | None = None) -> list[Any]:
    """Servers whose requests really overlap: coroutine handlers on one IOLoop (interleaved at
    every Redis round trip), blocking handlers on two servers, each on its own thread, or a Flask
    app on Werkzeug's threaded server."""
    if kind == "async":
        return [serve(ASYNC_HANDLERS, cookie_secret=COOKIE_SECRET, redis_session=app_settings(redis_url, prefix))]
    if kind == "flask threaded":
        assert serve_flask is not None
        return [serve_flask(redis_url, prefix)]
    return [start(serve, redis_url, prefix) for _ in range(2)]


def session_id_on(server: Any, browser: Browser) -> str:
    """The session id in ``browser``'s cookie, read the way the app behind ``server`` signs it."""
    return server.session_id_of(browser) if isinstance(server, FlaskServer) else session_id_of(browser)


@pytest.mark.parametrize("kind", ["async", "two sync servers", "flask threaded"])
def test_fifty_concurrent_writes_of_different_fields_all_land(serve, serve_flask, redis_server, prefix, store, kind):
    """50 requests writing different fields of one session at the same time lose none of them and start no other session."""
    servers = concurrent_servers(serve, redis_server.url, prefix, kind, serve_flask)
    browser = servers[0].browser()
    assert browser.post("/note", b"start").status == 200

    def write(index: int) -> Response:
        return new_browser(servers[index % len(servers)], browser.cookies).post(f"/field/f{index}")

    responses = all_at_once(50, write)

    assert [response.status for response in responses] == [200] * 50
    assert [response.set_cookies for response in responses] == [[]] * 50
    client = store(redis_server.url)
    session_key = key(prefix, session_id_on(servers[0], browser))
    assert session_keys(client, prefix) == [session_key.encode()]
    fields = client.hgetall(session_key)
    user_fields = {name: value for name, value in fields.items() if not name.startswith(b"__rs:")}
    assert user_fields == {b"note": b"start", **{f"f{index}".encode(): f"F{index}".encode() for index in range(50)}}


@pytest.mark.parametrize("kind", ["async", "flask threaded", "two server processes"])
def test_two_hundred_concurrent_incr_give_exactly_two_hundred(serve, serve_flask, redis_server, prefix, store, tmp_path, kind):
    """200 simultaneous incr requests on one session (more than redis-py's default 100 connections) count exactly, in every server setup."""
    examples: list[RunningExample] = []
    if kind == "two server processes":  # examples/tornado_async_counter.py, twice
        examples = [
            RunningExample([f"--session-redis={redis_server.url}", f"--session-redis-prefix={prefix}", "--logging=none"],
                           tmp_path / f"example-{index}.log", script=ASYNC_EXAMPLE)
            for index in range(2)
        ]
        servers: list[Any] = examples
        path, method, field = "/", "GET", "visits"
    else:
        servers = concurrent_servers(serve, redis_server.url, prefix, kind, serve_flask)
        path, method, field = "/count", "POST", "count"

    def count_of(response: Response) -> int:
        assert response.status == 200, response
        return int(response.text.rsplit("atomically:", 1)[-1])

    try:
        browser = servers[0].browser()
        if examples:
            assert count_of(examples[0].first_page(browser)) == 1
            examples[1].first_page(examples[1].browser())  # up, on a session of its own
        else:
            assert count_of(browser.request(method, path)) == 1
        responses = all_at_once(200, lambda index: new_browser(servers[index % len(servers)], browser.cookies).request(method, path))
    finally:
        for example in examples:
            example.terminate()

    assert sorted(count_of(response) for response in responses) == list(range(2, 202))
    assert [response.set_cookies for response in responses] == [[]] * 200
    session_id = session_id_of(browser, EXAMPLE_SECRET) if examples else session_id_on(servers[0], browser)
    client = store(redis_server.url)
    assert client.hget(key(prefix, session_id), field) == b"201"
    assert len(session_keys(client, prefix)) == (2 if examples else 1)  # the second example's first visit has its own


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
