"""Flask integration: setup_session, config keys and secrets, the signed cookie and bad cookies,
the store built on first use, outages, session_admin, coexistence with flask.session and the
same cookie as Tornado's. The Session API itself is covered for Flask by the shared behaviour
suite (test_session.py, test_lifecycle.py through tests/integrations.py), concurrent requests
on Werkzeug's threaded server by test_adversarial.py."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from flask import Flask, flash, get_flashed_messages, request, session
from itsdangerous import TimestampSigner

from redis_session import SessionAdmin, SessionSettings
from redis_session.errors import ConfigurationError, SessionUnavailableError
from redis_session.flask_session import RedisSession, session_admin, setup_session
from redis_session.store import Store
from redis_session.tornado_session import SessionHandler
from tests.conftest import app_settings
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
    """HttpOnly (on or off, which 0.2.1 could not), Secure, SameSite, Domain, Path and the cookie name come from SESSION_* keys."""
    app = counter_app(store_url, prefix, SESSION_COOKIE_ID="app-sid", SESSION_COOKIE_HTTP_ONLY=True,
                      SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_DOMAIN="example.test", SESSION_COOKIE_PATH="/app")
    header = session_cookie(app.test_client().get("/", base_url="https://example.test/app"), "app-sid")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Domain=example.test", "Path=/app", "Max-Age=2592000"):
        assert attribute in header
    readable = counter_app(store_url, prefix, SESSION_COOKIE_HTTP_ONLY=False)
    assert "HttpOnly" not in session_cookie(readable.test_client().get("/"))


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
    """A tampered, truncated, unsigned, expired, oversized, garbage, empty or non-ASCII cookie means no session; a write starts anew."""
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
    """Two session-id cookies in one request (cookie tossing) give a fresh empty session and one warning that hides both."""
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


def test_secret_key_fallbacks_keep_old_cookies_valid(store_url, prefix):
    """After rotating SECRET_KEY, cookies signed with a key in SECRET_KEY_FALLBACKS work; with its first character, or once dropped, not."""
    old_app = counter_app(store_url, prefix, SECRET_KEY="old-secret")
    client = old_app.test_client()
    client.get("/")
    cookie = client.get_cookie("session-id").value
    rotated = counter_app(store_url, prefix, SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["old-secret"])
    rotated_client = rotated.test_client()
    rotated_client.set_cookie("session-id", cookie)
    assert rotated_client.get("/").text == "2"
    one_character = counter_app(store_url, prefix, SECRET_KEY="o").test_client()
    one_character.get("/")
    forged = rotated.test_client()
    forged.set_cookie("session-id", one_character.get_cookie("session-id").value)
    assert forged.get("/read").text == "nothing"
    dropped = counter_app(store_url, prefix, SECRET_KEY="new-secret")
    dropped_client = dropped.test_client()
    dropped_client.set_cookie("session-id", cookie)
    assert dropped_client.get("/read").text == "nothing"


@pytest.mark.parametrize("fallbacks", ["old-secret", b"old-secret", ["old-secret", ""], ("old", None), {"old-secret"}, 42])
def test_secret_key_fallbacks_must_be_a_list_of_keys(fallbacks):
    """SECRET_KEY_FALLBACKS that is not a list of non-empty keys (a string would be one-character keys) fails at setup, saying why."""
    app = Flask("bad-fallbacks")
    app.config.update(SECRET_KEY="new-secret", SESSION_REDIS="memory://", SECRET_KEY_FALLBACKS=fallbacks,
                      SESSION_EXPIRE=0)
    with pytest.raises(ConfigurationError) as raised:
        setup_session(app)
    message = str(raised.value)
    assert "SECRET_KEY_FALLBACKS" in message and "['old-secret']" in message
    assert "SESSION_EXPIRE" in message  # one error lists every problem
    assert "redis_session" not in app.extensions


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
    """Importing redis_session.flask_session without Flask fails with a ModuleNotFoundError saying to install the flask extra."""
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
    """With an unreachable redis+cluster:// URL every request answers 503 + Retry-After and logs one line naming the URL."""
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
    """The store is built by the first request, not setup_session; if that fails (a 503) the next request builds it anew."""
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
    """session_admin() in a view, and RedisSession.admin(app) outside one, list and revoke a user's sessions on the app's store."""
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
    """For the same settings Tornado and Flask send the same cookie attributes, when setting the cookie and when expiring it."""
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
