"""What a full Redis (``maxmemory`` reached with ``noeviction``) does to sessions, on a real server:
every write answers 503 with Retry-After, from any operation and any position in a request,
memory stays at the limit, and reads of existing sessions (and logouts) keep working."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import flask
import pytest
import redis

from redis_session.errors import SessionUnavailableError
from redis_session.flask_session import setup_session as setup_flask_session
from redis_session.session import Session
from redis_session.store import Store
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler
from tests.redis_servers import RedisServer
from tests.support import COOKIE_SECRET, RecordingCookie, app_settings, make_settings


def fill(client: redis.Redis[bytes]) -> None:
    """Put Redis over its memory limit: maxmemory set below what it uses now (with noeviction,
    nothing is evicted to make room), as after a burst of writes."""
    client.config_set("maxmemory-policy", "noeviction")
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - 64 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("filler", b"x")
    client.close()


@pytest.fixture
def full_server(own_redis_server: RedisServer) -> Iterator[RedisServer]:
    """A private redis-server; the test writes its sessions, then calls ``fill``."""
    yield own_redis_server


def used_and_limit(server: RedisServer) -> tuple[int, int]:
    memory = server.client().info("memory")
    return int(memory["used_memory"]), int(memory["maxmemory"])


WRITES: dict[str, Any] = {
    "set": lambda session: session.set("note", "x" * 100),
    "update": lambda session: session.update(a=1, b=2),
    "incr": lambda session: session.incr("count"),
    "flash": lambda session: session.flash("hello"),
    "regenerate": lambda session: session.regenerate(),
    "bind_user": lambda session: session.bind_user("alice"),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_to_an_existing_session_is_unavailable_and_reads_keep_working(full_server, prefix, write):
    """With memory full, each kind of write raises SessionUnavailableError (a 503) and changes
    nothing; the same session still reads, and destroy() still ends it."""
    settings = make_settings(full_server.url, prefix)
    store = Store.connect(settings)
    try:
        session = Session(store, settings, None, RecordingCookie())
        session.update(count=1, name="alice")
        session_id = session.session_id
        fill(full_server.client())

        again = Session(store, settings, session_id, RecordingCookie())
        assert again.count.int == 1  # the request's first call: a read
        with pytest.raises(SessionUnavailableError, match="maxmemory"):
            WRITES[write](again)
        reader = Session(store, settings, session_id, RecordingCookie())
        assert (reader.count.int, reader.name.str) == (1, "alice")
        reader.destroy()
        assert Session(store, settings, session_id, RecordingCookie()).name.none
    finally:
        store.close()


def test_a_requests_first_write_is_refused_and_memory_stays_at_the_limit(full_server, prefix):
    """Thirty writes of 100 kB, each the first call of a new request on an existing session,
    are all refused: memory does not grow past the limit (before, each first write got through:
    the scripts' EXPIRE ran first, and Redis checked memory only at a script's first growing
    command)."""
    settings = make_settings(full_server.url, prefix)
    store = Store.connect(settings)
    try:
        ids = []
        for _ in range(30):
            session = Session(store, settings, None, RecordingCookie())
            session.n = 1
            ids.append(session.session_id)
        fill(full_server.client())
        refused = 0
        for session_id in ids:
            try:
                Session(store, settings, session_id, RecordingCookie()).blob = b"x" * 100_000
            except SessionUnavailableError:
                refused += 1
        used, limit = used_and_limit(full_server)
        assert refused == 30
        assert all(Session(store, settings, session_id, RecordingCookie()).blob.none for session_id in ids)
        assert used < limit + 1024 * 1024  # 30 blobs of 100 kB would be 3 MB over
    finally:
        store.close()


def test_a_new_session_is_refused_without_leaving_a_key(full_server, prefix):
    """A first visit's write with memory full is a 503 and leaves no session key behind."""
    settings = make_settings(full_server.url, prefix)
    store = Store.connect(settings)
    try:
        fill(full_server.client())
        cookie = RecordingCookie()
        with pytest.raises(SessionUnavailableError):
            Session(store, settings, None, cookie).note = "hello"
        assert cookie.events == []
        assert list(full_server.client().scan_iter(match=f"{prefix}:*")) == []
    finally:
        store.close()


class Counter(SessionHandler):
    def get(self) -> None:
        self.write(str(self.session.count.int))

    def post(self) -> None:
        self.session.name = "alice"  # the first write, then incr: OOM at any position
        self.write(str(self.session.incr("count")))


class AsyncCounter(AsyncSessionHandler):
    async def get(self) -> None:
        self.write(str((await self.session.count).int))

    async def post(self) -> None:
        await self.session.set("name", "alice")
        self.write(str(await self.session.incr("count")))


@pytest.mark.parametrize("handler", [Counter, AsyncCounter], ids=["blocking", "coroutine"])
def test_tornado_answers_503_with_retry_after_for_writes_and_200_for_reads(serve, full_server, prefix, handler):
    """Over HTTP: a write with memory full is 503 with Retry-After (never a 500), a read of the
    same session is 200 with its value, and the app answers writes again once memory is freed."""
    server = serve([("/", handler)], redis_session=app_settings(full_server.url, prefix))
    browser = server.browser()
    assert browser.post("/", b"").text == "1"
    fill(full_server.client())

    refused = [browser.post("/", b"") for _ in range(5)]
    assert [response.status for response in refused] == [503] * 5
    assert all(response.header("Retry-After") for response in refused)
    read = browser.get("/")
    assert (read.status, read.text) == (200, "1")

    full_server.client().config_set("maxmemory", 0)
    assert browser.post("/", b"").text == "2"


def test_flask_answers_503_for_writes_and_200_for_reads(full_server, prefix):
    """Flask: the same 503 with Retry-After for a write, 200 for a read."""
    app = flask.Flask("full")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=full_server.url, SESSION_REDIS_PREFIX=prefix,
                      SESSION_COOKIE_SECURE=False)
    setup_flask_session(app)

    @app.route("/", methods=["GET", "POST"])
    def count() -> str:
        session = flask.request.session  # type: ignore[attr-defined]
        if flask.request.method == "POST":
            return str(session.incr("count"))
        return str(session.count.int)

    client = app.test_client()
    assert client.post("/").text == "1"
    fill(full_server.client())
    refused = client.post("/")
    assert refused.status_code == 503 and refused.headers.get("Retry-After")
    read = client.get("/")
    assert (read.status_code, read.text) == (200, "1")


def test_the_coroutine_store_refuses_writes_the_same_way(full_server, prefix):
    """AsyncSession: incr with memory full raises SessionUnavailableError; reads work."""
    from redis_session.aio import AsyncSession
    from redis_session.async_store import AsyncStore

    settings = make_settings(full_server.url, prefix)

    async def main() -> None:
        store = AsyncStore.connect(settings)
        try:
            session = AsyncSession(store, settings, None, RecordingCookie())
            await session.set("count", 1)
            fill(full_server.client())
            with pytest.raises(SessionUnavailableError):
                await session.incr("count")
            assert (await session.count).int == 1
        finally:
            await store.aclose()

    asyncio.run(main())
