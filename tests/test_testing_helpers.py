"""redis_session.testing and redis_session.pytest_plugin, used as a user's own tests use them:
a small Tornado app (AsyncHTTPTestCase, and pytest-style over HTTP) and a small Flask app with
its test client; isolation between tests (two tests in one pytester run); reading what a request
stored; rotated secrets; the examples and docs/testing.rst that show all of it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.web
from flask import Flask, abort, request
from tornado.testing import AsyncHTTPTestCase

from redis_session import Value
from redis_session.clients import forget_memory_server, memory_server
from redis_session.errors import ConfigurationError
from redis_session.flask_session import session_admin, setup_session
from redis_session.protocol import session_handle
from redis_session.testing import (
    LoginAs,
    SessionCookie,
    isolated_store,
    session_id_of,
    start_session,
    stored,
    use_store,
    user_of,
)
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler, backend_for
from redis_session.tornado_session import setup_session as setup_tornado_session
from tests.web import LiveServer

pytest_plugins = ["pytester", "redis_session.pytest_plugin"]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "helpers-test-secret-" + "h" * 32


# -- a small Tornado app ----------------------------------------------------------------------


class Base(SessionHandler):
    def get_current_user(self) -> str | None:
        return self.session.user_id


class Profile(Base):
    @tornado.web.authenticated
    def get(self) -> None:
        self.write(f"hello {self.current_user}, visit {self.session.incr('visits')}")


class Login(Base):
    def get(self) -> None:
        user = self.get_argument("user")
        self.session.bind_user(user)
        self.session.name = user.title()
        self.redirect("/")


class Logout(Base):
    def post(self) -> None:
        self.session.destroy()


class Cart(Base):
    def post(self) -> None:
        self.write(str(self.session.incr("items")))

    def get(self) -> None:
        self.write(self.session.items.str or "empty")


class AsyncProfile(AsyncSessionHandler):
    async def get(self) -> None:
        user = await self.session.user_id
        if user is None:
            raise tornado.web.HTTPError(401)
        self.write(f"hello {user}, visit {await self.session.incr('visits')}")


HANDLERS = [(r"/", Profile), (r"/login", Login), (r"/logout", Logout), (r"/cart", Cart), (r"/async", AsyncProfile)]


def tornado_app(**settings: Any) -> tornado.web.Application:
    settings.setdefault("cookie_secret", SECRET)
    return tornado.web.Application(HANDLERS, login_url="/login", **settings)


class TornadoAppTest(AsyncHTTPTestCase):
    """AsyncHTTPTestCase as a user writes it: a store of the test's own, sessions started directly."""

    def get_app(self) -> tornado.web.Application:
        store = isolated_store()
        self.addCleanup(store.close)
        self.app = use_store(tornado_app(), store.url)
        return self.app

    def test_logged_in_as_alice_the_protected_page_greets_her(self) -> None:
        """start_session(app, user_id="alice") is a login: @authenticated lets the cookie's request in."""
        cookie = start_session(self.app, user_id="alice")
        response = self.fetch("/", headers=cookie.headers)
        assert (response.code, response.body) == (200, b"hello alice, visit 1")
        assert stored(self.app, cookie) == {"visits": Value(b"1")}
        assert user_of(self.app, cookie) == "alice"

    def test_without_a_cookie_the_protected_page_redirects_to_login(self) -> None:
        """A request without the cookie is anonymous: @authenticated redirects it."""
        response = self.fetch("/", follow_redirects=False)
        assert response.code == 302 and response.headers["Location"].startswith("/login")

    def test_fields_the_test_started_with_are_what_the_handler_reads(self) -> None:
        """start_session(app, **fields) writes fields as a handler would; the handler reads and adds to them."""
        cookie = start_session(self.app, items=41, coupon={"code": "X"})
        assert self.fetch("/cart", method="POST", body=b"", headers=cookie.headers).body == b"42"
        assert stored(self.app, cookie) == {"items": Value(b"42"), "coupon": Value(b'{"code":"X"}')}
        assert user_of(self.app, cookie) is None

    def test_what_a_login_request_stored_is_read_from_its_response(self) -> None:
        """stored()/user_of() of a response find the session its Set-Cookie names."""
        response = self.fetch("/login?user=bob", follow_redirects=False)
        assert response.code == 302
        assert user_of(self.app, response) == "bob"
        assert stored(self.app, response) == {"name": Value(b"Bob")}
        assert session_id_of(self.app, response) is not None

    def test_a_login_on_an_existing_session_moves_it_as_a_real_one_does(self) -> None:
        """Logging in over a started session regenerates it: the old cookie names nothing, the new one the user."""
        cookie = start_session(self.app, items=3)
        response = self.fetch("/login?user=carol", headers=cookie.headers, follow_redirects=False)
        assert stored(self.app, cookie) == {}
        assert stored(self.app, response) == {"items": Value(b"3"), "name": Value(b"Carol")}

    def test_logging_out_ends_the_session_the_cookie_named(self) -> None:
        """After a logout the response expires the cookie (no session) and the old cookie names nothing."""
        cookie = start_session(self.app, user_id="alice", items=1)
        response = self.fetch("/logout", method="POST", body=b"", headers=cookie.headers)
        assert response.code == 200
        assert session_id_of(self.app, response) is None
        assert stored(self.app, response) == {} and user_of(self.app, response) is None
        assert stored(self.app, cookie) == {} and user_of(self.app, cookie) is None
        assert self.fetch("/", headers=cookie.headers, follow_redirects=False).code == 302

    def test_a_response_that_keeps_the_session_says_to_pass_the_cookie(self) -> None:
        """A response without a session Set-Cookie cannot say which session it used: LookupError says what to pass."""
        cookie = start_session(self.app, user_id="alice")
        response = self.fetch("/cart", method="POST", body=b"", headers=cookie.headers)
        with pytest.raises(LookupError, match="pass the cookie the request sent"):
            stored(self.app, response)
        assert stored(self.app, cookie)["items"].int == 1

    def test_a_cookie_value_is_read_as_the_app_reads_it(self) -> None:
        """A cookie value (quoted as Tornado sends it, or not) names its session; a tampered one is a ValueError."""
        cookie = start_session(self.app, user_id="alice")
        assert session_id_of(self.app, cookie.value) == cookie.session_id
        assert session_id_of(self.app, f'"{cookie.value}"') == cookie.session_id
        assert stored(self.app, "") == {}
        with pytest.raises(ValueError, match="not one the application accepts"):
            stored(self.app, cookie.value[:-1] + ("0" if cookie.value[-1] != "0" else "1"))

    def test_coroutine_handlers_see_the_started_session(self) -> None:
        """A session started by the helper (blocking store) is the one AsyncSessionHandler reads (asyncio store)."""
        cookie = start_session(self.app, user_id="dave")
        assert self.fetch("/async", headers=cookie.headers).body == b"hello dave, visit 1"
        assert stored(self.app, cookie)["visits"].int == 1


class TornadoKeyRotationTest(AsyncHTTPTestCase):
    """cookie_secret as a dict with key_version: cookies are signed with the current key."""

    def get_app(self) -> tornado.web.Application:
        store = isolated_store()
        self.addCleanup(store.close)
        self.store_url = store.url
        self.app = use_store(tornado_app(cookie_secret={1: "old-" + SECRET, 2: "new-" + SECRET}, key_version=2), store.url)
        return self.app

    def test_the_cookie_is_signed_with_the_current_key_and_accepted(self) -> None:
        """The helper's cookie carries key version 2 and the app accepts it."""
        cookie = start_session(self.app, user_id="alice")
        assert cookie.value.startswith("2|1:2|")
        assert self.fetch("/", headers=cookie.headers).body == b"hello alice, visit 1"

    def test_a_cookie_of_the_previous_key_is_read_after_rotation(self) -> None:
        """A cookie signed before the rotation (key 1) is read by the helpers as by the app, while key 1 is listed."""
        before = use_store(tornado_app(cookie_secret={1: "old-" + SECRET}, key_version=1), self.store_url)
        cookie = start_session(before, user_id="alice")
        assert cookie.value.startswith("2|1:1|")
        assert self.fetch("/", headers=cookie.headers).body == b"hello alice, visit 1"
        assert user_of(self.app, cookie.value) == "alice"
        assert stored(self.app, cookie.header.split("=", 1)[1])["visits"].int == 1
        retired = tornado_app(cookie_secret={2: "new-" + SECRET}, key_version=2)
        with pytest.raises(ValueError):
            stored(use_store(retired, self.store_url), cookie.value)


# -- the same app, pytest-style, with the plugin's fixtures -----------------------------------


@pytest.fixture
def live_tornado(session_store_url: str) -> Any:
    server = LiveServer(use_store(tornado_app(), session_store_url)).start()
    yield server
    server.stop()


def test_pytest_style_tornado_with_the_fixtures(live_tornado: LiveServer, login_as: LoginAs) -> None:
    """login_as(app, "alice") then tornado's HTTPClient with cookie.headers: the protected page greets alice."""
    app = live_tornado.application
    cookie = login_as(app, "alice", plan="pro")
    client = tornado.httpclient.HTTPClient()
    try:
        response = client.fetch(live_tornado.url + "/", headers=cookie.headers)
        anonymous = client.fetch(live_tornado.url + "/", follow_redirects=False, raise_error=False)
    finally:
        client.close()
    assert response.body == b"hello alice, visit 1"
    assert anonymous.code == 302
    assert stored(app, cookie) == {"plan": Value(b"pro"), "visits": Value(b"1")}


def test_login_as_counts_against_max_per_user_like_a_login(session_store_url: str, login_as: LoginAs) -> None:
    """With max-per-user 1 a second login_as ends the first session, as a second real login would."""
    app = tornado_app(redis_session={"max-per-user": 1})
    use_store(app, session_store_url)
    first, second = login_as(app, "alice"), login_as(app, "alice")
    assert user_of(app, first) is None and user_of(app, second) == "alice"
    assert [info.handle for info in backend_for(app).admin().sessions_for_user("alice")] == [session_handle(second.session_id)]


# -- use_store ----------------------------------------------------------------------------------


def test_use_store_moves_a_tornado_app_that_already_served(session_store_url: str) -> None:
    """After setup_session (or a first request), use_store resolves the settings again and closes the old store."""
    app = tornado_app(redis_session={"redis": "memory://elsewhere-" + uuid.uuid4().hex, "expire": 60})
    old = setup_tornado_session(app)
    assert old.store is not None
    assert use_store(app, session_store_url, prefix="mine") is app
    backend = backend_for(app)
    assert backend is not old and old._store is None  # closed
    assert (backend.settings.redis_url, backend.settings.prefix, backend.settings.expire) == (session_store_url, "mine", 60)
    cookie = start_session(app, user_id="alice")
    assert memory_server(session_store_url) is not memory_server(old.settings.redis_url)
    assert stored(app, cookie) == {} and user_of(app, cookie) == "alice"


def test_use_store_on_a_fresh_tornado_app_only_sets_the_setting(session_store_url: str) -> None:
    """Before any request, use_store only writes the redis_session setting (any spelling of the key is replaced)."""
    app = tornado_app(redis_session={"REDIS": "redis://nowhere:1", "redis_prefix": "p", "expire": 60})
    use_store(app, session_store_url)
    assert app.settings["redis_session"] == {"redis_prefix": "p", "expire": 60, "redis": session_store_url}
    assert backend_for(app).settings.redis_url == session_store_url


def test_use_store_refuses_a_bad_url_and_leaves_the_app_as_it_was() -> None:
    """A URL the settings refuse raises ConfigurationError; the app keeps its setting and its backend."""
    app = tornado_app(redis_session={"redis": "memory://x"})
    backend = setup_tornado_session(app)
    with pytest.raises(ConfigurationError, match="redis"):
        use_store(app, "http://not-a-store")
    assert app.settings["redis_session"] == {"redis": "memory://x"} and backend_for(app) is backend
    with pytest.raises(TypeError, match="Application or a flask.Flask"):
        use_store(object(), "memory://")


# -- a small Flask app -------------------------------------------------------------------------


def flask_app(**config: Any) -> Flask:
    app = Flask(f"helpers-{uuid.uuid4().hex[:6]}")
    app.config.update({"SECRET_KEY": SECRET, "SESSION_REDIS": "redis://localhost:6379", **config})
    setup_session(app)

    @app.get("/profile")
    def profile() -> str:
        user = request.session.user_id
        if user is None:
            abort(401)
        return f"hello {user}, visit {request.session.incr('visits')}"

    @app.get("/login/<user>")
    def login(user: str) -> str:
        request.session.bind_user(user)
        request.session.name = user.title()
        return "welcome"

    @app.post("/logout")
    def logout() -> str:
        request.session.destroy()
        return "bye"

    @app.get("/sessions")
    def sessions() -> str:
        return str(len(session_admin().sessions_for_user(request.session.user_id)))

    return app


@pytest.fixture
def app(session_store_url: str) -> Flask:
    return use_store(flask_app(), session_store_url)


def test_flask_logged_in_as_alice_sees_her_profile(app: Flask, login_as: LoginAs) -> None:
    """login_as(app, "alice").set_on(client): the view reading request.session.user_id sees alice."""
    client = app.test_client()
    assert client.get("/profile").status_code == 401
    login_as(app, "alice").set_on(client)
    assert client.get("/profile").text == "hello alice, visit 1"
    assert client.get("/sessions").text == "1"
    assert stored(app, client) == {"visits": Value(b"1")} and user_of(app, client) == "alice"


def test_flask_cookie_header_works_without_the_jar(app: Flask) -> None:
    """cookie.headers on a client without a cookie jar (one with a jar sends the jar's cookies instead)."""
    cookie = start_session(app, user_id="alice")
    assert app.test_client(use_cookies=False).get("/profile", headers=cookie.headers).text == "hello alice, visit 1"


def test_flask_what_a_request_stored(app: Flask) -> None:
    """stored()/user_of() of a Flask test response and of the client's jar; a logout leaves nothing."""
    client = app.test_client()
    response = client.get("/login/bob")
    assert user_of(app, response) == "bob" and stored(app, response) == {"name": Value(b"Bob")}
    assert session_id_of(app, client) == session_id_of(app, response)
    client.get("/profile")
    with pytest.raises(LookupError):
        stored(app, client.get("/sessions"))
    assert stored(app, client) == {"name": Value(b"Bob"), "visits": Value(b"1")}
    logout = client.post("/logout")
    assert session_id_of(app, logout) is None and session_id_of(app, client) is None
    assert stored(app, client) == {} and user_of(app, client) is None


def test_flask_use_store_before_setup_session(session_store_url: str) -> None:
    """use_store before setup_session sets SESSION_REDIS (and the prefix), which setup_session then reads."""
    app = Flask("before")
    app.config.update(SECRET_KEY=SECRET, SESSION_REDIS="redis://localhost:6379")
    use_store(app, session_store_url, prefix="early")
    assert (app.config["SESSION_REDIS"], app.config["SESSION_REDIS_PREFIX"]) == (session_store_url, "early")
    setup_session(app)

    @app.get("/")
    def view() -> str:
        return str(request.session.user_id)

    client = app.test_client()
    start_session(app, user_id="alice").set_on(client)
    assert client.get("/").text == "alice"


def test_flask_use_store_after_requests_moves_the_sessions(session_store_url: str) -> None:
    """A module-level app that has served (and set up) moves to the new store; its secrets and other settings stay."""
    app = flask_app(SESSION_EXPIRE=60, SESSION_COOKIE_ID="sid")
    first = isolated_store()
    use_store(app, first.url)
    cookie = start_session(app, user_id="alice")
    old_backend = app.extensions["redis_session"]
    use_store(app, session_store_url, prefix="moved")
    backend = app.extensions["redis_session"]
    assert backend is not old_backend and type(backend) is type(old_backend)
    assert (backend.settings.redis_url, backend.settings.prefix, backend.settings.expire, backend.settings.cookie_name) == (
        session_store_url, "moved", 60, "sid")
    assert backend.serializer is old_backend.serializer and old_backend._store is None
    client = app.test_client()
    cookie.set_on(client)
    assert client.get("/profile").status_code == 401  # that session is in the other store
    assert user_of(app, cookie) is None
    first.close()
    moved = start_session(app, user_id="alice")
    assert moved.name == "sid"
    moved.set_on(client)
    assert client.get("/profile").text == "hello alice, visit 1"


def test_flask_rotated_secret_keys(session_store_url: str) -> None:
    """Signed with SECRET_KEY; a cookie of the key now in SECRET_KEY_FALLBACKS is still read by the app and the helpers."""
    before = use_store(flask_app(), session_store_url)
    old_cookie = start_session(before, user_id="alice")
    after = use_store(flask_app(SECRET_KEY="rotated-" + SECRET, SECRET_KEY_FALLBACKS=[SECRET]), session_store_url)
    new_cookie = start_session(after, user_id="bob")
    assert user_of(after, old_cookie.value) == "alice" and user_of(after, new_cookie.value) == "bob"
    with pytest.raises(ValueError):
        user_of(before, new_cookie.value)  # the old app never knew the new key
    client = after.test_client()
    old_cookie.set_on(client)
    assert client.get("/profile").text == "hello alice, visit 1"


def test_flask_set_on_honours_server_name_domain_and_path(session_store_url: str) -> None:
    """set_on puts the cookie where the client sends it: SERVER_NAME's host, the cookie's Domain and Path."""
    app = use_store(flask_app(SERVER_NAME="shop.example.com:8080", SESSION_COOKIE_PATH="/"), session_store_url)
    client = app.test_client()
    start_session(app, user_id="alice").set_on(client)
    assert client.get("/profile").text == "hello alice, visit 1"
    assert user_of(app, client) == "alice"

    app = use_store(flask_app(SERVER_NAME="shop.example.com", SESSION_COOKIE_DOMAIN=".example.com"), session_store_url)
    client = app.test_client()
    cookie = start_session(app, user_id="bob")
    assert (cookie.domain, cookie.path) == (".example.com", "/")
    cookie.set_on(client)
    assert client.get("/profile").text == "hello bob, visit 1"
    assert user_of(app, client) == "bob"


def test_start_session_refusals(app: Flask, session_store_url: str) -> None:
    """No user and no field, an app not set up, or not an app at all: each says what is wrong."""
    with pytest.raises(ValueError, match="needs a user_id or a field"):
        start_session(app)
    with pytest.raises(ValueError, match="needs a user_id or a field"):
        start_session(app, nothing=None)
    bare = Flask("bare")
    bare.config.update(SECRET_KEY=SECRET, SESSION_REDIS=session_store_url)
    with pytest.raises(ConfigurationError, match="setup_session"):
        start_session(bare, user_id="alice")
    with pytest.raises(TypeError):
        stored(object(), "x")
    with pytest.raises(TypeError, match="a Flask test client"):
        stored(app, 42)


def test_the_session_cookie_value_object() -> None:
    """SessionCookie's header and headers, and a repr that does not print the whole secret id."""
    cookie = SessionCookie("sid", "v|1=", "abcdefghijklmnopqrstuvwxyz")
    assert cookie.header == "sid=v|1=" and cookie.headers == {"Cookie": "sid=v|1="}
    assert "abcdefghijklmnop" not in repr(cookie)


# -- isolation ---------------------------------------------------------------------------------


def test_an_isolated_store_is_its_own_and_is_forgotten() -> None:
    """Two isolated stores never share data; closing one forgets its data; names are checked."""
    with isolated_store() as first, isolated_store("second") as second:
        assert first != second and second.startswith("memory://second-")
        server = memory_server(first)  # what every client of the URL talks to
        assert memory_server(first) is server and memory_server(second) is not server
    assert memory_server(first) is not server  # a new, empty one
    forget_memory_server(first)
    with pytest.raises(ValueError):
        isolated_store("no/slashes")


INNER_TESTS = """
import pytest
import tornado.web
from flask import Flask
from redis_session.flask_session import session_admin, setup_session
from redis_session.testing import stored, use_store
from redis_session.tornado_session import backend_for

pytest_plugins = ["redis_session.pytest_plugin"]
SHARED = "memory://shared-{unique}"
cookies = []


def tornado_app():
    return tornado.web.Application([], cookie_secret="s" * 32)


def flask_app():
    app = Flask("inner")
    app.config.update(SECRET_KEY="s" * 32)
    setup_session(app)
    return app


def sessions_of_alice(app):
    admin = backend_for(app).admin() if isinstance(app, tornado.web.Application) else session_admin(app)
    return admin.sessions_for_user("alice")


@pytest.fixture(params=[tornado_app, flask_app])
def app(request, {store_fixture}):
    return use_store(request.param(), {store_fixture}, prefix=request.param.__name__)


def test_1_alice_logs_in(app, login_as):
    cookies.append(login_as(app, "alice", cart=3))
    assert len(sessions_of_alice(app)) == 1


def test_2_the_next_test_starts_empty(app):
    for cookie in cookies:
        assert stored(app, cookie) == {{}}
    assert sessions_of_alice(app) == []
"""


def run_inner(pytester: pytest.Pytester, store_fixture: str) -> pytest.RunResult:
    """A user's test module (a Tornado app and a Flask app, two tests each) run by pytest in this process."""
    shared = "" if store_fixture == "session_store_url" else (
        "\n\n@pytest.fixture\ndef shared_store_url():\n    return SHARED\n")
    pytester.makepyfile(test_inner=INNER_TESTS.format(unique=uuid.uuid4().hex, store_fixture=store_fixture) + shared)
    return pytester.runpytest("-p", "no:cacheprovider", "-q")


def test_a_session_started_in_one_test_is_absent_in_the_next(pytester: pytest.Pytester) -> None:
    """With session_store_url, the second test sees neither the first test's session nor its user index."""
    run_inner(pytester, "session_store_url").assert_outcomes(passed=4)


def test_without_isolation_the_same_tests_leak(pytester: pytest.Pytester) -> None:
    """The control: the same two tests on one shared memory:// store fail, so the test above means something."""
    result = run_inner(pytester, "shared_store_url")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*test_2_the_next_test_starts_empty*"])


def test_the_plugin_is_enabled_by_name_only(pytester: pytest.Pytester) -> None:
    """Without -p redis_session.pytest_plugin (or pytest_plugins) its fixtures do not exist; with -p they do."""
    pytester.makepyfile(test_fixture="def test_it(session_store_url, login_as):\n    assert session_store_url.startswith('memory://test_it-')\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(errors=1)
    pytester.runpytest("-p", "no:cacheprovider", "-p", "redis_session.pytest_plugin").assert_outcomes(passed=1)
    setup_cfg = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert "pytest11" not in setup_cfg  # no entry point registers it for everyone


def test_importing_the_helpers_imports_no_framework() -> None:
    """redis_session.testing and the plugin import neither Flask nor the Tornado glue (its flags)."""
    code = ("import sys, redis_session.testing, redis_session.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m == 'flask' or m == 'redis_session.tornado_session' or m.startswith('tornado.web')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ.copy())
    assert output.stdout.strip() == "[]"


# -- the examples and the docs ------------------------------------------------------------------

EXAMPLE_TESTS = [ROOT / "examples" / "test_tornado_login.py", ROOT / "examples" / "test_flask_app.py"]


def test_the_example_tests_pass() -> None:
    """examples/test_*.py, which docs/testing.rst shows, pass when a user runs them with pytest."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, EXAMPLE_TESTS)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b9 passed\b", result.stdout), result.stdout
