"""Coroutine handlers: the awaitable session never blocks the IOLoop, refuses the blocking idioms,
and shares data with the blocking one. (The Session API itself runs for async handlers in the
shared behaviour suite, their 503 pages in test_tornado.py.)"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redis_session.protocol import session_key
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler
from tests.conftest import RecordingCookie, app_settings
from tests.redis_servers import RedisServer, free_port
from tests.web import Browser

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class AsyncCounter(AsyncSessionHandler):
    async def get(self) -> None:
        self.write(str(await self.session.incr("count")))


class SyncReader(SessionHandler):
    def get(self) -> None:
        self.write(self.session.count.str or "nothing")


class SyncWriter(SessionHandler):
    def get(self) -> None:
        self.session.note = "from sync"
        self.write("ok")


class AsyncReader(AsyncSessionHandler):
    async def get(self) -> None:
        self.write((await self.session.note).str or "nothing")


class Assigner(AsyncSessionHandler):
    """``/assign?name=...``: ``self.session.<name> = 1``, the blocking idiom, on a session that exists."""

    async def get(self) -> None:
        name = self.get_argument("name")
        await self.session.set("other", 1)
        try:
            setattr(self.session, name, 1)
        except TypeError as error:
            self.write({"error": type(error).__name__, "message": str(error), "written": await self.session.contains(name)})


class Misuser(AsyncSessionHandler):
    """Uses the blocking protocols (in, len, iteration, del) that cannot await."""

    async def get(self) -> None:
        await self.session.set("note", "kept")
        messages = []
        for attempt in (lambda: "note" in self.session, lambda: len(self.session),
                        lambda: list(self.session), lambda: self.session.__delitem__("note")):
            try:
                attempt()
            except TypeError as error:
                messages.append(str(error))
        names = [name async for name in self.session]
        self.write({"messages": messages, "truthy": bool(self.session), "names": names,
                    "note": (await self.session.note).str})


class Plain(AsyncSessionHandler):
    def get(self) -> None:
        self.write("pong")


def handlers():
    return [("/incr", AsyncCounter), ("/sync-read", SyncReader), ("/sync-write", SyncWriter),
            ("/async-read", AsyncReader), ("/assign", Assigner), ("/ping", Plain),
            ("/misuse", Misuser)]


def test_sync_and_async_handlers_share_sessions(serve, store_url, prefix):
    """A session written by a sync handler is read by an async one in the same app, and back."""
    browser = serve(handlers(), redis_session=app_settings(store_url, prefix)).browser()
    assert browser.get("/incr").text == "1"
    assert browser.get("/sync-read").text == "1"
    assert browser.get("/sync-write").text == "ok"
    assert browser.get("/async-read").text == "from sync"


@pytest.mark.parametrize("name", ["count", "load", "get", "incr", "session_id"])
def test_attribute_assignment_says_to_await_set(serve, store_url, prefix, name):
    """``self.session.count = 1`` (or a method name) in an async handler raises SessionTypeError saying to await set(), writing nothing."""
    browser = serve(handlers(), redis_session=app_settings(store_url, prefix)).browser()
    answer = json.loads(browser.get(f"/assign?name={name}").text)
    assert answer["error"] == "SessionTypeError"
    assert f"await self.session.set({name!r}, value)" in answer["message"]
    assert answer["written"] is False


def test_blocking_protocols_raise_a_type_error_that_says_what_to_await(serve, store_url, prefix):
    """On an async session 'in', len(), iteration and del raise a TypeError naming what to await; bool() and 'async for' work."""
    browser = serve(handlers(), redis_session=app_settings(store_url, prefix)).browser()
    answer = json.loads(browser.get("/misuse").text)
    assert len(answer["messages"]) == 4
    assert "await self.session.contains('note')" in answer["messages"][0]
    assert "await self.session.length()" in answer["messages"][1]
    assert "async for name in self.session" in answer["messages"][2]
    assert "await self.session.delete('note')" in answer["messages"][3]
    assert answer["truthy"] is True
    assert answer["names"] == ["note"]
    assert answer["note"] == "kept"


def test_a_stalled_redis_does_not_block_other_requests(serve, own_redis_server: RedisServer, prefix):
    """With Redis frozen, a session-free request answers within 100 ms while a session request waits for its 503; then all recover."""
    server = serve(handlers(), redis_session=app_settings(own_redis_server.url, prefix, **{"redis-timeout": 2.0}))
    browser = server.browser()
    assert browser.get("/incr").text == "1"
    own_redis_server.pause()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(browser.get, "/incr")
            time.sleep(0.2)  # the session request is now parked on the frozen Redis
            assert not waiting.done()
            started = time.monotonic()
            assert Browser(server.url).get("/ping").text == "pong"
            assert time.monotonic() - started < 0.1
            assert waiting.result(timeout=10).status == 503
    finally:
        own_redis_server.resume()
    # The frozen server still held the timed-out incr and ran it on SIGCONT: applied once (the
    # client never resends a non-idempotent call), so the next count is 3, never 4.
    assert browser.get("/incr").text == "3"


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_the_async_example_counts(store, redis_server, prefix):
    """examples/tornado_async_counter.py counts per browser on memory:// and on a real Redis."""
    url = "memory://" if store == "memory" else redis_server.url
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "tornado_async_counter.py"), f"--port={port}", f"--session-redis={url}",
         f"--session-redis-prefix={prefix}", "--session-cookie-secure=false", "--logging=none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        browser = Browser(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 15
        while True:
            try:
                first = browser.get("/")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert "count:0" in first.text and "atomically:1" in first.text
        assert "count:1" in browser.get("/").text
    finally:
        process.terminate()
        process.wait(10)


# -- the asyncio store registry and one session used by several coroutines at once ---------------


def test_each_event_loop_gets_one_store_and_closed_loops_are_let_go(prefix):
    """Within one event loop an application's sessions share one AsyncStore; a new loop gets its own, and closed loops' are dropped."""
    from redis_session.backend import SessionBackend
    from redis_session.settings import SessionSettings

    backend = SessionBackend(SessionSettings(redis_url=f"memory://{prefix}", prefix=prefix))

    async def stores_of_one_loop():
        return backend.async_store, backend.async_store

    seen = []
    for _ in range(5):
        first, again = asyncio.run(stores_of_one_loop())
        assert first is again
        seen.append(first)
    assert len({id(store) for store in seen}) == 5
    assert len(backend._async_stores) == 1  # only the last loop's store is left


def test_aclose_closes_the_running_loops_stores(redis_server, prefix):
    """await backend.aclose() closes the loop's connection pool; a later session opens a new one and works."""
    from redis_session.aio import AsyncSession
    from redis_session.backend import SessionBackend
    from redis_session.settings import SessionSettings

    settings = SessionSettings(redis_url=redis_server.url, prefix=prefix)
    backend = SessionBackend(settings)

    async def scenario():
        session = AsyncSession(backend.async_store, settings, None, RecordingCookie())
        await session.set("note", "kept")
        first = backend.async_store
        await backend.aclose()
        assert backend.async_store is not first
        again = AsyncSession(backend.async_store, settings, session.session_id, RecordingCookie())
        value = (await again.note).str
        await backend.aclose()
        return value

    assert asyncio.run(scenario()) == "kept"


class JitteryStore:
    """An AsyncStore whose every call first yields to the loop for a random moment, so that
    coroutines sharing one session really interleave."""

    def __init__(self, store):
        self.store, self.name = store, store.name

    async def execute(self, call):
        await asyncio.sleep(random.random() / 1000)
        return await self.store.execute(call)


def test_concurrent_writes_through_one_async_session_make_one_session(redis_server, prefix):
    """asyncio.gather of 20 set() calls on one new async session creates one session holding all 20 fields and sends one cookie."""
    from redis_session.aio import AsyncSession
    from redis_session.async_store import AsyncStore
    from redis_session.settings import SessionSettings

    settings = SessionSettings(redis_url=redis_server.url, prefix=prefix)
    cookie = RecordingCookie()

    async def scenario():
        store = AsyncStore.connect(settings)
        session = AsyncSession(JitteryStore(store), settings, None, cookie)
        await asyncio.gather(*(session.set(f"f{index}", index) for index in range(20)))
        fields = await session.load()
        await store.aclose()
        return session.session_id, fields

    session_id, fields = asyncio.run(scenario())
    assert {name: value.int for name, value in fields.items()} == {f"f{index}": index for index in range(20)}
    assert cookie.events == [("issue", session_id)]
    assert sorted(redis_server.client().scan_iter(match=f"{prefix}:sessions:*")) == [session_key(prefix, session_id).encode()]


def redis_internal_failure():
    """A function whose code claims to live in redis-py's asyncio package, failing as redis-py
    does on a connection closed under it (redis/redis-py#4287)."""
    namespace: dict = {}
    filename = os.path.join(os.sep, "site-packages", "redis", "asyncio", "connection.py")
    exec(compile("def write():\n    None.writelines([])\n", filename, "exec"), namespace)
    return namespace["write"]


class FlakyScripts:
    """A client stub whose scripts fail like redis-py's asyncio connection ``failures`` times, then answer ``reply``."""

    def __init__(self, failures: int, reply):
        self.failures, self.reply, self.calls = failures, reply, 0
        self.write = redis_internal_failure()

    async def evalsha(self, sha, numkeys, *keys_and_args):
        self.calls += 1
        if self.calls <= self.failures:
            self.write()
        return self.reply


@pytest.mark.parametrize(("failures", "outcome"), [(1, "answers"), (2, "unavailable")])
def test_a_connection_closed_under_an_async_read_is_a_dropped_connection(failures, outcome):
    """redis-py's AttributeError on a closed asyncio connection is a dropped connection: a read is resent once, then is a 503."""
    from redis_session.async_store import AsyncStore
    from redis_session.errors import SessionUnavailableError
    from redis_session.protocol import Call

    client = FlakyScripts(failures, [1, [b"kept"]])
    store = AsyncStore("redis://example:6379/0", client)
    call = Call("read", "t:sessions:x", (60, 3600, "old", "fields", "note"), True)
    if outcome == "answers":
        assert asyncio.run(store.execute(call)) == [1, [b"kept"]]
    else:
        with pytest.raises(SessionUnavailableError):
            asyncio.run(store.execute(call))
    assert client.calls == 2


def test_a_connection_closed_under_an_async_incr_is_not_sent_again():
    """The same failure during incr (not idempotent) is SessionUnavailableError at once, never a second send."""
    from redis_session.async_store import AsyncStore
    from redis_session.errors import SessionUnavailableError
    from redis_session.protocol import Call

    client = FlakyScripts(1, [1, 5])
    store = AsyncStore("redis://example:6379/0", client)
    with pytest.raises(SessionUnavailableError):
        asyncio.run(store.execute(Call("incr", "t:sessions:x", (60, 0, "old", 1000, 1 << 20, "n", "1", "int"), False)))
    assert client.calls == 1
