"""Flask integration: setup_session, config keys and secrets, the signed cookie and bad cookies,
the store built on first use, outages, session_admin, coexistence with flask.session, the same
cookie as Tornado's, and concurrent requests on Werkzeug's threaded server over loopback. The
Session API itself is covered for Flask by the shared behaviour suite (test_session.py,
test_lifecycle.py through tests/integrations.py)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from flask import Flask, flash, get_flashed_messages, request, session
from itsdangerous import TimestampSigner
from werkzeug.serving import WSGIRequestHandler, make_server

from redis_session import SessionAdmin, SessionSettings
from redis_session.errors import ConfigurationError, SessionUnavailableError
from redis_session.flask_session import RedisSession, session_admin, setup_session
from redis_session.store import Store
from redis_session.tornado_session import SessionHandler
from tests.conftest import app_settings
from tests.redis_servers import RedisServer, free_port
from tests.web import Browser, Response, all_at_once

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

    @app.route("/incr")
    def incr() -> str:
        return str(request.session.incr("hits"))

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


def test_setting_up_an_app_twice_is_refused():
    """A second setup_session(app) raises a ConfigurationError instead of hooking every response twice."""
    app = Flask("twice")
    app.config.update(SECRET_KEY="s" * 32, SESSION_REDIS="memory://")
    setup_session(app)
    with pytest.raises(ConfigurationError, match="already set up"):
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


def signed_long_ago(app: Flask, value: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """``value`` signed by the app's serializer with a timestamp 40 days old."""
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 40 * 86400)
        return str(app.extensions["redis_session"].serializer.dumps(value))


def flip(text: str, index: int) -> str:
    """``text`` with the character at ``index`` changed. (Not the last one of a signature: its low
    bits are base64 padding, so some changes to it decode to the same signature.)"""
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


#: Each way a session-id cookie can be wrong, built from the valid cookie of an existing session.
BAD_COOKIES: dict[str, Callable[[Flask, str, str, pytest.MonkeyPatch], str]] = {
    "tampered signature": lambda app, valid, sid, mp: flip(valid, -10),
    "tampered payload": lambda app, valid, sid, mp: flip(valid, 2),
    "truncated": lambda app, valid, sid, mp: valid[:-6],
    "unsigned id of a live session": lambda app, valid, sid, mp: sid,
    "signed with another secret": lambda app, valid, sid, mp: str(
        counter_app("memory://", "other", SECRET_KEY="another-secret").extensions["redis_session"].serializer.dumps(sid)
    ),
    "flask.session cookie with the same secret": lambda app, valid, sid, mp: str(
        app.session_interface.get_signing_serializer(app).dumps(sid)  # type: ignore[attr-defined]
    ),
    "expired signature": lambda app, valid, sid, mp: signed_long_ago(app, sid, mp),
    "signed non-id": lambda app, valid, sid, mp: str(app.extensions["redis_session"].serializer.dumps("../" + sid)),
    "signed non-string": lambda app, valid, sid, mp: str(app.extensions["redis_session"].serializer.dumps([sid])),
    "oversized": lambda app, valid, sid, mp: valid + "." + "A" * 600,
    "garbage": lambda app, valid, sid, mp: "garbage",
    "huge garbage": lambda app, valid, sid, mp: "x" * 10_000,
    "dots only": lambda app, valid, sid, mp: "...",
    "empty": lambda app, valid, sid, mp: "",
    "non-ascii": lambda app, valid, sid, mp: valid[:-1] + "\u00e9",
    "tornado-signed": lambda app, valid, sid, mp: tornado.web.create_signed_value(
        "flask-test-secret", "session-id", sid
    ).decode(),
}


@pytest.mark.parametrize("form", sorted(BAD_COOKIES))
def test_bad_cookies_mean_no_session(store_url, prefix, monkeypatch, form):
    """A tampered, truncated, unsigned, expired, oversized, garbage, empty or non-ASCII cookie reaches
    the app and means "no session": 200, fallbacks, no Set-Cookie, and a write starts a new session."""
    app = counter_app(store_url, prefix)

    @app.route("/probe")
    def probe() -> str:
        received = request.cookies.get("session-id")
        return f"{'sent' if received is not None else 'missing'}|{request.session.count.str or 'nothing'}"

    owner = app.test_client()
    assert owner.get("/").text == "1"  # a live session the bad cookie is derived from
    valid = owner.get_cookie("session-id").value
    live_id = app.extensions["redis_session"].serializer.loads(valid)
    bad = BAD_COOKIES[form](app, valid, live_id, monkeypatch)
    # Werkzeug's client drops a Cookie header while its own jar is empty: send it without a jar.
    client = app.test_client(use_cookies=False)
    headers = {"Cookie": f"session-id={bad}"}

    read = client.get("/probe", headers=headers)
    assert (read.status_code, read.text) == (200, "sent|nothing")
    assert read.headers.getlist("Set-Cookie") == []
    written = client.get("/", headers=headers)
    assert (written.status_code, written.text) == (200, "1")
    assert app.extensions["redis_session"].serializer.loads(session_cookie(written).split("=", 1)[1].split(";")[0]) != live_id
    assert owner.get("/").text == "2"  # the live session was not touched


def test_two_session_cookies_in_one_request_use_neither(store_url, prefix, session_log):
    """Two session-id cookies in one request (cookie tossing) give a fresh empty session and one
    warning that holds no session id or cookie value."""
    app = counter_app(store_url, prefix)
    first, second = app.test_client(), app.test_client()
    first.get("/")
    second.get("/")
    second.get("/")
    cookies = [client.get_cookie("session-id").value for client in (first, second)]
    serializer = app.extensions["redis_session"].serializer
    ids = [serializer.loads(cookie) for cookie in cookies]
    tossed = app.test_client(use_cookies=False)
    headers = {"Cookie": f"session-id={cookies[0]}; session-id={cookies[1]}"}
    session_log.clear()

    read = tossed.get("/read", headers=headers)

    assert (read.status_code, read.text) == (200, "nothing")
    warnings = [record for record in session_log.records if record.name == "redis_session"]
    assert [record.levelno for record in warnings] == [logging.WARNING]
    for secret in ids + cookies:
        assert secret not in session_log.text
    written = tossed.get("/", headers=headers)
    assert written.text == "1"
    new_id = serializer.loads(session_cookie(written).split("=", 1)[1].split(";")[0])
    assert new_id not in ids
    assert [first.get("/read").text, second.get("/read").text] == ["1", "2"]


def test_a_tampered_valid_cookie_starts_a_new_session(store_url, prefix):
    """Changing one character of a valid cookie loses the session instead of reaching another one."""
    app = counter_app(store_url, prefix)
    client = app.test_client()
    client.get("/")
    value = client.get_cookie("session-id").value
    client.set_cookie("session-id", flip(value, -10))
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


@pytest.mark.parametrize("fallbacks", ["old-secret", b"old-secret", ["old-secret", ""], ("old", None), {"old-secret"}, 42])
def test_secret_key_fallbacks_must_be_a_list_of_keys(fallbacks):
    """SECRET_KEY_FALLBACKS that is not a list of non-empty keys (a plain string would become
    one-character keys) fails at setup, naming the key and what to pass, along with other problems."""
    app = Flask("bad-fallbacks")
    app.config.update(SECRET_KEY="new-secret", SESSION_REDIS="memory://", SECRET_KEY_FALLBACKS=fallbacks,
                      SESSION_EXPIRE=0)
    with pytest.raises(ConfigurationError) as raised:
        setup_session(app)
    message = str(raised.value)
    assert "SECRET_KEY_FALLBACKS" in message and "['old-secret']" in message
    assert "SESSION_EXPIRE" in message  # one error lists every problem
    assert "redis_session" not in app.extensions


def test_a_cookie_signed_with_one_character_of_a_fallback_is_never_accepted(prefix):
    """SECRET_KEY_FALLBACKS="old-secret" is refused at setup, and with ["old-secret"] a cookie
    signed with the key "o" means no session while one signed with "old-secret" still works."""
    def signed_with(key: str) -> str:
        client = counter_app(f"memory://{prefix}", prefix, SECRET_KEY=key).test_client()
        client.get("/")
        return str(client.get_cookie("session-id").value)

    with pytest.raises(ConfigurationError, match="SECRET_KEY_FALLBACKS"):
        counter_app(f"memory://{prefix}", prefix, SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS="old-secret")
    app = counter_app(f"memory://{prefix}", prefix, SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["old-secret"])
    for key, expected in (("o", "nothing"), ("old-secret", "1")):
        client = app.test_client()
        client.set_cookie("session-id", signed_with(key))
        assert client.get("/read").text == expected


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


def test_without_flask_installed_the_import_error_names_the_extra():
    """Importing redis_session.flask_session where Flask is missing fails with a
    ModuleNotFoundError that says to pip install 'redis_session[flask]'."""
    probe = (
        "import sys; sys.modules['flask'] = None\n"
        "try:\n    import redis_session.flask_session\n"
        "except ModuleNotFoundError as error:\n    print(error.name, '|', error)\n"
    )
    printed = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert printed.startswith("flask |")
    assert "pip install 'redis_session[flask]'" in printed


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


def test_setup_session_does_not_talk_to_the_store_and_an_unreachable_one_is_a_503(prefix, session_log):
    """setup_session with an unreachable redis+cluster:// URL succeeds at once; each request then
    answers 503 with Retry-After and one log line, and builds the client again."""
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    app = counter_app(url, prefix, SESSION_REDIS_TIMEOUT=0.5)
    client = app.test_client()
    for _ in range(2):
        session_log.clear()
        response = client.get("/")
        assert (response.status_code, response.headers.get("Retry-After")) == (503, "1")
        records = [record for record in session_log.records if record.name == "redis_session"]
        assert len(records) == 1 and records[0].exc_info is None
        assert "redis+cluster://127.0.0.1" in records[0].getMessage()


# ids without "cluster" or "sentinel": ``-k "not cluster and not sentinel"`` must keep these.
@pytest.mark.parametrize("scheme", ["redis", "redis+cluster", "redis+sentinel"], ids=["standalone", "nodes", "watched"])
def test_setup_session_opens_no_connection(prefix, scheme):
    """setup_session opens no connection to the store, whatever its kind (a cluster client would)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0)
    try:
        port = listener.getsockname()[1]
        counter_app(f"{scheme}://127.0.0.1:{port}" + ("/mymaster" if scheme == "redis+sentinel" else ""), prefix)
        with pytest.raises(BlockingIOError):
            listener.accept()[0].close()
    finally:
        listener.close()


def test_a_store_that_failed_to_build_is_built_by_the_next_request(prefix, monkeypatch):
    """The store is built by the first request, not by setup_session; if that fails (a 503), the
    next request builds it again instead of reusing the failure, and the app recovers."""
    attempts: list[str] = []

    connect = Store.connect

    def flaky_connect(settings: SessionSettings) -> Any:
        attempts.append(settings.redis_url)
        if len(attempts) == 1:
            raise SessionUnavailableError(settings.redis_url, ConnectionError("connection refused"))
        return connect(settings)

    monkeypatch.setattr(Store, "connect", flaky_connect)
    app = counter_app(f"memory://{prefix}", prefix)
    assert attempts == []
    client = app.test_client()
    assert client.get("/").status_code == 503
    assert [client.get("/").text, client.get("/").text] == ["1", "2"]
    assert len(attempts) == 2


@pytest.mark.parametrize("url", ["redis+cluster://", "redis+cluster://host:port", "redis+sentinel://127.0.0.1:26379"],
                         ids=["no-host", "bad-port", "no-service-name"])
def test_a_malformed_multi_node_store_url_still_fails_at_setup(url):
    """A cluster or sentinel URL that cannot be parsed is a ConfigurationError naming SESSION_REDIS at setup."""
    app = Flask("bad-url")
    app.config.update(SECRET_KEY="k", SESSION_REDIS=url)
    with pytest.raises(ConfigurationError, match="SESSION_REDIS"):
        setup_session(app)


def test_session_admin_lists_and_revokes_the_users_sessions(store_url, prefix):
    """session_admin() in a view (and RedisSession.admin(app) outside one) lists a user's sessions
    and revokes them on the app's store."""
    app = counter_app(store_url, prefix)

    @app.route("/login/<user>")
    def login(user: str) -> str:
        request.session.bind_user(user)
        return "ok"

    @app.route("/mine")
    def mine() -> str:
        return str(len(session_admin().sessions_for_user(request.session.user_id)))

    @app.route("/sign-out-elsewhere")
    def sign_out_elsewhere() -> str:
        ended = session_admin().revoke_user(request.session.user_id, keep=request.session.session_id)
        return str(ended)

    laptop, phone = app.test_client(), app.test_client()
    for client in (laptop, phone):
        client.get("/")
        client.get("/login/alice")
    assert laptop.get("/mine").text == "2"

    admin = RedisSession.admin(app)
    assert isinstance(admin, SessionAdmin)
    assert len(admin.sessions_for_user("alice")) == 2
    assert laptop.get("/sign-out-elsewhere").text == "1"
    assert phone.get("/read").text == "nothing"
    assert laptop.get("/read").text == "1"
    assert [info.user_id for info in admin.sessions_for_user("alice")] == ["alice"]


def cookie_parts(header: str) -> dict[str, Any]:
    """A Set-Cookie header's attributes (names in lower case; flags map to True), minus the
    value and Expires, which differ by design between two responses."""
    parts: dict[str, Any] = {}
    for item in header.split(";")[1:]:
        name, has_value, value = item.strip().partition("=")
        if name.lower() != "expires":
            parts[name.lower()] = value if has_value else True
    return parts


@pytest.mark.parametrize("overrides", [
    {},
    {"max-lifetime": 3600},
    {"cookie-max-age": 0},
    {"cookie-max-age": 600, "max-lifetime": 7200, "cookie-http-only": False, "cookie-samesite": "Strict"},
    {"cookie-domain": "example.test", "cookie-path": "/app", "cookie-secure": True, "cookie-samesite": ""},
])
def test_tornado_and_flask_set_and_expire_the_same_cookie(store_url, prefix, serve, overrides):
    """For the same settings both integrations send the attributes SessionSettings describes
    (Max-Age capped by the absolute lifetime), when setting the cookie and when expiring it."""
    values = app_settings(store_url, prefix, **overrides)
    settings = SessionSettings.from_mapping(values)
    attributes = settings.cookie_attributes()
    expected = {"path": attributes["path"]}
    expected.update({"domain": attributes["domain"]} if attributes["domain"] else {})
    expected.update({"samesite": attributes["samesite"]} if attributes["samesite"] else {})
    expected.update({"secure": True} if attributes["secure"] else {})
    expected.update({"httponly": True} if attributes["httponly"] else {})
    max_age = settings.cookie_max_age_for_new_sessions
    assert max_age == (min(settings.cookie_max_age, settings.max_lifetime or settings.cookie_max_age) or None)

    flask_app = counter_app(store_url, prefix, **{f"SESSION_{name.upper().replace('-', '_')}": value
                                                  for name, value in values.items()})
    client = flask_app.test_client()
    base = f"https://{attributes['domain'] or 'localhost'}{attributes['path'].rstrip('/')}"
    flask_issue = cookie_parts(session_cookie(client.get("/", base_url=base)))
    flask_expire = cookie_parts(session_cookie(client.get("/logout", base_url=base)))

    class Counter(SessionHandler):
        def get(self) -> None:
            self.session.count = 1

    class Logout(SessionHandler):
        def get(self) -> None:
            self.session.destroy()

    server = serve([(r".*/logout", Logout), (r".*", Counter)], redis_session=values)
    browser = server.browser()
    tornado_issue = cookie_parts(browser.get(attributes["path"]).header("Set-Cookie") or "")
    tornado_expire = cookie_parts(browser.get(attributes["path"].rstrip("/") + "/logout").header("Set-Cookie") or "")

    issue = {**expected, **({"max-age": str(max_age)} if max_age else {})}
    assert flask_issue == issue
    assert tornado_issue == issue
    assert flask_expire == tornado_expire == {**expected, "max-age": "0"}


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's request handler without one log line per request."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def threaded_flask(redis_server: RedisServer, prefix: str) -> Iterator[dict[str, Any]]:
    """The counter app on Werkzeug's threaded server (one thread per request), on loopback."""
    app = counter_app(redis_server.url, prefix, SESSION_COOKIE_SECURE=False)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"app": app, "url": f"http://127.0.0.1:{port}", "prefix": prefix}
    server.shutdown()
    server.server_close()
    thread.join(10)


def session_keys(app: Flask, prefix: str) -> list[bytes]:
    return list(app.extensions["redis_session"].store.client.scan_iter(match=f"{prefix}:sessions:*"))


def test_fifty_concurrent_distinct_field_writes_lose_nothing(threaded_flask):
    """50 concurrent requests writing different fields of one session, on a threaded server, all
    land in that one session, and none of them sends a new cookie."""
    app, prefix = threaded_flask["app"], threaded_flask["prefix"]
    browser = Browser(threaded_flask["url"])
    assert browser.get("/").text == "1"

    def write(index: int) -> Response:
        request = Browser(threaded_flask["url"])
        request.cookies = dict(browser.cookies)
        return request.get(f"/field/f{index}")

    responses = all_at_once(50, write)

    assert [response.status for response in responses] == [200] * 50
    assert [response.set_cookies for response in responses] == [[]] * 50
    keys = session_keys(app, prefix)
    assert len(keys) == 1
    fields = app.extensions["redis_session"].store.client.hgetall(keys[0])
    user_fields = {name: value for name, value in fields.items() if not name.startswith(b"__rs:")}
    assert user_fields == {b"count": b"1", **{f"f{index}".encode(): f"F{index}".encode() for index in range(50)}}


def test_two_hundred_concurrent_increments_count_exactly_two_hundred(threaded_flask):
    """200 concurrent incr() requests on one session, on a threaded server, count to exactly 200."""
    app, prefix = threaded_flask["app"], threaded_flask["prefix"]
    browser = Browser(threaded_flask["url"])
    assert browser.get("/").text == "1"

    def increment(index: int) -> Response:
        request = Browser(threaded_flask["url"])
        request.cookies = dict(browser.cookies)
        return request.get("/incr")

    responses = all_at_once(200, increment)

    assert [response.status for response in responses] == [200] * 200
    assert sorted(int(response.text) for response in responses) == list(range(1, 201))
    keys = session_keys(app, prefix)
    assert len(keys) == 1
    assert app.extensions["redis_session"].store.client.hget(keys[0], "hits") == b"200"


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
