"""Bring your own client: an application that already has a redis-py client (custom TLS, an ACL
user, instrumentation, a shared pool) hands it to the library instead of a URL, on Tornado
(``redis_session={"redis": client}``, or a (blocking, asyncio) pair) and Flask
(``SESSION_REDIS = client``). The library uses it as it is, never closes it, and a Redis that does
not answer is still a 503 (within the client's own socket timeout)."""

from __future__ import annotations

import asyncio
import re
import warnings
from typing import Any

import flask
import pytest
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

from redis_session import ConfigurationError, ConfigurationWarning, SessionSettings
from redis_session.async_store import AsyncStore
from redis_session.flask_session import setup_session as setup_flask_session
from redis_session.tornado_session import AsyncSessionHandler, SessionHandler, backend_for
from tests.redis_servers import RedisServer
from tests.support import COOKIE_SECRET

pytestmark = pytest.mark.redis_server


def blocking_client(server: RedisServer, **options: Any) -> redis.Redis:
    """A client as a careful application builds it: bounded waits, no retries."""
    options.setdefault("socket_timeout", 1.0)
    options.setdefault("retry", redis.retry.Retry(NoBackoff(), 0))
    return redis.Redis(host="127.0.0.1", port=server.port, **options)


def asyncio_client(server: RedisServer) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(host="127.0.0.1", port=server.port, socket_timeout=1.0,
                               retry=redis.asyncio.retry.Retry(NoBackoff(), 0))


class Counter(SessionHandler):
    def get(self) -> None:
        self.write(str(self.session.incr("count")))


class AsyncCounter(AsyncSessionHandler):
    async def get(self) -> None:
        self.write(str(await self.session.incr("count")))


def test_a_tornado_app_runs_its_sessions_on_its_own_client_and_keeps_it_open(serve, own_redis_server, prefix):
    """With ``redis_session={"redis": client}`` the sessions live on that client's server, and
    closing the app's session stores leaves the client open for the application."""
    client = blocking_client(own_redis_server)
    server = serve([("/", Counter)], redis_session={"redis": client, "redis-prefix": prefix, "cookie-secure": False})
    browser = server.browser()
    assert [browser.get("/").text for _ in range(3)] == ["1", "2", "3"]
    assert len(list(client.scan_iter(match=f"{prefix}:sessions:*"))) == 1
    assert "the application's own Redis" in backend_for(server.application).store.name
    backend_for(server.application).close()
    assert client.ping() is True
    client.close()


def test_a_blocking_and_asyncio_pair_serves_both_kinds_of_handler(serve, own_redis_server, prefix):
    """A (blocking, asyncio) pair serves blocking and coroutine handlers of one app, on one session."""
    pair = (blocking_client(own_redis_server), asyncio_client(own_redis_server))
    server = serve([("/", Counter), ("/async", AsyncCounter)],
                   redis_session={"redis": pair, "redis-prefix": prefix, "cookie-secure": False})
    browser = server.browser()
    assert [browser.get("/").text, browser.get("/async").text, browser.get("/").text] == ["1", "2", "3"]
    pair[0].close()
    # the asyncio client is the application's: it closes it, on the loop that opened its connections
    asyncio.run_coroutine_threadsafe(pair[1].aclose(), server._loop).result(5)


def test_coroutine_handlers_without_an_asyncio_client_get_a_clear_error(serve, own_redis_server, prefix, caplog):
    """Given only a blocking client, a coroutine handler answers 500 and the log says to give an
    asyncio client too (the blocking handlers keep working)."""
    client = blocking_client(own_redis_server)
    server = serve([("/", Counter), ("/async", AsyncCounter)],
                   redis_session={"redis": client, "redis-prefix": prefix, "cookie-secure": False})
    browser = server.browser()
    assert browser.get("/async").status == 500
    assert browser.get("/").text == "1"
    logged = [record.getMessage() for record in caplog.records if record.name == "redis_session"]
    assert any("need an asyncio client (redis.asyncio.Redis)" in message for message in logged)
    client.close()


def test_an_outage_on_the_applications_own_client_is_a_503(serve, own_redis_server, prefix):
    """A frozen Redis behind the application's own client answers 503 once the client's socket
    timeout has passed, and the app recovers when Redis does."""
    client = blocking_client(own_redis_server, socket_timeout=0.5)
    server = serve([("/", Counter)], redis_session={"redis": client, "redis-prefix": prefix, "cookie-secure": False})
    browser = server.browser()
    assert browser.get("/").text == "1"
    own_redis_server.pause()
    try:
        response = browser.get("/")
        assert response.status == 503 and response.header("Retry-After") == "1"
    finally:
        own_redis_server.resume()
    assert browser.get("/").status in (200, 503)  # the pause after a timeout may still hold
    client.close()


def test_flask_takes_a_client_as_session_redis(own_redis_server, prefix):
    """``SESSION_REDIS = client`` works as Flask-Session users expect."""
    client = blocking_client(own_redis_server)
    app = flask.Flask("own-client")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=client, SESSION_REDIS_PREFIX=prefix,
                      SESSION_COOKIE_SECURE=False)
    setup_flask_session(app)

    @app.route("/")
    def count() -> str:
        return str(flask.request.session.incr("count"))  # type: ignore[attr-defined]

    test_client = app.test_client()
    assert [test_client.get("/").text for _ in range(2)] == ["1", "2"]
    assert len(list(client.scan_iter(match=f"{prefix}:sessions:*"))) == 1
    client.close()


@pytest.mark.parametrize(("options", "phrase"), [
    ({"retry": redis.retry.Retry(NoBackoff(), 3)}, "retries failed commands (3 times)"),
    ({"socket_timeout": None}, "has no socket_timeout"),
])
def test_a_client_that_could_double_count_or_hang_is_warned_about(options, phrase):
    """A client that retries (an incr whose reply was lost would count twice) or has no socket
    timeout (a stalled Redis would hold requests for ever) is accepted with a warning saying why."""
    client = redis.Redis(host="127.0.0.1", port=1, **{"socket_timeout": 1.0, "retry": redis.retry.Retry(NoBackoff(), 0), **options})
    with pytest.warns(ConfigurationWarning, match=re.escape(phrase)):
        SessionSettings.from_mapping({"redis": client})


def test_a_careful_client_raises_no_warning():
    """A client with a socket timeout and no retries passes without a word."""
    client = redis.Redis(host="127.0.0.1", port=1, socket_timeout=1.0, retry=redis.retry.Retry(NoBackoff(), 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SessionSettings.from_mapping({"redis": client})


@pytest.mark.parametrize("value", [42, ["redis://x"], (redis.Redis(), redis.Redis())])
def test_anything_else_as_the_store_is_refused(value):
    """Neither a URL nor one client (or one of each kind) is a ConfigurationError saying what fits."""
    with pytest.raises(ConfigurationError, match="store URL|one blocking client"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigurationWarning)
        SessionSettings.from_mapping({"redis": value})


def test_closing_an_async_store_leaves_the_applications_own_client_open(own_redis_server):
    """Closing the asyncio store built on an application's own client leaves that client open."""
    async def scenario() -> bool:
        client = asyncio_client(own_redis_server)
        store = AsyncStore.connect(SessionSettings.from_mapping({"redis": client}))
        await store.aclose()
        answered = await client.ping()
        await client.aclose()
        return bool(answered)

    assert asyncio.run(scenario()) is True
