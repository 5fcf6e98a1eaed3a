"""The Tornado glue end to end, over real HTTP: the signed cookie and its attributes, Vary and
Cache-Control, cookieless reads, key rotation, configuration, Redis outages, several
Applications and WebSockets. The Session API itself runs for Tornado (sync and async) in the
shared behaviour suite; forged and tossed cookies and crowds are in test_adversarial.py."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import tornado.httpclient
import tornado.web
import tornado.websocket
from tornado.options import options

from redis_session.errors import ConfigurationError, RedisSessionError
from redis_session.protocol import session_key
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler, SessionMixin, resolve_settings
from tests.conftest import COOKIE_SECRET, app_settings
from tests.redis_servers import RedisServer, free_port
from tests.support import memory_client
from tests.web import Browser, Response

# -- the handlers the tests serve ---------------------------------------------------------------


class Counter(SessionHandler):
    """``/``: one more visit, counted on the server."""

    def get(self) -> None:
        self.write(str(self.session.incr("count")))


class ReadCount(SessionHandler):
    """``/read``: the count, or "nothing", without ever writing."""

    def get(self) -> None:
        self.write(self.session.count.str or "nothing")


class Hello(SessionHandler):
    """``/hello``: creates the session without touching the count."""

    def get(self) -> None:
        self.session.greeted = True
        self.write("hello")


class Peek(SessionHandler):
    """``/peek``: every kind of read, and nothing else."""

    def get(self) -> None:
        session = self.session
        count = session.count.int
        name = session.name.str or "anonymous"
        many = [value.raw for value in session.get_many("a", "b")]
        everything = session.load()
        present = "count" in session
        flashes = self.get_flashed_messages()
        self.write(f"count={count} name={name} many={many} load={everything} in={present} "
                   f"len={len(session)} flashes={flashes} user={session.user_id} id={session.session_id}")


COUNTER_ROUTES = [("/", Counter), ("/read", ReadCount), ("/hello", Hello)]


# -- small helpers --------------------------------------------------------------------------------


def session_cookies(response: Response, name: str = "session-id") -> list[str]:
    """The raw Set-Cookie headers of a response that set ``name``."""
    return [header for header in response.set_cookies if header.split("=", 1)[0].strip() == name]


def parse_set_cookie(header: str) -> tuple[str, dict[str, Any]]:
    """``(value, {attribute-lowercased: value or True})`` of one Set-Cookie header."""
    first, *rest = header.split(";")
    value = first.split("=", 1)[1]
    attributes: dict[str, Any] = {}
    for part in rest:
        key, _, attribute = part.strip().partition("=")
        attributes[key.lower()] = attribute if _ else True
    return value, attributes


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def session_id_of(browser: Browser, name: str = "session-id", secret: Any = COOKIE_SECRET) -> str:
    """The session id inside the browser's signed cookie."""
    decoded = tornado.web.decode_signed_value(secret, name, unquote(browser.cookies[name]), min_version=2)
    assert decoded is not None, f"the browser's {name} cookie does not verify"
    return decoded.decode("ascii")


def sign(value: Any, name: str = "session-id", secret: Any = COOKIE_SECRET, **options: Any) -> str:
    """A cookie value signed the way Tornado signs it (what an attacker cannot do without the secret)."""
    return tornado.web.create_signed_value(secret, name, value, **options).decode("ascii")


def client_for(store_url: str) -> Any:
    """A raw client on the store the app uses (the shared in-process server for memory://)."""
    if store_url.startswith("memory://"):
        return memory_client(store_url)
    return redis.Redis.from_url(store_url)


@pytest.fixture
def store_client(store_url: str) -> Iterator[Any]:
    """A raw client on the test's store, to look at keys the way an operator would."""
    client = client_for(store_url)
    yield client
    client.close()


def keys_under(client: Any, prefix: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{prefix}:*"))


def total_command_calls(client: Any) -> int:
    """How many commands the server has executed (INFO commandstats, summed)."""
    stats = client.info("commandstats")
    return sum(entry["calls"] for name, entry in stats.items() if name.startswith("cmdstat_"))


@contextlib.contextmanager
def flag(name: str, value: Any) -> Iterator[None]:
    """Set a tornado.options flag for the duration of the block, then put the old value back."""
    saved = options[name]
    setattr(options, name, value)
    try:
        yield
    finally:
        setattr(options, name, saved)


def talk_over_websocket(url: str, cookie_header: str | None, *messages: str) -> list[Any]:
    """Open a WebSocket (sending ``cookie_header``), collect the greeting and one reply per message."""

    async def talk() -> list[Any]:
        headers = {"Cookie": cookie_header} if cookie_header else {}
        request = tornado.httpclient.HTTPRequest(url, headers=headers, request_timeout=10)
        connection = await tornado.websocket.websocket_connect(request)
        replies: list[Any] = [await connection.read_message()]
        for message in messages:
            await connection.write_message(message)
            replies.append(await connection.read_message())
        connection.close()
        while await connection.read_message() is not None:  # wait for the closing handshake
            pass
        return replies

    return asyncio.run(talk())


# -- the cookie -------------------------------------------------------------------------------------


def test_first_write_sets_one_signed_cookie_with_safe_defaults(serve, store_url, prefix):
    """The first write sends one Tornado-v2-signed session-id cookie: HttpOnly, Path=/, SameSite=Lax, 30-day Max-Age."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    response = browser.get("/")
    assert response.status == 200 and response.text == "1"
    (header,) = session_cookies(response)
    assert len(response.set_cookies) == 1
    value, attributes = parse_set_cookie(header)
    assert value.startswith(('"2|', "2|"))
    assert attributes["httponly"] is True
    assert attributes["path"] == "/"
    assert attributes["samesite"] == "Lax"
    assert attributes["max-age"] == "2592000"
    assert "secure" not in attributes  # app_settings turns cookie-secure off
    assert "domain" not in attributes  # host-only by default
    # later writes reuse the cookie the browser already has
    second = browser.get("/")
    assert second.text == "2" and second.set_cookies == []


@pytest.mark.parametrize(("overrides", "expected"), [
    pytest.param({"cookie-secure": True}, {"secure": True}, id="secure"),
    pytest.param({"cookie-domain": "example.test"}, {"domain": "example.test"}, id="domain"),
    pytest.param({"cookie-path": "/app"}, {"path": "/app"}, id="path"),
    pytest.param({"cookie-samesite": "Strict"}, {"samesite": "Strict"}, id="samesite-strict"),
    pytest.param({"cookie-http-only": False}, {"httponly": None}, id="http-only-off"),
    pytest.param({"cookie-samesite": "strict"}, {"samesite": "Strict"}, id="samesite-any-case"),
    pytest.param({"cookie-samesite": ""}, {"samesite": None}, id="samesite-omitted"),
    pytest.param({"cookie-max-age": 600}, {"max-age": "600"}, id="max-age"),
    pytest.param({"cookie-max-age": 0}, {"max-age": None, "expires": None}, id="browser-session-cookie"),
    pytest.param({"max-lifetime": 3600}, {"max-age": "3600"}, id="capped-by-max-lifetime"),
])
def test_cookie_attributes_follow_the_settings(serve, store_url, prefix, overrides, expected):
    """Each cookie-* setting shows up in the Set-Cookie header (None: the attribute is absent)."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(store_url, prefix, **overrides))
    (header,) = session_cookies(server.browser().get("/"))
    _, attributes = parse_set_cookie(header)
    for attribute, value in expected.items():
        assert attributes.get(attribute) == value, header


def test_cookie_id_renames_the_cookie(serve, store_url, prefix):
    """With cookie-id 'sid' the session travels in a cookie called sid, and only in it."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(store_url, prefix, **{"cookie-id": "sid"}))
    browser = server.browser()
    response = browser.get("/")
    assert [header.split("=", 1)[0] for header in response.set_cookies] == ["sid"]
    assert list(browser.cookies) == ["sid"]
    assert browser.get("/").text == "2"
    session_id_of(browser, "sid")  # signed for the name "sid"


class Logout(SessionHandler):
    def get(self) -> None:
        self.session.destroy()
        self.write("bye")


def test_logout_expires_the_cookie_where_it_was_set(serve, store_url, store_client, prefix):
    """destroy() deletes the key and expires the cookie (Max-Age=0 and Expires in 1970) with the Domain and Path it was set with."""
    settings = app_settings(store_url, prefix, **{"cookie-domain": "example.test", "cookie-path": "/app"})
    server = serve(COUNTER_ROUTES + [("/logout", Logout)], redis_session=settings)
    browser = server.browser()
    browser.get("/")
    key = session_key(prefix, session_id_of(browser))
    response = browser.get("/logout")
    (header,) = session_cookies(response)
    _, attributes = parse_set_cookie(header)
    assert attributes.get("max-age") == "0"
    assert "01 Jan 1970" in attributes.get("expires", "")
    assert (attributes["domain"], attributes["path"]) == ("example.test", "/app")
    assert store_client.exists(key) == 0
    assert browser.cookies == {}
    assert browser.get("/").text == "1"


def test_an_active_session_outlives_tornados_31_day_signature_limit(serve, store_url, prefix):
    """With cookie-max-age of 90 days, a cookie signed 40 days ago still opens its session."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(store_url, prefix, **{"cookie-max-age": 90 * 86400}))
    browser = server.browser()
    browser.get("/")
    browser.cookies["session-id"] = sign(session_id_of(browser), clock=lambda: time.time() - 40 * 86400)
    assert browser.get("/").text == "2"


class KeepsItsSession(SessionHandler):
    """``/keep``: reads the session and hands it (not itself) to code that outlives the request."""

    kept: list[Any] = []
    handlers: list[Any] = []

    def get(self) -> None:
        self.write(self.session.count.str or "nothing")
        KeepsItsSession.kept.append(self.session)
        KeepsItsSession.handlers.append(weakref.ref(self))


def test_a_finished_requests_handler_is_freed_at_once_and_its_session_cannot_start_later(serve, store_url, store_client, prefix):
    """A finished request's handler is freed at once (no cycle left), and its kept session then refuses to start with a clear error."""
    server = serve([("/keep", KeepsItsSession)], redis_session=app_settings(store_url, prefix))
    gc.disable()
    try:
        assert server.browser().get("/keep").text == "nothing"
        deadline = time.monotonic() + 5
        while KeepsItsSession.handlers[-1]() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert KeepsItsSession.handlers[-1]() is None
    finally:
        gc.enable()
    kept = KeepsItsSession.kept.pop()
    with pytest.raises(RuntimeError, match="has finished"):
        kept.count = 1
    assert keys_under(store_client, prefix) == [] and kept.session_id is None


class Login(SessionHandler):
    """``/login``: binds the session to alice, which moves it to a new id (and cookie)."""

    def get(self) -> None:
        self.session.bind_user("alice")
        self.write("welcome")


def test_session_responses_vary_on_cookie_and_cookie_setting_ones_are_private(serve, store_url, prefix):
    """Every response that used the session says Vary: Cookie; one that sets, regenerates or expires the cookie is private, no-store."""
    server = serve(COUNTER_ROUTES + [("/login", Login), ("/logout", Logout)], redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    read_without_cookie = browser.get("/read")
    creating = browser.get("/")
    writing = browser.get("/")
    reading = browser.get("/read")
    before_login = dict(browser.cookies)
    regenerating = browser.get("/login")
    logging_out = browser.get("/logout")
    stale_holder = server.browser()
    stale_holder.cookies = before_login  # an id that regenerate() ended: the cookie is left alone
    stale = stale_holder.get("/read")

    assert session_cookies(creating) and session_cookies(regenerating)
    (header,) = session_cookies(logging_out)
    assert parse_set_cookie(header)[1].get("max-age") == "0"
    assert session_cookies(stale) == []  # it may be racing the login that replaced it (issue: no silent logouts)
    for response in (read_without_cookie, creating, writing, reading, regenerating, logging_out, stale):
        assert response.status == 200
        assert "Cookie" in (response.header("Vary") or ""), response.header_list
    for response in (creating, regenerating, logging_out):
        cache_control = response.header("Cache-Control") or ""
        assert "private" in cache_control and "no-store" in cache_control, response.header_list


class VaryFirst(SessionHandler):
    def get(self) -> None:
        self.set_header("Vary", self.get_argument("vary", "Accept-Encoding"))
        self.write(str(self.session.count.int))


@pytest.mark.parametrize("vary", ["Accept-Encoding", "X-Cookie-Consent", "Accept-Encoding, Cookie"])
def test_a_vary_header_the_application_set_is_kept_and_gets_cookie_once(serve, store_url, prefix, vary):
    """A Vary the handler set before using the session is kept and gains Cookie, even beside a look-alike, but never twice."""
    server = serve([("/", VaryFirst)], redis_session=app_settings(store_url, prefix))
    varies = ",".join(server.browser().get("/?vary=" + vary.replace(" ", "%20")).headers("Vary"))
    tokens = [token.strip().lower() for token in varies.split(",")]
    assert tokens.count("cookie") == 1 and vary.split(",")[0].lower() in tokens


class PublicAfterWrite(SessionHandler):
    """An application that marks its page cacheable after writing the session."""

    def get(self) -> None:
        self.session.seen = True
        self.set_header("Cache-Control", "public, max-age=3600")
        self.write("cached?")


def test_a_page_that_sets_the_session_cookie_stays_private_even_if_marked_public(serve, store_url, prefix):
    """A handler that sets Cache-Control: public after the first session write still sends private, no-store with the new cookie."""
    server = serve([("/", PublicAfterWrite)], redis_session=app_settings(store_url, prefix))
    response = server.browser().get("/")
    assert session_cookies(response)
    assert response.header("Cache-Control") == "private, no-store"


# -- lazy creation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cookie_header", [None, "prefs=dark; _ga=GA1.2.3"], ids=["no Cookie header", "only other cookies"])
def test_reading_without_a_cookie_costs_no_redis_command(serve, own_redis_server: RedisServer, prefix, cookie_header):
    """Read-only visits without a session cookie get fallbacks and Vary: Cookie, but no cookie, no Redis command and no key."""
    server = serve([("/peek", Peek)], redis_session=app_settings(own_redis_server.url, prefix))
    operator = own_redis_server.client()
    try:
        before = total_command_calls(operator)
        browser = server.browser()
        responses = [browser.get("/peek", headers={"Cookie": cookie_header} if cookie_header else {}) for _ in range(3)]
        after = total_command_calls(operator)
        for response in responses:
            assert response.status == 200
            assert response.text == ("count=0 name=anonymous many=[None, None] load={} in=False "
                                     "len=0 flashes=[] user=None id=None")
            assert response.set_cookies == []
            assert "Cookie" in (response.header("Vary") or "")
        assert after - before == 1  # the first INFO above, nothing else
        assert operator.dbsize() == 0
    finally:
        operator.close()


# -- parsing the Cookie header ---------------------------------------------------------------------


def test_a_comma_in_another_cookie_is_not_taken_for_a_second_session_cookie(serve, store_url, prefix):
    """Cookie: prefs=a,session-id=x; session-id=<valid> is one session cookie (Tornado splits on ';' only): the session is used."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(store_url, prefix))
    owner = server.browser()
    owner.get("/")
    valid = owner.cookies["session-id"]
    response = server.browser().get("/read", headers={"Cookie": f"prefs=a,session-id=x; session-id={valid}"})
    assert (response.status, response.text) == (200, "1")


# -- key rotation -----------------------------------------------------------------------------------

OLD_SECRET = "old-secret-" + "o" * 32
NEW_SECRET = "new-secret-" + "n" * 32


def test_cookies_signed_with_a_retired_key_work_until_the_key_is_removed(serve, store_url, prefix):
    """With cookie_secret={0: old, 1: new} and key_version=1 an old-key cookie still works; once key 0 is dropped it does not."""
    settings = app_settings(store_url, prefix)
    before = serve(COUNTER_ROUTES, cookie_secret={0: OLD_SECRET}, key_version=0, redis_session=settings)
    rotating = serve(COUNTER_ROUTES, cookie_secret={0: OLD_SECRET, 1: NEW_SECRET}, key_version=1, redis_session=settings)
    pruned = serve(COUNTER_ROUTES, cookie_secret={1: NEW_SECRET}, key_version=1, redis_session=settings)
    veteran = before.browser()
    assert veteran.get("/").text == "1"  # a cookie the app issued before the rotation, with key 0
    issued_before_rotation = dict(veteran.cookies)

    browser = rotating.browser()
    assert browser.get("/").text == "1"
    assert "|1:1|" in browser.cookies["session-id"]  # new cookies are signed with key 1
    assert tornado.web.get_signature_key_version(unquote(browser.cookies["session-id"])) == 1
    session_id = session_id_of(browser, secret={0: OLD_SECRET, 1: NEW_SECRET})
    signed_with_new_key = browser.cookies["session-id"]
    signed_with_old_key = sign(session_id, secret={0: OLD_SECRET, 1: NEW_SECRET}, key_version=0)

    old_cookie_holder = rotating.browser()
    old_cookie_holder.cookies["session-id"] = signed_with_old_key
    assert old_cookie_holder.get("/").text == "2"
    veteran_after_rotation = rotating.browser()
    veteran_after_rotation.cookies = dict(issued_before_rotation)
    assert veteran_after_rotation.get("/").text == "2"

    still_old = pruned.browser()
    still_old.cookies["session-id"] = signed_with_old_key
    assert still_old.get("/read").text == "nothing"
    assert still_old.get("/").text == "1"  # a fresh session
    veteran_after_pruning = pruned.browser()
    veteran_after_pruning.cookies = dict(issued_before_rotation)
    assert veteran_after_pruning.get("/read").text == "nothing"
    current = pruned.browser()
    current.cookies["session-id"] = signed_with_new_key
    assert current.get("/").text == "3"


# -- configuration ----------------------------------------------------------------------------------


def test_an_application_without_cookie_secret_answers_500_and_logs_why(serve, prefix, caplog):
    """Forgetting cookie_secret is a ConfigurationError naming it: raised by resolve_settings(); a
    page answers 500 with one log line naming it, no traceback, and not again within the minute."""
    with pytest.raises(ConfigurationError, match="cookie_secret"):
        resolve_settings({})
    server = serve(COUNTER_ROUTES, cookie_secret=None, redis_session=app_settings("memory://", prefix))
    browser = server.browser()
    assert [browser.get("/").status for _ in range(3)] == [500] * 3
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR and record.name == "redis_session"]
    assert len(errors) == 1 and "cookie_secret" in errors[0].getMessage() and errors[0].exc_info is None
    assert "Traceback" not in caplog.text


def test_a_dict_cookie_secret_without_key_version_is_a_configuration_error(serve, prefix, caplog):
    """cookie_secret={0: ...} without key_version is reported as a ConfigurationError naming key_version, and nothing is written."""
    store_url = f"memory://no-key-version-{prefix}"
    server = serve(COUNTER_ROUTES, cookie_secret={0: OLD_SECRET}, redis_session=app_settings(store_url, prefix))
    response = server.browser().get("/")
    assert response.status == 500
    assert keys_under(memory_client(store_url), prefix) == []
    assert "redis_session is misconfigured" in caplog.text and "key_version" in caplog.text


def test_a_key_version_that_names_no_key_of_the_cookie_secret_is_a_configuration_error():
    """key_version naming no key of a dict cookie_secret is refused, naming both settings."""
    with pytest.raises(ConfigurationError, match="'key_version' 2 is not a key of its 'cookie_secret'"):
        resolve_settings({"cookie_secret": {0: OLD_SECRET, 1: NEW_SECRET}, "key_version": 2})


def test_flags_set_before_the_first_request_take_effect(serve, store_url, store_client, prefix):
    """--session-expire set before an Application's first request decides its TTL; each Application resolves its own."""
    early = serve(COUNTER_ROUTES, redis_session=app_settings(store_url, prefix))
    browser = early.browser()
    with flag("session_expire", 77):
        assert browser.get("/").text == "1"
    key = session_key(prefix, session_id_of(browser))
    assert 70 <= store_client.ttl(key) <= 77
    # the flag is back to its default, but this Application resolved its settings already
    assert browser.get("/").text == "2"
    assert 70 <= store_client.ttl(key) <= 77

    later = serve(COUNTER_ROUTES, redis_session=app_settings(store_url, prefix))
    other = later.browser()
    other.get("/")
    assert store_client.ttl(session_key(prefix, session_id_of(other))) > 86000


def test_two_applications_with_different_prefixes_keep_separate_sessions(serve, redis_server, prefix):
    """Two Applications on one Redis with different prefixes never see each other's sessions."""
    other_prefix = prefix + "-other"
    first = serve(COUNTER_ROUTES, redis_session=app_settings(redis_server.url, prefix))
    second = serve(COUNTER_ROUTES, redis_session=app_settings(redis_server.url, other_prefix))
    browser = first.browser()
    assert [browser.get("/").text for _ in range(3)] == ["1", "2", "3"]
    session_id = session_id_of(browser)

    visitor = second.browser()
    visitor.cookies = dict(browser.cookies)  # same secret, so the cookie verifies, but the id is unknown here
    assert visitor.get("/read").text == "nothing"
    assert visitor.get("/").text == "1"
    assert session_id_of(visitor) != session_id
    assert browser.get("/").text == "4"
    real = redis_server.client()
    try:
        assert real.exists(session_key(prefix, session_id)) == 1
        assert real.exists(session_key(other_prefix, session_id)) == 0
        assert real.exists(session_key(other_prefix, session_id_of(visitor))) == 1
    finally:
        real.close()


def test_a_memory_app_and_a_redis_app_keep_separate_sessions(serve, redis_server, prefix):
    """An Application on memory:// and one on a real Redis, same prefix, do not share sessions."""
    memory_url = f"memory://separate-{prefix}"
    in_memory = serve(COUNTER_ROUTES, redis_session=app_settings(memory_url, prefix))
    on_redis = serve(COUNTER_ROUTES, redis_session=app_settings(redis_server.url, prefix))
    browser = in_memory.browser()
    assert [browser.get("/").text for _ in range(2)] == ["1", "2"]
    session_id = session_id_of(browser)

    visitor = on_redis.browser()
    visitor.cookies = dict(browser.cookies)
    assert visitor.get("/").text == "1"
    assert browser.get("/").text == "3"
    real = redis_server.client()
    try:
        assert real.exists(session_key(prefix, session_id)) == 0
        assert real.exists(session_key(prefix, session_id_of(visitor))) == 1
    finally:
        real.close()
    memory = memory_client(memory_url)
    assert memory.exists(session_key(prefix, session_id)) == 1
    assert memory.exists(session_key(prefix, session_id_of(visitor))) == 0


# -- Redis outages ----------------------------------------------------------------------------------


def session_log_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "redis_session"]


class AsyncCounter(AsyncSessionHandler):
    """``/`` for coroutine handlers: one more visit, counted on the server."""

    async def get(self) -> None:
        self.write(str(await self.session.incr("count")))


@pytest.mark.parametrize("handler", [Counter, AsyncCounter], ids=["sync", "async"])
def test_redis_down_is_a_quick_503_with_one_log_line_and_recovers(serve, own_redis_server: RedisServer, prefix, caplog, handler):
    """With Redis stopped a sync or async session page answers a fast 503 + Retry-After and logs one line; after a restart it works."""
    routes = [("/", handler), ("/read", ReadCount)]
    server = serve(routes, redis_session=app_settings(own_redis_server.url, prefix, **{"redis-timeout": 0.5}))
    browser = server.browser()
    assert [browser.get("/").text for _ in range(2)] == ["1", "2"]

    own_redis_server.stop()
    caplog.set_level(logging.WARNING, logger="redis_session")
    caplog.clear()
    started = time.monotonic()
    response = browser.get("/")
    elapsed = time.monotonic() - started
    assert response.status == 503
    assert int(response.header("Retry-After") or 0) > 0
    assert elapsed < 1.5
    (line,) = session_log_lines(caplog)
    assert line.exc_info is None
    assert "503" in line.getMessage()
    # pages that only read, for visitors without a session, still work during the outage
    assert server.browser().get("/read").status == 200

    own_redis_server.start()  # same port, empty (no persistence)
    recovered = browser.get("/")
    assert (recovered.status, recovered.text) == (200, "1")
    assert browser.get("/").text == "2"


@pytest.mark.parametrize("handler", [Counter, AsyncCounter], ids=["sync", "async"])
def test_a_cluster_that_cannot_be_reached_is_a_503(serve, prefix, caplog, handler):
    """A redis+cluster:// store whose nodes do not answer gives 503 + Retry-After and one log line, sync and async (never a 500)."""
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    server = serve([("/", handler)], redis_session=app_settings(url, prefix, **{"redis-timeout": 0.5}))
    caplog.set_level(logging.WARNING, logger="redis_session")
    for _ in range(2):  # the first request builds the store, the second finds it missing again
        caplog.clear()
        response = server.browser().get("/")
        assert response.status == 503
        assert response.header("Retry-After") == "1"
        (line,) = session_log_lines(caplog)
        assert line.exc_info is None and "unavailable" in line.getMessage()


def test_a_redis_out_of_memory_is_a_503(serve, own_redis_server: RedisServer, prefix, caplog):
    """When Redis refuses writes for lack of memory (maxmemory, noeviction) a write answers 503, not 500."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(own_redis_server.url, prefix))
    client = own_redis_server.client()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    caplog.set_level(logging.WARNING, logger="redis_session")
    try:
        response = server.browser().get("/")
    finally:
        client.config_set("maxmemory", 0)
        client.close()
    assert response.status == 503
    assert "OutOfMemoryError" in session_log_lines(caplog)[0].getMessage()
    assert server.browser().get("/").status == 200


def test_redis_restarted_between_requests_needs_no_app_restart(serve, own_redis_server: RedisServer, prefix):
    """A Redis restart with no request in between (stale pooled connection) does not fail the next write."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(own_redis_server.url, prefix, **{"redis-timeout": 0.5}))
    browser = server.browser()
    assert browser.get("/hello").text == "hello"
    own_redis_server.stop()
    own_redis_server.start()
    response = server.browser().get("/")  # incr: never retried, so the pool must hand out a live connection
    assert (response.status, response.text) == (200, "1")


@pytest.mark.parametrize(("stalled_page", "count_after"), [("/read", 1), ("/", 2)], ids=["read", "incr"])
def test_stalled_redis_is_a_503_within_the_timeout_and_recovers(
    serve, own_redis_server: RedisServer, prefix, caplog, stalled_page, count_after
):
    """A frozen Redis costs one redis-timeout (a 503), not a hung request; after the thaw the session is intact, an incr counted once."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(own_redis_server.url, prefix, **{"redis-timeout": 0.5}))
    browser = server.browser()
    assert browser.get("/").text == "1"
    caplog.set_level(logging.WARNING, logger="redis_session")
    own_redis_server.pause()
    try:
        started = time.monotonic()
        response = browser.get(stalled_page)
        elapsed = time.monotonic() - started
    finally:
        own_redis_server.resume()
    assert response.status == 503
    assert response.header("Retry-After") == "1"
    assert 0.4 <= elapsed < 3
    lines = session_log_lines(caplog)
    assert lines and all(record.exc_info is None for record in lines)
    # the frozen server held a timed-out incr and ran it on resume: it counts once, never twice
    assert first_success(browser, "/read", within=1.0).text == str(count_after)  # after the stall pause (one timeout)
    assert browser.get("/").text == str(count_after + 1)


def first_success(browser: Browser, path: str, within: float) -> Response:
    """The first 200 for ``path``, asking every 50 ms; fails if none comes ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        response = browser.get(path)
        if response.status == 200 or time.monotonic() > deadline:
            assert response.status == 200, response
            return response
        time.sleep(0.05)


def test_requests_queued_behind_a_stalled_redis_fail_fast(serve, own_redis_server: RedisServer, prefix):
    """With Redis frozen, ten concurrent requests to a blocking handler all get their 503 within two timeouts, not one each in turn."""
    server = serve(COUNTER_ROUTES, redis_session=app_settings(own_redis_server.url, prefix, **{"redis-timeout": 0.5}))
    browser = server.browser()
    assert browser.get("/").text == "1"

    def timed_visit(_: int) -> tuple[int, float]:
        started = time.monotonic()
        visitor = server.browser()
        visitor.cookies = dict(browser.cookies)
        response = visitor.get("/")
        return response.status, time.monotonic() - started

    own_redis_server.pause()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(timed_visit, range(10)))
    finally:
        own_redis_server.resume()
    assert [status for status, _ in results] == [503] * 10
    assert max(elapsed for _, elapsed in results) < 1.0 + 0.5
    # only the first request reached Redis (its incr ran once Redis thawed); the others never left
    assert first_success(browser, "/", within=1.0).text == "3"


# -- user code --------------------------------------------------------------------------------------


class Buggy(SessionHandler):
    def get(self) -> None:
        self.session.incr("count")
        raise RuntimeError("a bug in the application")


class Forbidden(SessionHandler):
    def get(self) -> None:
        self.session.incr("count")
        raise tornado.web.HTTPError(403)


def test_application_errors_are_not_swallowed(serve, store_url, prefix, caplog):
    """A bug in the handler is still a plain 500 with its traceback logged, and HTTPError keeps its status."""
    server = serve([("/bug", Buggy), ("/forbidden", Forbidden)], redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    response = browser.get("/bug")
    assert response.status == 500
    assert response.header("Retry-After") is None
    logged = [record for record in caplog.records if record.exc_info and record.exc_info[0] is RuntimeError]
    assert len(logged) == 1 and "a bug in the application" in caplog.text
    assert browser.get("/forbidden").status == 403


class MissingPage(SessionHandler):
    def get(self) -> None:
        self.session.incr("count")
        raise tornado.web.HTTPError(404)


def test_an_error_page_that_created_a_session_is_still_private(serve, store_url, prefix):
    """A 404 raised after the first write still sends its session cookie with Cache-Control private and Vary: Cookie."""
    server = serve([("/missing", MissingPage)], redis_session=app_settings(store_url, prefix))
    response = server.browser().get("/missing")
    assert response.status == 404
    assert len(session_cookies(response)) == 1
    assert "private" in (response.header("Cache-Control") or "")
    assert "Cookie" in (response.header("Vary") or "")


class ReadThenMissing(SessionHandler):
    def get(self) -> None:
        self.write(f"count={self.session.count.int}")
        raise tornado.web.HTTPError(404)


def test_an_error_page_that_only_read_the_session_keeps_vary_cookie(serve, store_url, prefix):
    """A 404 raised after a session read still says Vary: Cookie, and sets no cookie and no Cache-Control."""
    server = serve(COUNTER_ROUTES + [("/read-missing", ReadThenMissing)], redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    browser.get("/")
    response = browser.get("/read-missing")
    assert response.status == 404
    assert session_cookies(response) == []
    assert "Cookie" in (response.header("Vary") or "")
    assert response.header("Cache-Control") is None


class LogoutThenFail(SessionHandler):
    def get(self) -> None:
        self.session.destroy()
        raise tornado.web.HTTPError(500)


def test_an_error_page_after_logout_still_expires_the_cookie_privately(serve, store_url, prefix):
    """A 500 raised after destroy() still sends the expired cookie, with Cache-Control private."""
    server = serve(COUNTER_ROUTES + [("/logout-fails", LogoutThenFail)], redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    browser.get("/")
    response = browser.get("/logout-fails")
    assert response.status == 500
    (header,) = session_cookies(response)
    assert parse_set_cookie(header)[1].get("max-age") == "0"
    assert "private" in (response.header("Cache-Control") or "")
    assert browser.cookies == {}


# -- WebSockets -------------------------------------------------------------------------------------


class CountSocket(SessionMixin, tornado.websocket.WebSocketHandler):
    """Greets with the session's count on open; each message counts one more."""

    def open(self) -> None:
        self.write_message(f"count={self.session.count.int}")

    def on_message(self, message: Any) -> None:
        self.write_message(f"count={self.session.incr('count')}")


def test_a_websocket_reads_the_session_of_the_page_that_opened_it(serve, store_url, prefix):
    """SessionMixin on a WebSocketHandler: open() sees the session the HTTP pages created, and messages can update it."""
    server = serve(COUNTER_ROUTES + [("/socket", CountSocket)], redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    assert [browser.get("/").text for _ in range(3)] == ["1", "2", "3"]
    cookie_header = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    socket_url = server.url.replace("http://", "ws://") + "/socket"

    assert talk_over_websocket(socket_url, cookie_header, "one more") == ["count=3", "count=4"]
    assert browser.get("/read").text == "4"
    assert talk_over_websocket(socket_url, None) == ["count=0"]  # no cookie: no session


class CarefulSocket(SessionMixin, tornado.websocket.WebSocketHandler):
    """Like CountSocket, but answers what a failed session call said instead of dying."""

    def open(self) -> None:
        self.write_message(f"count={self.session.count.int}")

    def on_message(self, message: Any) -> None:
        try:
            self.write_message(f"count={self.session.incr('count')}")
        except RedisSessionError as error:
            self.write_message(f"refused: {error}")


def test_a_websocket_with_an_expired_session_reads_nothing_and_cannot_start_one(serve, store_url, store_client, prefix, caplog):
    """A WebSocket on an expired session reads fallbacks; a write there is refused with a clear message and creates no key."""
    server = serve(COUNTER_ROUTES + [("/socket", CarefulSocket)], redis_session=app_settings(store_url, prefix))
    browser = server.browser()
    assert browser.get("/").text == "1"
    store_client.delete(session_key(prefix, session_id_of(browser)))  # as if it had expired
    cookie_header = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    socket_url = server.url.replace("http://", "ws://") + "/socket"
    caplog.set_level(logging.WARNING)

    greeting, reply = talk_over_websocket(socket_url, cookie_header, "one more")

    assert greeting == "count=0"
    assert reply.startswith("refused: cannot start a session here") and "WebSocket" in reply
    assert keys_under(store_client, prefix) == []
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
