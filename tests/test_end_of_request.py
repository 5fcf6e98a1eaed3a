"""What happens around the end of a request: a session change that needs a cookie after the
response has finished fails loudly and touches nothing; a change that needs none still works;
an async session operation that was never awaited fails the request, naming the call; and
``user_id`` is spelled the same in both I/O models."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import flask
import pytest

from redis_session.errors import SessionStateError
from redis_session.flask_session import setup_session
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler
from tests.support import COOKIE_SECRET, app_settings, memory_client

#: What each handler below caught, by path: the test reads it after the request.
CAUGHT: dict[str, Any] = {}


def caught(name: str) -> Any:
    """What handler ``name`` caught. The response of a handler that finished early reaches the
    browser before the code after ``finish()`` has run, so this waits a moment for it."""
    deadline = time.monotonic() + 5
    while name not in CAUGHT:
        assert time.monotonic() < deadline, f"{name} caught nothing"
        time.sleep(0.01)
    return CAUGHT[name]


class Login(SessionHandler):
    """Starts a session with a cart, the way a visitor arrives at a login form."""

    def get(self) -> None:
        self.session.cart = "3 items"
        self.write("ok")


class LateBind(SessionHandler):
    """Redirects first, then binds the user: the classic slip."""

    def get(self) -> None:
        self.redirect("/home")
        try:
            self.session.bind_user("bob")
        except SessionStateError as error:
            CAUGHT["late-bind"] = error


class LateDestroy(SessionHandler):
    def get(self) -> None:
        self.finish("bye")
        try:
            self.session.destroy()
        except SessionStateError as error:
            CAUGHT["late-destroy"] = error


class LateWrite(SessionHandler):
    """Writes a field of the session the request holds after finishing: no cookie change needed."""

    def get(self) -> None:
        self.finish("done")
        self.session.seen = "after finish"


class WriteInOnFinish(SessionHandler):
    """Starts a session in on_finish, when the response has gone."""

    def get(self) -> None:
        self.write("page")

    def on_finish(self) -> None:
        try:
            self.session.visits = 1
        except SessionStateError as error:
            CAUGHT["on-finish"] = error


class AsyncLateBind(AsyncSessionHandler):
    async def get(self) -> None:
        self.redirect("/home")
        try:
            await self.session.bind_user("bob")
        except SessionStateError as error:
            CAUGHT["async-late-bind"] = error


class ForgottenAwait(AsyncSessionHandler):
    async def get(self) -> None:
        self.session.incr("count")  # the slip: no await
        self.write("counted")


class ForgottenUserAwait(AsyncSessionHandler):
    async def get(self) -> None:
        if self.session.user_id:  # the slip: a coroutine is always true
            self.write("signed in")


class Counter(AsyncSessionHandler):
    async def get(self) -> None:
        self.write(str(await self.session.incr("count")))


class Scheduled(AsyncSessionHandler):
    """Operations handed to asyncio (gather, a task) are awaited by asyncio, not forgotten."""

    async def get(self) -> None:
        await asyncio.gather(self.session.set("a", 1), self.session.set("b", 2))
        task = asyncio.ensure_future(self.session.incr("count"))
        self.write("scheduled")
        await task


class AsyncWhoAmI(AsyncSessionHandler):
    async def get(self) -> None:
        if self.get_query_argument("bind", ""):
            await self.session.bind_user(self.get_query_argument("bind"))
        self.write(str(await self.session.user_id))


class SyncWhoAmI(SessionHandler):
    def get(self) -> None:
        self.write(str(self.session.user_id))


HANDLERS = [
    ("/login", Login), ("/late-bind", LateBind), ("/late-destroy", LateDestroy), ("/late-write", LateWrite),
    ("/on-finish", WriteInOnFinish), ("/async-late-bind", AsyncLateBind), ("/forgotten", ForgottenAwait),
    ("/forgotten-user", ForgottenUserAwait), ("/count", Counter), ("/scheduled", Scheduled),
    ("/async-who", AsyncWhoAmI), ("/sync-who", SyncWhoAmI),
]


@pytest.fixture
def server(serve: Any, store_url: str, prefix: str) -> Any:
    CAUGHT.clear()
    return serve(HANDLERS, redis_session=app_settings(store_url, prefix))


@pytest.fixture
def store_client(store_url: str, request: pytest.FixtureRequest) -> Any:
    """A raw client on the test's store, to see what the requests left there."""
    if store_url.startswith("memory://"):
        client = memory_client(store_url)
    else:
        client = request.getfixturevalue("redis_server").client()
    yield client
    client.close()


@pytest.fixture
def keys(store_client: Any, prefix: str) -> Any:
    """``keys()``: the session keys under the test's prefix, now."""
    return lambda: sorted(store_client.scan_iter(match=f"{prefix}:sessions:*"))


@pytest.mark.parametrize("path", ["/late-bind", "/async-late-bind"])
def test_binding_a_user_after_redirect_raises_and_keeps_the_session(server, keys, path):
    """``self.redirect(...)`` then ``bind_user()`` raises SessionStateError naming the call before
    any Redis command: the visitor keeps their session (no key deleted, none created), the
    response keeps its cookie, and the redirect still goes out."""
    browser = server.browser()
    browser.get("/login")
    before, cookie = keys(), dict(browser.cookies)
    response = browser.get(path)
    assert response.status == 302 and response.set_cookies == []
    error = caught(path.strip("/"))
    assert "cannot bind a user after the response has finished" in str(error)
    assert "before finish(), redirect() or render()" in str(error)
    assert keys() == before and browser.cookies == cookie
    assert browser.get("/sync-who").text == "None"  # still the same (anonymous) session


def test_destroying_after_finish_raises_and_leaves_the_session(server, keys):
    """``destroy()`` after ``finish()`` raises SessionStateError and deletes nothing: a logout whose
    cookie could not be expired must not half happen."""
    browser = server.browser()
    browser.get("/login")
    before = keys()
    assert browser.get("/late-destroy").text == "bye"
    assert "cannot destroy the session after the response has finished" in str(caught("late-destroy"))
    assert keys() == before


def test_a_write_that_needs_no_cookie_still_works_after_finish(server, store_client, keys):
    """Writing a field of the session the request already holds needs no cookie, so it works
    after ``finish()``."""
    browser = server.browser()
    browser.get("/login")
    assert browser.get("/late-write").text == "done"
    (key,) = keys()
    deadline = time.monotonic() + 5
    while store_client.hget(key, "seen") != b"after finish":  # written after the response went out
        assert time.monotonic() < deadline, "the write after finish() never landed"
        time.sleep(0.01)


def test_starting_a_session_in_on_finish_raises_and_creates_no_key(server, keys):
    """A first write in ``on_finish()`` (no session yet) raises SessionStateError and leaves no
    orphan key behind."""
    assert server.browser().get("/on-finish").text == "page"
    assert "cannot start a session after the response has finished" in str(caught("on-finish"))
    assert keys() == []


@pytest.mark.parametrize(("path", "call"), [
    ("/forgotten", "self.session.incr(name='count', amount=1) was never awaited"),
    ("/forgotten-user", "self.session.user_id() was never awaited"),
])
def test_an_operation_never_awaited_fails_the_request_naming_the_call(server, keys, session_log, path, call):
    """A forgotten ``await`` answers 500 (not a page that claims the operation happened), logs an
    error naming the call, and the operation never ran."""
    browser = server.browser()
    assert browser.get("/count").text == "1"
    response = browser.get(path)
    assert response.status == 500
    errors = [record for record in session_log.records if record.levelno >= logging.ERROR]
    assert any(call in record.getMessage() or call in str(record.exc_info and record.exc_info[1]) for record in errors)
    assert browser.get("/count").text == "2"  # the forgotten incr did not count


def test_operations_handed_to_asyncio_are_not_reported(server):
    """Coroutines passed to ``asyncio.gather`` or ``ensure_future`` are asyncio's to await: the
    request succeeds and every operation ran."""
    browser = server.browser()
    assert browser.get("/scheduled").text == "scheduled"
    assert browser.get("/count").text == "2"


def test_user_id_is_spelled_the_same_blocking_and_awaited(server):
    """``self.session.user_id`` in a blocking handler and ``await self.session.user_id`` in a
    coroutine handler read the same bound user."""
    browser = server.browser()
    assert browser.get("/async-who").text == "None"
    assert browser.get("/async-who?bind=alice").text == "alice"
    assert browser.get("/sync-who").text == "alice"
    assert browser.get("/async-who").text == "alice"


def flask_app(store_url: str, prefix: str) -> flask.Flask:
    app = flask.Flask("end-of-request")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=store_url, SESSION_REDIS_PREFIX=prefix,
                      SESSION_COOKIE_SECURE=False)

    @app.after_request
    def runs_after_the_library(response: flask.Response) -> flask.Response:
        # registered before setup_session, so Flask runs it after the library's own hook
        if flask.request.path == "/late":
            try:
                flask.request.session.bind_user("bob")  # type: ignore[attr-defined]
            except SessionStateError as error:
                CAUGHT["flask"] = error
        return response

    setup_session(app)

    @app.route("/login")
    def login() -> str:
        flask.request.session.cart = "3 items"  # type: ignore[attr-defined]
        return "ok"

    @app.route("/late")
    def late() -> str:
        flask.request.session.cart.str  # type: ignore[attr-defined]  # noqa: B018 - the session is used
        return "page"

    return app


def test_flask_refuses_a_cookie_change_after_the_response_was_built(store_url, prefix, keys):
    """On Flask, code that runs after the library has put the cookie on the response (an
    after_request registered before setup_session) gets SessionStateError for ``bind_user()``,
    and nothing changes in Redis."""
    CAUGHT.clear()
    client = flask_app(store_url, prefix).test_client()
    client.get("/login")
    before = keys()
    response = client.get("/late")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert "cannot bind a user after the response was built" in str(caught("flask"))
    assert keys() == before


def test_a_session_kept_past_its_request_refuses_to_start(serve, store_url, prefix, keys):
    """A session object kept after its request (stored by the app, used later) raises
    SessionStateError on a write that needs a cookie, and creates no key."""
    kept: list[Any] = []
    finished = threading.Event()

    class Keeper(SessionHandler):
        def get(self) -> None:
            kept.append(self.session)
            self.write("ok")

        def on_finish(self) -> None:
            finished.set()  # the response reaches the browser a moment before the handler is done

    server = serve([("/", Keeper)], redis_session=app_settings(store_url, prefix))
    server.browser().get("/")
    assert finished.wait(5)
    with pytest.raises(SessionStateError, match="cannot start a session after the response has finished"):
        kept[0].note = "too late"
    assert keys() == []
