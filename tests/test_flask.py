"""Flask integration: setup_session, config keys, the signed cookie, outages, coexistence with
flask.session. The Session API itself is covered for Flask by the shared behaviour suite."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Dict, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from flask import Flask, flash, get_flashed_messages, request, session

from redis_session.errors import ConfigurationError
from redis_session.flask_session import RedisSession, setup_session
from tests.redis_servers import RedisServer, free_port
from tests.web import Browser

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def counter_app(redis_url: str, prefix: str, **config: Any) -> Flask:
    app = Flask(f"counter-{prefix}")
    app.config.update(SECRET_KEY="flask-test-secret", SESSION_REDIS=redis_url, SESSION_REDIS_PREFIX=prefix)
    app.config.update(config)
    setup_session(app)

    @app.route("/")
    def count() -> str:
        value = request.session.count.int
        request.session.count = value + 1
        return str(request.session.count.int)

    @app.route("/read")
    def read() -> str:
        return request.session.count.str or "nothing"

    @app.route("/field/<name>")
    def write_field(name: str) -> str:
        request.session[name] = name.upper()
        return "ok"

    @app.route("/logout")
    def logout() -> str:
        request.session.destroy()
        return "bye"

    return app


def session_cookie(response: Any, name: str = "session-id") -> str:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no {name} cookie in {response.headers.getlist('Set-Cookie')}")


def test_counter_counts_per_browser(store_url, prefix):
    """The original README's Flask counter counts per browser through request.session."""
    app = counter_app(store_url, prefix)
    alice, bob = app.test_client(), app.test_client()
    assert [alice.get("/").text for _ in range(3)] == ["1", "2", "3"]
    assert bob.get("/").text == "1"


def test_flask_extension_idiom_keeps_state_in_app_extensions(store_url, prefix):
    """RedisSession().init_app(app) works like setup_session and keeps its state in app.extensions."""
    app = Flask("idiom")
    app.config.update(SECRET_KEY="k", SESSION_REDIS=store_url, SESSION_REDIS_PREFIX=prefix)
    extension = RedisSession()
    extension.init_app(app)
    assert "redis_session" in app.extensions

    @app.route("/")
    def view() -> str:
        return str(request.session.incr("n"))

    client = app.test_client()
    assert [client.get("/").text for _ in range(2)] == ["1", "2"]


def test_missing_secret_key_fails_at_setup():
    """setup_session without SECRET_KEY raises a ConfigurationError naming SECRET_KEY."""
    app = Flask("no-secret")
    app.config["SESSION_REDIS"] = "memory://"
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        setup_session(app)


def test_invalid_config_lists_every_problem_with_flask_key_names():
    """Bad SESSION_* values are all reported at once, under their Flask config names."""
    app = Flask("bad-config")
    app.config.update(SECRET_KEY="k", SESSION_EXPIRE=0, SESSION_REDIS="http://nope", SESSION_COOKIE_SAMESITE="sideways")
    with pytest.raises(ConfigurationError) as raised:
        setup_session(app)
    message = str(raised.value)
    for key in ("SESSION_EXPIRE", "SESSION_REDIS", "SESSION_COOKIE_SAMESITE"):
        assert key in message


def test_cookie_attributes_follow_the_config(store_url, prefix):
    """HttpOnly, Secure, SameSite, Domain, Path and the cookie name come from SESSION_* keys."""
    app = counter_app(store_url, prefix, SESSION_COOKIE_ID="app-sid", SESSION_COOKIE_HTTP_ONLY=True,
                      SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_DOMAIN="example.test", SESSION_COOKIE_PATH="/app")
    header = session_cookie(app.test_client().get("/", base_url="https://example.test/app"), "app-sid")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Domain=example.test", "Path=/app", "Max-Age=2592000"):
        assert attribute in header


def test_http_only_can_be_turned_off(store_url, prefix):
    """SESSION_COOKIE_HTTP_ONLY=False really drops HttpOnly (0.2.1 could not)."""
    app = counter_app(store_url, prefix, SESSION_COOKIE_HTTP_ONLY=False)
    assert "HttpOnly" not in session_cookie(app.test_client().get("/"))


def test_read_only_request_without_cookie_sets_nothing(store_url, prefix):
    """A cookieless request that only reads gets the fallback, no Set-Cookie and no key."""
    app = counter_app(store_url, prefix)
    response = app.test_client().get("/read")
    assert response.text == "nothing"
    assert response.headers.getlist("Set-Cookie") == []
    store = app.extensions["redis_session"].store
    assert list(store.client.scan_iter(match=f"{prefix}:*")) == []


def test_responses_vary_on_cookie_and_cookie_setting_ones_are_private(store_url, prefix):
    """Session responses carry Vary: Cookie; the one that sets the cookie is Cache-Control private."""
    app = counter_app(store_url, prefix)
    client = app.test_client()
    first = client.get("/")
    assert "Cookie" in first.headers["Vary"]
    assert "private" in first.headers["Cache-Control"]
    assert "Cookie" in client.get("/read").headers["Vary"]


@pytest.mark.parametrize("bad_cookie", [
    "garbage",
    "",
    "x" * 10_000,
    "Im5vdC1hLXNpZ25lZC1pZCI.aaaa.bbbb",
])
def test_bad_cookies_mean_no_session(store_url, prefix, bad_cookie):
    """A tampered, malformed or oversized cookie is treated as no session, never a 500."""
    app = counter_app(store_url, prefix)
    response = app.test_client().get("/read", headers={"Cookie": f"session-id={bad_cookie}"})
    assert response.status_code == 200
    assert response.text == "nothing"


def test_a_tampered_valid_cookie_starts_a_new_session(store_url, prefix):
    """Changing one character of a valid cookie loses the session instead of reaching another one."""
    app = counter_app(store_url, prefix)
    client = app.test_client()
    client.get("/")
    value = client.get_cookie("session-id").value
    client.set_cookie("session-id", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    assert client.get("/").text == "1"


def test_secret_key_fallbacks_keep_old_cookies_valid(store_url, prefix):
    """After rotating SECRET_KEY, cookies signed with a key in SECRET_KEY_FALLBACKS still work."""
    old_app = counter_app(store_url, prefix, SECRET_KEY="old-secret")
    client = old_app.test_client()
    client.get("/")
    cookie = client.get_cookie("session-id").value
    rotated = counter_app(store_url, prefix, SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["old-secret"])
    rotated_client = rotated.test_client()
    rotated_client.set_cookie("session-id", cookie)
    assert rotated_client.get("/").text == "2"
    dropped = counter_app(store_url, prefix, SECRET_KEY="new-secret")
    dropped_client = dropped.test_client()
    dropped_client.set_cookie("session-id", cookie)
    assert dropped_client.get("/read").text == "nothing"


def test_destroy_expires_the_cookie(store_url, prefix):
    """Logging out deletes the key and sends an expired cookie."""
    app = counter_app(store_url, prefix)
    client = app.test_client()
    client.get("/")
    header = session_cookie(client.get("/logout"))
    assert "Max-Age=0" in header or "Expires=Thu, 01 Jan 1970" in header
    assert client.get("/").text == "1"


def test_flask_session_and_flash_keep_working_beside_it(store_url, prefix):
    """flask.session and flask.flash still work in an app that uses request.session too."""
    app = counter_app(store_url, prefix)

    @app.route("/both")
    def both() -> str:
        session["theme"] = "dark"
        flash("from flask")
        request.session.flash("from redis_session")
        return "ok"

    @app.route("/show")
    def show() -> str:
        ours = [message for _, message in request.session.flashes()]
        return f"{session.get('theme')}|{get_flashed_messages()}|{ours}"

    client = app.test_client()
    client.get("/both")
    assert client.get("/show").text == "dark|['from flask']|['from redis_session']"


def test_importing_the_flask_side_does_not_import_tornado():
    """redis_session.flask_session imports without Tornado, and the Tornado side without Flask."""
    probe = (
        "import sys, redis_session.flask_session; assert 'tornado' not in sys.modules, 'tornado imported';"
        "import redis_session.tornado_session"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
    probe = "import sys, redis_session.tornado_session; assert 'flask' not in sys.modules, 'flask imported'"
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_redis_down_is_a_503_with_one_log_line_and_recovers(own_redis_server: RedisServer, prefix, caplog):
    """With Redis stopped requests get a quick 503 and one log line; after restart they work again."""
    app = counter_app(own_redis_server.url, prefix, SESSION_REDIS_TIMEOUT=0.5)
    client = app.test_client()
    assert client.get("/").text == "1"
    own_redis_server.stop()
    caplog.set_level(logging.WARNING, logger="redis_session")
    started = time.monotonic()
    response = client.get("/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert time.monotonic() - started < 2
    records = [record for record in caplog.records if record.name == "redis_session"]
    assert len(records) == 1 and records[0].exc_info is None
    own_redis_server.start()
    # the restarted server kept nothing (no persistence): the app works again, on a new session
    assert client.get("/").text == "1"


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def threaded_flask(redis_server: RedisServer, prefix: str) -> Iterator[Dict[str, Any]]:
    app = counter_app(redis_server.url, prefix, SESSION_COOKIE_SECURE=False)
    port = free_port()
    server = make_server("127.0.0.1", port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"app": app, "url": f"http://127.0.0.1:{port}", "prefix": prefix}
    server.shutdown()
    server.server_close()


def test_fifty_concurrent_distinct_field_writes_lose_nothing(threaded_flask):
    """50 concurrent requests writing different fields of one session, on a threaded server, all land."""
    browser = Browser(threaded_flask["url"])
    assert browser.get("/").status == 200
    errors = []

    def write(index: int) -> None:
        response = Browser(threaded_flask["url"])
        response.cookies = dict(browser.cookies)
        if response.get(f"/field/f{index}").status != 200:
            errors.append(index)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = threaded_flask["app"].extensions["redis_session"].store
    keys = list(store.client.scan_iter(match=f"{threaded_flask['prefix']}:sessions:*"))
    fields = {}
    for key in keys:
        fields.update(store.client.hgetall(key))
    assert all(fields.get(f"f{index}".encode()) == f"F{index}".encode() for index in range(50))


def test_the_flask_example_runs_on_the_memory_store():
    """examples/flask_counter.py serves the counter on memory:// with no Redis at all."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(EXAMPLES / "flask_counter.py"), "--redis", "memory://",
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        assert "count:0" in first.text and "value:1" in first.text
        assert "count:1" in browser.get("/").text
    finally:
        process.terminate()
        process.wait(10)
