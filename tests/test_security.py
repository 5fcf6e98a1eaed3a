"""What an attacker or a double-submitted form gets: each case of the security round two issue
(double-submitted logins racing for real, no id in Redis, raw-keyed sessions moved, a trailing
newline, size limits, JSON that would not read back, cookie tossing however it is spelt). Plain
cookie tossing, forged cookies and crowds are in test_adversarial.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import tornado.web
from flask import Flask, request
from werkzeug.serving import make_server

from redis_session import SessionAdmin, SessionLimitError, SessionSettings, SessionTypeError
from redis_session.flask_session import setup_session
from redis_session.lifecycle import MOVE_FOLLOW_SECONDS
from redis_session.protocol import moved_mark_key
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler
from tests.conftest import COOKIE_SECRET, RecordingCookie, app_settings
from tests.redis_servers import RedisServer, free_port
from tests.support import TestStores
from tests.test_admin_command import admin_command
from tests.test_adversarial import QuietRequestHandler, expires_the_cookie
from tests.web import Browser, LiveServer, Response, all_at_once

COOKIE = "session-id"
ROUNDS = 5  # races per test: one that happens to be won in order proves little
KINDS = ["tornado blocking", "tornado coroutine", "flask threaded"]


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def hashed_key(prefix: str, session_id: str) -> str:
    """Where a session lives: ``{prefix}:sessions:`` and the SHA-256 of its id, never the id."""
    return f"{prefix}:sessions:{digest(session_id)}"


def session_keys(client: Any, prefix: str) -> set[bytes]:
    return set(client.scan_iter(match=f"{prefix}:sessions:*"))


# -- the apps: the same pages on Tornado (blocking and coroutine handlers) and on Flask ------------


def wait_at(gate: threading.Barrier | None) -> None:
    """The requests of a race all reach the gate before any goes on (a barrier for two)."""
    if gate is not None:
        gate.wait()


def answer(page: str, found: Any) -> str:
    return {"note": lambda: found.str or "nothing", "whoami": lambda: found or "anonymous",
            "fields": lambda: json.dumps({name: value.str for name, value in found.items()})}[page]()


class Pages(SessionHandler):
    """GET /note, /whoami, /fields; POST /note (answers the note it found, then writes its own),
    /login/<user> and /regenerate, which with ?then=write write a field after it, as
    examples/tornado_login.py writes after bind_user."""

    def get(self, page: str, _: str) -> None:
        session = self.session
        self.write(answer(page, {"note": lambda: session.note, "whoami": lambda: session.user_id, "fields": session.load}[page]()))

    def post(self, page: str, user: str) -> None:
        if page == "note":
            self.write(answer(page, self.session.note))
            self.session.note = self.request.body.decode()
            return
        wait_at(self.settings.get("gate"))
        self.session.bind_user(user) if page == "login" else self.session.regenerate()
        if self.get_query_argument("then", "") == "write":
            self.session.after = page
        self.write("ok")


class AsyncPages(AsyncSessionHandler):
    """The same pages with coroutine handlers (no /fields)."""

    async def get(self, page: str, _: str) -> None:
        self.write(answer(page, await (self.session.user_id if page == "whoami" else self.session.get("note"))))

    async def post(self, page: str, user: str) -> None:
        if page == "note":
            self.write(answer(page, await self.session.get("note")))
            await self.session.set("note", self.request.body.decode())
            return
        await asyncio.to_thread(wait_at, self.settings.get("gate"))  # the loop keeps serving meanwhile
        await (self.session.bind_user(user) if page == "login" else self.session.regenerate())
        if self.get_query_argument("then", "") == "write":
            await self.session.set("after", page)
        self.write("ok")


ROUTES = r"/(note|whoami|fields|login|regenerate)/?(\w*)"


def flask_app(redis_url: str, prefix: str, gate: Any = None) -> Flask:
    """The same pages on Flask (no /fields)."""
    app = Flask(f"security-{uuid.uuid4().hex[:8]}")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=redis_url, SESSION_REDIS_PREFIX=prefix,
                      SESSION_COOKIE_SECURE=False)
    setup_session(app)

    @app.route("/<page>", methods=["GET", "POST"])
    @app.route("/<page>/<user>", methods=["POST"])
    def pages(page: str, user: str = "") -> str:
        session = request.session  # type: ignore[attr-defined]
        if request.method == "GET" or page == "note":
            found = answer(page, session.user_id if page == "whoami" else session.note)
            if request.method == "POST":
                session.note = request.get_data(as_text=True)
            return found
        wait_at(gate)
        session.bind_user(user) if page == "login" else session.regenerate()
        if request.args.get("then") == "write":
            session.after = page
        return "ok"

    return app


@dataclass
class Site:
    """One app on one or more servers, and how its session cookie is signed and read."""

    urls: list[str]
    sign: Callable[[str], str]
    decode: Callable[[str], str | None]

    def browser(self, index: int = 0, cookies: dict[str, str] | None = None) -> Browser:
        """A browser on server ``index``, holding ``cookies``."""
        browser = Browser(self.urls[index % len(self.urls)])
        browser.cookies = dict(cookies or {})
        return browser

    def session_id(self, browser: Browser) -> str | None:
        return self.decode(browser.cookies[COOKIE]) if COOKIE in browser.cookies else None

    def issued(self, response: Response) -> str | None:
        """The id a response's session Set-Cookie carries (``None`` if it sets none)."""
        headers = [header for header in response.set_cookies if header.startswith(COOKIE + "=")]
        return self.decode(headers[-1].split("=", 1)[1].split(";", 1)[0]) if headers else None


def tornado_sign(session_id: str) -> str:
    return '"' + tornado.web.create_signed_value(COOKIE_SECRET, COOKIE, session_id).decode() + '"'


def tornado_decode(value: str) -> str | None:
    raw = tornado.web.decode_signed_value(COOKIE_SECRET, COOKIE, value.strip('"'), max_age_days=31)
    return raw.decode() if raw else None


@pytest.fixture
def site(serve: Callable[..., LiveServer]) -> Iterator[Callable[..., Site]]:
    """``site(kind, redis_url, prefix, gate=False, **settings)``: the pages above. A race needs its
    requests handled at the same time: blocking handlers then run on two servers (each on its own
    thread, as two processes would), coroutine handlers on one loop, Flask on a threaded server."""
    flask_servers: list[Any] = []

    def build(kind: str, redis_url: str, prefix: str, gate: bool = False, **settings: Any) -> Site:
        if kind == "flask threaded":
            app = flask_app(redis_url, prefix, threading.Barrier(2, timeout=10) if gate else None)
            port = free_port()
            server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietRequestHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            flask_servers.append(server)
            serializer = app.extensions["redis_session"].serializer
            return Site([f"http://127.0.0.1:{port}"], serializer.dumps, lambda value: serializer.loads(value))
        options = {"redis_session": app_settings(redis_url, prefix, **settings), "gate": threading.Barrier(2, timeout=10) if gate else None}
        if kind == "tornado coroutine":
            servers = [serve([(ROUTES, AsyncPages)], **options)]
        else:
            servers = [serve([(ROUTES, Pages)], **options) for _ in range(2 if gate else 1)]
        return Site([server.url for server in servers], tornado_sign, tornado_decode)

    yield build
    for server in flask_servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def store_client(registry: TestStores) -> Callable[[str], Any]:
    """``store_client(url)``: a raw client on the store the apps use."""
    return lambda url: registry.store_for(SessionSettings(redis_url=url)).client


# -- 1. double-submitted logins and regenerations ---------------------------------------------------


def double_submit(site: Site, path: str, statuses: tuple[int, ...] = (200, 200)) -> tuple[dict[str, str], str, list[Response]]:
    """A browser with an anonymous session (a note in it) sends ``path`` twice at the same time;
    the responses' statuses, sorted, are ``statuses``."""
    browser = site.browser()
    note = secrets.token_hex(6)
    assert browser.post("/note", note.encode()).status == 200
    cookies = dict(browser.cookies)
    responses = all_at_once(2, lambda index: site.browser(index, cookies).post(path))
    assert sorted(response.status for response in responses) == list(statuses), responses
    assert not any(expires_the_cookie(response) for response in responses)
    return cookies, note, responses


def browsers_after(site: Site, cookies: dict[str, str], responses: list[Response]) -> Iterator[Browser]:
    """The browser after taking both responses' Set-Cookie headers, in either order."""
    for order in itertools.permutations(responses):
        browser = site.browser(0, cookies)
        for response in order:
            for header in response.set_cookies:
                browser._remember(header)
        yield browser


@pytest.mark.parametrize("then", ["", "write"], ids=["bind_user", "bind_user-then-write"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_double_submitted_login_leaves_one_live_session(site, registry, redis_server, prefix, store_client, kind, then):
    """Two logins sent at once from one anonymous session both answer 200 without expiring the
    cookie; whichever Set-Cookie the browser keeps, it is signed in with its data, and the user
    has exactly one live session in Redis (also when the login handler writes after bind_user,
    as examples/tornado_login.py does)."""
    login = site(kind, redis_server.url, prefix, gate=True)
    settings = SessionSettings(redis_url=redis_server.url, prefix=prefix)
    admin = SessionAdmin(settings, registry.store_for(settings))
    expected: set[bytes] = set()
    for round_ in range(ROUNDS):
        user = f"user{round_}"
        cookies, note, responses = double_submit(login, f"/login/{user}?then={then}")
        finals = set()
        for browser in browsers_after(login, cookies, responses):
            assert (browser.get("/whoami").text, browser.get("/note").text) == (user, note), f"round {round_}"
            finals.add(login.session_id(browser))
        live = admin.sessions_for_user(user)
        assert len(live) == 1 and {live[0].handle} == {digest(final) for final in finals}, f"round {round_}"
        expected.add(hashed_key(prefix, finals.pop()).encode())
        assert session_keys(store_client(redis_server.url), prefix) == expected, f"round {round_}"


@pytest.mark.parametrize("then", ["", "write"], ids=["regenerate", "regenerate-then-write"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_double_submitted_regenerate_keeps_one_copy_and_never_expires_the_cookie(site, redis_server, prefix, store_client, kind, then):
    """Two regenerate() requests at once (a privilege change posted twice, which may write after
    it): neither expires the cookie, the browser keeps its data whichever response comes last, and
    Redis holds one copy of it. The request that lost the race does not follow the session (that
    would hand it to whoever planted the old id): it answers 200 if it writes nothing after, and
    409 Conflict (its write not made, no cookie sent) if it does, never a 500."""
    page = site(kind, redis_server.url, prefix, gate=True)
    client = store_client(redis_server.url)
    statuses = (200, 409) if then.endswith("write") else (200, 200)
    for round_ in range(ROUNDS):
        cookies, note, responses = double_submit(page, f"/regenerate?then={then}", statuses)
        old_id = page.decode(cookies[COOKIE])
        for browser in browsers_after(page, cookies, responses):
            assert browser.get("/note").text == note, f"round {round_}"
            assert page.session_id(browser) != old_id
        copies = [key for key in session_keys(client, prefix) if client.hget(key, "note") == note.encode()]
        assert len(copies) == 1, f"round {round_}"


# -- 2. no id in Redis ------------------------------------------------------------------------------


class Monitor:
    """Every command a redis-server runs from now until stop() (a raw MONITOR connection)."""

    def __init__(self, server: RedisServer) -> None:
        self.server, self.received = server, bytearray()
        self.socket = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.socket.sendall(b"MONITOR\r\n")
        while b"+OK\r\n" not in self.received:
            self.received += self.socket.recv(4096)
        self.socket.settimeout(None)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.socket.recv(65536):
                self.received += chunk

    def stop(self) -> str:
        """What it saw, up to an ECHO sent now (so everything sent before is in)."""
        marker = uuid.uuid4().hex.encode()
        with contextlib.closing(self.server.client()) as client:
            client.echo(marker)
        deadline = time.monotonic() + 10
        while marker not in self.received and time.monotonic() < deadline:
            time.sleep(0.01)
        self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
        self.thread.join(5)
        return self.received.decode("utf-8", "replace")


def everything_under(client: Any, prefix: str) -> list[bytes]:
    """Every key of the prefix (the marks regenerate leaves too) and everything each holds."""
    found: list[bytes] = []
    for key in client.scan_iter(match=f"*{prefix}:*"):
        found.append(key)
        kind = client.type(key)
        if kind == b"hash":
            found.extend(part for pair in client.hgetall(key).items() for part in pair)
        elif kind == b"zset":
            found.extend(client.zrange(key, 0, -1))
        elif kind == b"string":
            found.append(client.get(key))
    return found


def test_no_session_id_reaches_redis_its_listings_or_monitor(site, redis_server, prefix, store_client):
    """Through a whole login flow no session id appears in a key, in a value, in the admin
    command's list and show output, or in any command Redis ran: sessions live under
    {prefix}:sessions:<sha256 of the id>, the user index lists that digest."""
    monitor = Monitor(redis_server)
    page = site("tornado blocking", redis_server.url, prefix)
    browser = page.browser()
    browser.post("/note", b"hello")
    anonymous = page.session_id(browser)
    assert browser.post("/login/alice?then=write").text == "ok"
    assert (browser.get("/whoami").text, browser.get("/note").text) == ("alice", "hello")
    signed_in = page.session_id(browser)
    assert anonymous and signed_in and signed_in != anonymous
    outputs = [admin_command(redis_server.url, prefix, *arguments).out for arguments in (
        ("list",), ("list", "--user", "alice"), ("--json", "list"), ("show", digest(signed_in)), ("--json", "show", digest(signed_in)))]
    seen = monitor.stop()

    client = store_client(redis_server.url)
    assert session_keys(client, prefix) == {hashed_key(prefix, signed_in).encode()}
    assert client.zrange(f"{prefix}:users:alice", 0, -1) == [digest(signed_in).encode()]
    assert all(digest(signed_in) in output for output in outputs)
    assert hashed_key(prefix, anonymous) in seen and hashed_key(prefix, signed_in) in seen  # it did watch the flow
    stored = b"\n".join(everything_under(client, prefix)).decode("utf-8", "replace")
    for session_id in (anonymous, signed_in):
        assert session_id not in stored
        assert session_id not in seen
        assert not any(session_id in output for output in outputs)


# -- 3. sessions of an older release move to a hashed key --------------------------------------------


@pytest.mark.parametrize("hash_ids", [True, False])
def test_a_raw_keyed_session_moves_to_a_hashed_key_on_first_use(site, redis_server, prefix, store_client, hash_ids):
    """A session stored under its 32-character id by an older release, bound to a user, keeps every
    field and its user on its first request, which sends a new cookie with a 43-character id stored
    under its digest; the old key and cookie are dead and the user index lists the new digest.
    With hash-ids off it stays where it is and no cookie is sent."""
    client = store_client(redis_server.url)
    old_id = secrets.token_urlsafe(24)
    old_key, index = f"{prefix}:sessions:{old_id}", f"{prefix}:users:carol"
    fields = {"cart": "3 items", "theme": "dark", "visits": "7"}
    client.hset(old_key, mapping={**fields, "__rs:created": int(time.time()) - 60, "__rs:user": "carol"})
    client.expire(old_key, 3600)
    client.zadd(index, {old_id: time.time() + 86400})
    page = site("tornado blocking", redis_server.url, prefix, **{"hash-ids": hash_ids})
    browser = page.browser(0, {COOKIE: tornado_sign(old_id)})

    first = browser.get("/fields")

    assert (first.status, json.loads(first.text)) == (200, fields)
    assert browser.get("/whoami").text == "carol"
    new_id = page.issued(first)
    if not hash_ids:
        assert new_id is None and first.set_cookies == []
        assert session_keys(client, prefix) == {old_key.encode()}
        assert client.zrange(index, 0, -1) == [old_id.encode()]
        return
    assert new_id is not None and len(new_id) == 43 and new_id != old_id
    assert client.exists(old_key) == 0
    assert client.zrange(index, 0, -1) == [digest(new_id).encode()]
    # for MOVE_FOLLOW_SECONDS the old id follows the move (the page's other requests in flight
    # carry it); once that mark is gone, the old id names nothing
    assert client.ttl(moved_mark_key(old_key)) <= MOVE_FOLLOW_SECONDS
    client.delete(moved_mark_key(old_key))
    replay = page.browser(0, {COOKIE: tornado_sign(old_id)})
    assert (replay.get("/fields").text, replay.get("/whoami").text) == ("{}", "anonymous")
    assert session_keys(client, prefix) == {hashed_key(prefix, new_id).encode()}
    assert json.loads(browser.get("/fields").text) == fields


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_first_requests_of_a_raw_keyed_session_all_succeed(site, redis_server, prefix, store_client, kind):
    """A page whose two requests (each writing a field) carry the cookie of a session stored under
    its id gets two 200s, no expired cookie, and the old key is gone: the request that finds the
    session already moved by the other is no 500."""
    client = store_client(redis_server.url)
    page = site(kind, redis_server.url, prefix)
    for round_ in range(ROUNDS):
        old_id = secrets.token_urlsafe(24)
        client.hset(f"{prefix}:sessions:{old_id}", mapping={"note": "old", "__rs:created": int(time.time())})
        client.expire(f"{prefix}:sessions:{old_id}", 3600)
        cookies = {COOKIE: page.sign(old_id)}
        responses = all_at_once(2, lambda index, cookies=cookies: page.browser(index, cookies).post("/note", f"tab {index}".encode()))
        assert [response.status for response in responses] == [200, 200], f"round {round_}"
        assert not any(expires_the_cookie(response) for response in responses)
        assert client.exists(f"{prefix}:sessions:{old_id}") == 0


# -- 4. a signed id with a trailing newline ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["tornado blocking", "flask threaded"])
def test_a_signed_id_with_a_trailing_newline_gets_a_fresh_session(site, redis_server, prefix, store_client, kind):
    """A validly signed cookie holding a live id plus "\\n" reads nothing, sends Redis no key with a
    newline, and a write with it starts a fresh session; the real session is untouched."""
    page = site(kind, redis_server.url, prefix)
    owner = page.browser()
    owner.post("/note", b"mine")
    real_id = page.session_id(owner)
    assert real_id is not None
    monitor = Monitor(redis_server)
    forged = page.browser(0, {COOKIE: page.sign(real_id + "\n")})

    reading = forged.get("/note")
    writing = forged.post("/note", b"forged")
    seen = monitor.stop()

    assert (reading.status, reading.text, reading.set_cookies) == (200, "nothing", [])
    assert (writing.status, writing.text) == (200, "nothing")
    assert page.issued(writing) not in (None, real_id)
    named = re.findall(rf'"{prefix}:sessions:([^"]*)"', seen)
    assert named and not [name for name in named if "\\n" in name]
    keys = session_keys(store_client(redis_server.url), prefix)
    assert len(keys) == 2 and not any(b"\n" in key for key in keys)
    assert owner.get("/note").text == "mine" and page.session_id(owner) == real_id


# -- 5. limits --------------------------------------------------------------------------------------


@pytest.fixture
def raw_hash(make_settings: Callable[..., SessionSettings], registry: TestStores, prefix: str) -> Callable[[Any], dict[bytes, bytes]]:
    """``raw_hash(session)``: its hash as stored, without the size bookkeeping (``{}`` if none)."""
    client = registry.store_for(make_settings()).client

    def read(session: Any) -> dict[bytes, bytes]:
        if session.session_id is None:
            return {}
        stored = client.hgetall(hashed_key(prefix, session.session_id))
        return {name: value for name, value in stored.items() if name != b"__rs:size"}
    return read


def test_a_field_name_over_256_bytes_is_refused_and_writes_nothing(make_session, raw_hash):
    """A 300-byte field name raises SessionLimitError whatever the call (set, update, incr), and the
    session is unchanged; a 256-byte name is fine; a first write with a long name creates nothing."""
    cookie = RecordingCookie()
    fresh = make_session(cookie=cookie)
    with pytest.raises(SessionLimitError, match="session-max-name-bytes"):
        fresh["n" * 300] = "x"
    assert fresh.session_id is None and cookie.events == []

    session = make_session()
    session.keep = "kept"
    before = raw_hash(session)
    for write in (lambda: session.__setitem__("n" * 300, "x"), lambda: session.update({"ok": 1, "n" * 300: 2}),
                  lambda: session.incr("n" * 300), lambda: session.__setitem__("é" * 129, "x")):
        with pytest.raises(SessionLimitError, match="session-max-name-bytes"):
            write()
        assert raw_hash(session) == before
    session["a" * 256] = "fits"
    assert session["a" * 256].str == "fits"


def test_a_write_past_max_session_bytes_is_refused_and_writes_nothing(make_session, raw_hash, make_settings, registry, prefix):
    """With max-session-bytes 2000, small writes fill the session up to exactly 2000 bytes; one more
    byte by a write, update, incr or flash raises SessionLimitError and changes nothing, while a
    same-size overwrite still works, and so does a write once a delete has made room. A first
    write that would pass the limit creates no session at all (no key, no cookie)."""
    store = registry.store_for(make_settings()).client
    limit = 2000
    session = make_session(max_session_bytes=limit)
    for number in range(15):
        session[f"f{number:02}"] = "x" * 100
    used = sum(len(name) + len(value) for name, value in raw_hash(session).items())
    assert used < limit - 100
    session.last = "y" * (limit - used - len("last"))
    assert sum(len(name) + len(value) for name, value in raw_hash(session).items()) == limit
    full = raw_hash(session)

    refused = (lambda: session.__setitem__("z", "1"), lambda: session.update(f00="x" * 101),
               lambda: session.update(z=None, last="y" * (limit - used - 3)), lambda: session.incr("n"),
               lambda: session.flash("hi"))
    for write in refused:
        with pytest.raises(SessionLimitError, match="session-max-session-bytes"):
            write()
        assert raw_hash(session) == full
    session.last = "z" * (limit - used - len("last"))
    assert session.last.str == "z" * (limit - used - len("last"))
    del session.f00
    session.z = "1"
    assert session.z.str == "1" and "f00" not in session

    cookie = RecordingCookie()  # a first write that fits alone, but not with the session's bookkeeping
    fresh = make_session(cookie=cookie, max_session_bytes=limit)
    with pytest.raises(SessionLimitError, match="session-max-session-bytes"):
        fresh.update(big="x" * (limit - 10))
    assert fresh.session_id is None and cookie.events == []
    assert list(store.scan_iter(match=f"{prefix}:*")) == [hashed_key(prefix, session.session_id).encode()]


def test_a_user_id_over_256_bytes_is_refused_before_redis(make_session, raw_hash, store_client, make_settings, prefix):
    """bind_user() with a 300-byte user id raises SessionLimitError naming session-max-name-bytes:
    the id would become part of a key and of every listing. Nothing moves, nothing is indexed."""
    session = make_session()
    session.keep = "kept"
    before, session_id = raw_hash(session), session.session_id
    with pytest.raises(SessionLimitError, match="user id of 300 bytes .*session-max-name-bytes"):
        session.bind_user("u" * 300)
    assert (session.session_id, raw_hash(session)) == (session_id, before)
    assert list(store_client(make_settings().redis_url).scan_iter(match=f"{prefix}:users:*")) == []
    session.bind_user("u" * 256)
    assert session.user_id == "u" * 256


@pytest.mark.parametrize("kind", ["tornado blocking", "tornado coroutine", "flask threaded"])
def test_input_too_large_for_the_session_answers_413_not_a_500(site, redis_server, prefix, caplog, kind):
    """A handler that stores what a request sent, past a limit (a 200 kB note over
    session-max-value-bytes, a 300-character user id), and does not catch SessionLimitError:
    the response is 413 with one log line, no traceback, and the session is unchanged."""
    caplog.set_level(logging.WARNING)
    page = site(kind, redis_server.url, prefix)
    browser = page.browser()
    assert browser.post("/note", b"small").status == 200
    for path, body in (("/note", b"x" * 200_000), ("/login/" + "u" * 300, b"")):
        caplog.clear()
        response = browser.post(path, body)
        assert response.status == 413, (path[:10], response)
        ours = [record.levelno for record in caplog.records if record.name == "redis_session"]
        assert "Traceback" not in caplog.text and ours == [logging.WARNING]
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert f"413 POST {path}" in caplog.text
    assert browser.get("/note").text == "small"


# -- 6. JSON that would not read back ----------------------------------------------------------------


def test_json_that_would_not_read_back_as_written_is_refused(make_session, raw_hash):
    """Dicts with non-str keys (1 beside "1", True) and tuples raise SessionTypeError and write
    nothing, alone or in an update(); nested lists, dicts and floats read back equal."""
    cookie = RecordingCookie()
    session = make_session(cookie=cookie)
    session.keep = "kept"
    before = raw_hash(session)
    for value in ({1: "a", "1": "b"}, {True: "x"}, {"a": (1, 2)}, [{"b": [None, (3,)]}]):
        with pytest.raises(SessionTypeError):
            session.d = value
        with pytest.raises(SessionTypeError):
            session.update(ok=1, d=value)
        assert raw_hash(session) == before, value
    session.d = {"a": [1, {"b": 1.5}]}
    assert session.d.json == {"a": [1, {"b": 1.5}]}
    assert cookie.events == [("issue", session.session_id)]


# -- 7. cookie tossing, however the header spells it -------------------------------------------------


TOSSED = {
    "space-before-equals": "session-id={0}; session-id ={1}",
    "tabs": "session-id={0};\tsession-id\t={1}",
    "quoted-name": '"session-id"={0}; session-id={1}',
    "empty-name-between": "session-id={0}; =x; session-id={1}",
    "quoted-value": 'session-id="{0}"; session-id={1}',
    "among-others": "a=1; session-id={0}; b=2; session-id={1}; c=3",
}
#: Two Cookie header lines, as Tornado's HTTPHeaders (and Werkzeug's dev server) join them: one
#: cookie whose value is both, which no signature matches. A comma is no separator: a cookie
#: value may hold one (test_tornado.py), and splitting there would log its owner out.
JOINED = "session-id={0},session-id={1}"


@pytest.mark.parametrize("kind", ["tornado blocking", "flask threaded"])
def test_two_session_cookies_however_spelt_give_a_fresh_session(site, redis_server, prefix, caplog, kind):
    """Two session cookies in one Cookie header, whatever the spacing, quoting or order: neither
    session is used, a write starts a new one, and exactly one cookie-tossing warning is logged;
    two Cookie header lines (joined with a comma) are one cookie no signature matches: a fresh
    session too. One session cookie among other cookies still works, with or without spaces."""
    caplog.set_level(logging.WARNING, logger="redis_session")
    page = site(kind, redis_server.url, prefix)
    alice, mallory = page.browser(), page.browser()
    alice.post("/note", b"alice's")
    mallory.post("/note", b"mallory's")
    values = [browser.cookies[COOKIE].strip('"') for browser in (alice, mallory)]
    ids = [page.decode(value) for value in values]

    def warnings() -> list[str]:
        return [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING and "cookie tossing" in record.getMessage()]

    for name, spelling in TOSSED.items():
        for first, second in (values, values[::-1]):
            caplog.clear()
            response = page.browser().post("/note", b"fresh", headers={"Cookie": spelling.format(first, second)})
            assert (response.status, response.text) == (200, "nothing"), name
            assert page.issued(response) not in (None, *ids), name
            assert len(warnings()) == 1, name
        response = page.browser().post("/note", b"fresh", headers={"Cookie": JOINED.format(first, second)})
        assert (response.status, response.text) == (200, "nothing") and page.issued(response) not in (None, *ids)
    for spelling in ("a=1; session-id={0}; b=2", "a=1;session-id={0};b=2", "a=1 ;  session-id={0}  ; b=2"):
        caplog.clear()
        response = page.browser().get("/note", headers={"Cookie": spelling.format(values[0])})
        assert (response.text, response.set_cookies, warnings()) == ("alice's", [], []), spelling
    assert (alice.get("/note").text, mallory.get("/note").text) == ("alice's", "mallory's")
