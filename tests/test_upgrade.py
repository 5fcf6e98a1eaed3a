"""Upgrading from redis-session 0.2.1: sessions the real 0.2.1 package wrote are read by this one,
row by row of the table in docs/migrating.rst.

0.2.1 imports as ``redis_session`` too, so it runs in a virtual environment of its own, built once
per test run (``legacy_0_2_1``), with the dependencies it needs today (Flask 1.1 and Werkzeug 0.16
for its Flask module, redis-py 2.10 as in 2018); tests/legacy/write_with_0_2_1.py writes each
session there, in a real request, and the test reads it here.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import pytest
import tornado.web

from redis_session.flask_session import setup_session as setup_flask_session
from redis_session.protocol import session_key
from redis_session.session import Session
from redis_session.store import Store
from redis_session.tornado_session import SessionHandler
from tests.redis_servers import unavailable
from tests.support import COOKIE_SECRET, RecordingCookie, make_settings

pytestmark = pytest.mark.redis_server

WRITER = Path(__file__).resolve().parent / "legacy" / "write_with_0_2_1.py"
#: What 0.2.1 needs today: its Flask module imports werkzeug.contrib (gone in Werkzeug 1.0).
LEGACY_REQUIREMENTS = [
    "redis-session==0.2.1", "redis==2.10.6", "setuptools", "tornado", "flask==1.1.4", "werkzeug==0.16.1",
    "itsdangerous==1.1.0", "jinja2==2.11.3", "markupsafe==2.0.1", "click==7.1.2",
]
FIELDS = {"name": "alice", "count": 42, "ratio": 1.5, "vip": True, "props": {"a": 1}, "nothing": None}
TOMORROW = (datetime.datetime.now(datetime.timezone.utc).date() + datetime.timedelta(days=1)).isoformat()
YESTERDAY = (datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=1)).isoformat()


@pytest.fixture(scope="session")
def legacy_0_2_1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a virtual environment holding the real redis-session 0.2.1 (built once)."""
    home = tmp_path_factory.getbasetemp() / "redis-session-0.2.1"
    python = home / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, capture_output=True, timeout=120)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *LEGACY_REQUIREMENTS],
                           check=True, capture_output=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            output = getattr(error, "stderr", b"") or b""
            unavailable(f"could not install redis-session 0.2.1: {output.decode(errors='replace')[-500:]}")
    return python


def written_by_0_2_1(python: Path, framework: str, url: str, prefix: str, *options: str) -> dict[str, Any]:
    """Write FIELDS with 0.2.1 in one request; ``{"cookie": "name=value", "session_id", "key"}``."""
    finished = subprocess.run([str(python), str(WRITER), framework, url, prefix, COOKIE_SECRET, json.dumps(FIELDS), *options],
                              capture_output=True, text=True, timeout=60, check=True)
    written: dict[str, Any] = json.loads(finished.stdout)
    return written


class Profile(SessionHandler):
    def get(self) -> None:
        self.write({"name": self.session.name.str, "count": self.session.count.int, "id": self.session.session_id})


def tornado_server(serve: Any, url: str, prefix: str, **settings: Any) -> Any:
    return serve([("/", Profile)], redis_session={"redis": url, "redis-prefix": prefix, "cookie-secure": False, **settings})


def send_cookie(browser: Any, cookie: str) -> None:
    name, _, value = cookie.partition("=")
    browser.cookies[name] = value


def moved_to_a_hashed_key(seen: dict[str, Any], written: dict[str, Any], redis_server: Any, prefix: str) -> str:
    """The session 0.2.1 wrote, as first used here: every field under a new id, stored under that
    id's digest; the old id (which sat in Redis in the clear) names nothing any more."""
    assert {"name": seen["name"], "count": seen["count"]} == {"name": "alice", "count": 42}
    new_id: str = seen["id"]
    assert new_id != written["session_id"]
    client = redis_server.client()
    assert client.exists(written["key"]) == 0
    assert client.hget(session_key(prefix, new_id), "props") == b"{'a': 1}"
    assert new_id not in session_key(prefix, new_id)
    return new_id


def test_a_signed_tornado_cookie_of_0_2_1_keeps_its_session(serve, legacy_0_2_1, redis_server, prefix):
    """Row "Tornado, --session-cookie-secure=true (0.2.1's default)": the signed cookie and the
    session carry over with no setting at all; the first request moves the session to a new id
    (hashed keying) and sends its cookie, once."""
    written = written_by_0_2_1(legacy_0_2_1, "tornado", redis_server.url, prefix)
    browser = tornado_server(serve, redis_server.url, prefix).browser()
    send_cookie(browser, written["cookie"])
    response = browser.get("/")
    new_id = moved_to_a_hashed_key(json.loads(response.text), written, redis_server, prefix)
    assert len(response.set_cookies) == 1
    again = browser.get("/")
    assert json.loads(again.text)["id"] == new_id and again.set_cookies == []


@pytest.mark.parametrize(("until", "carried_over"), [("", False), (TOMORROW, True), (YESTERDAY, False)])
def test_an_unsigned_tornado_cookie_of_0_2_1_needs_the_upgrade_window(serve, legacy_0_2_1, redis_server, prefix, until, carried_over):
    """Row "Tornado, --session-cookie-secure=false": 0.2.1 sent the bare id. It is read only while
    --session-legacy-cookies-until is today or later, and then moved to a new id whose cookie is
    signed, so the next request needs the window no more; otherwise the visitor starts anew and the
    old session is left alone."""
    written = written_by_0_2_1(legacy_0_2_1, "tornado", redis_server.url, prefix, "--unsigned")
    browser = tornado_server(serve, redis_server.url, prefix, **{"legacy-cookies-until": until}).browser()
    send_cookie(browser, written["cookie"])
    response = browser.get("/")
    seen = json.loads(response.text)
    if not carried_over:
        assert seen == {"name": "", "count": 0, "id": None}
        assert redis_server.client().hget(written["key"], "name") == b"alice"
        return
    new_id = moved_to_a_hashed_key(seen, written, redis_server, prefix)
    (renewed,) = response.set_cookies
    signed = renewed.split(";", 1)[0].split("=", 1)[1].strip('"')
    assert tornado.web.decode_signed_value(COOKIE_SECRET, "session-id", signed) == new_id.encode()
    assert json.loads(browser.get("/").text)["id"] == new_id


def test_an_unsigned_cookie_naming_no_session_is_not_signed(serve, redis_server, prefix):
    """In the upgrade window, a bare 0.2.1-shaped id whose session does not exist is not signed
    and sent back: the visitor gets no session, and nothing is created under that id."""
    forged = "7da92f09-4749-41c5-a4b1-4d1632f527cbd8f57b51-71f5-4f14-9f9e-eb890ff88dce"
    browser = tornado_server(serve, redis_server.url, prefix, **{"legacy-cookies-until": TOMORROW}).browser()
    send_cookie(browser, f"session-id={forged}")
    response = browser.get("/")
    assert json.loads(response.text)["id"] is None
    assert all("Max-Age=0" in header or "expires=Thu, 01 Jan 1970" in header for header in response.set_cookies)
    assert redis_server.client().exists(session_key(prefix, forged)) == 0


def flask_profile(url: str, prefix: str, **config: Any) -> flask.Flask:
    app = flask.Flask("upgraded")
    app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=url, SESSION_REDIS_PREFIX=prefix, SESSION_COOKIE_SECURE=False,
                      **config)
    setup_flask_session(app)

    @app.route("/")
    def profile() -> dict[str, Any]:
        session = flask.request.session  # type: ignore[attr-defined]
        return {"name": session.name.str, "count": session.count.int, "id": session.session_id}

    return app


@pytest.mark.parametrize(("until", "carried_over"), [("", False), (TOMORROW, True)])
def test_a_flask_cookie_of_0_2_1_needs_the_upgrade_window(legacy_0_2_1, redis_server, prefix, until, carried_over):
    """Row "Flask": 0.2.1 signed its cookie differently (the secret as salt, SHA-1, the id in a JSON
    object). It is read only in the upgrade window, then sent back in this library's signing."""
    written = written_by_0_2_1(legacy_0_2_1, "flask", redis_server.url, prefix)
    client = flask_profile(redis_server.url, prefix, SESSION_LEGACY_COOKIES_UNTIL=until).test_client()
    name, _, value = written["cookie"].partition("=")
    client.set_cookie(name, value)
    response = client.get("/")
    if not carried_over:
        assert response.json == {"name": "", "count": 0, "id": None}
        return
    new_id = moved_to_a_hashed_key(response.json, written, redis_server, prefix)
    assert len(response.headers.getlist("Set-Cookie")) == 1  # the new id, signed the new way
    assert client.get("/").json["id"] == new_id


def test_values_written_by_0_2_1_read_as_the_migration_table_says(legacy_0_2_1, redis_server, registry, prefix):
    """Row "values": 0.2.1 stored str() of every value. Text, numbers and booleans read back
    (.bool is true for "True"); a dict or list was stored as a Python repr, which .json reads as
    {} (as 0.2.1 itself did); None was stored as the text "None"."""
    written = written_by_0_2_1(legacy_0_2_1, "tornado", redis_server.url, prefix)
    settings = make_settings(redis_server.url, prefix)
    session = Session(registry.store_for(settings), settings, written["session_id"], RecordingCookie())
    name, count, ratio, vip, props, nothing = session.get_many("name", "count", "ratio", "vip", "props", "nothing")
    assert (name.str, count.int, ratio.float, vip.bool) == ("alice", 42, 1.5, True)
    assert props.raw == b"{'a': 1}" and props.json == {}
    assert nothing.str == "None" and not nothing.none


def test_a_0_2_1_session_without_expiry_gets_the_idle_timeout_on_first_use(legacy_0_2_1, redis_server, registry, prefix):
    """Row "session-expire unset": 0.2.1 then never expired sessions; the first use here gives
    them the idle timeout (--session-expire, a day by default)."""
    written = written_by_0_2_1(legacy_0_2_1, "tornado", redis_server.url, prefix)
    client = redis_server.client()
    assert client.ttl(written["key"]) == -1
    settings = make_settings(redis_server.url, prefix)
    session = Session(registry.store_for(settings), settings, written["session_id"], RecordingCookie())
    assert session.name.str == "alice"
    assert 0 < client.ttl(session_key(prefix, session.session_id or "")) <= 86400


def test_touch_restarts_the_idle_timer_in_one_round_trip(redis_server, prefix):
    """Row "touch()": ``session.touch()`` restarts the idle timer now (as in 0.2.1)."""
    settings = make_settings(redis_server.url, prefix, expire=600)
    store = Store.connect(settings)
    session = Session(store, settings, None, RecordingCookie())
    session.name = "alice"
    client = redis_server.client()
    client.expire(session_key(prefix, session.session_id or ""), 5)
    session.touch()
    assert client.ttl(session_key(prefix, session.session_id or "")) > 590
    store.close()


def test_session_id_keeps_its_0_2_1_spelling_with_a_warning(redis_server, prefix):
    """Row "sessionId": the 0.2.1 spelling still answers, and warns that it is deprecated."""
    settings = make_settings(redis_server.url, prefix)
    store = Store.connect(settings)
    session = Session(store, settings, None, RecordingCookie())
    session.name = "alice"
    with pytest.warns(DeprecationWarning, match="session.session_id"):
        assert session.sessionId == session.session_id
    store.close()


def test_cookies_now_carry_secure_httponly_and_samesite_by_default(serve, redis_server, prefix):
    """Row "--session-cookie-secure chose signing" and row "no SameSite": with the defaults a new
    session's cookie is Secure, HttpOnly and SameSite=Lax on Tornado (0.2.1 set only HttpOnly);
    on Flask it is HttpOnly and SameSite=Lax, and Secure as Flask's own SESSION_COOKIE_SECURE says
    (0.2.1 set neither HttpOnly nor SameSite there)."""

    class Counter(SessionHandler):
        def get(self) -> None:
            self.write(str(self.session.incr("count")))

    def attributes(header: str) -> dict[str, str]:
        return {part.split("=", 1)[0].strip().lower(): part.strip() for part in header.split(";")[1:]}

    server = serve([("/", Counter)], redis_session={"redis": redis_server.url, "redis-prefix": prefix})
    (tornado_cookie,) = server.browser().get("/").set_cookies
    assert {"secure", "httponly"} <= set(attributes(tornado_cookie)) and attributes(tornado_cookie)["samesite"] == "SameSite=Lax"
    for secure in (False, True):
        app = flask.Flask("defaults")
        app.config.update(SECRET_KEY=COOKIE_SECRET, SESSION_REDIS=redis_server.url, SESSION_REDIS_PREFIX=prefix)
        if secure:
            app.config["SESSION_COOKIE_SECURE"] = True
        setup_flask_session(app)
        app.add_url_rule("/", "count", lambda: str(flask.request.session.incr("count")))  # type: ignore[attr-defined]
        (flask_cookie,) = app.test_client().get("/").headers.getlist("Set-Cookie")
        assert "httponly" in attributes(flask_cookie) and attributes(flask_cookie)["samesite"] == "SameSite=Lax"
        assert ("secure" in attributes(flask_cookie)) is secure
